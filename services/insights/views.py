"""Insights' HTTP API and page: aggregates only, for actuaries, regulators and operators."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.responses import HTMLResponse, Response

from services.insights import exports, history, statistics, triangles
from services.insights.schemas import (
    Bordereau,
    CellOut,
    ExperienceOut,
    ExperienceQuery,
    ImportOut,
    TriangleOut,
)
from services.insights.triangles import Basis
from shared.auth import Principal, Role, require
from shared.pages import ASSET_PATTERN, PAGE_HEADERS, page_asset, read_page_file
from shared.service import RuntimeDep, UnitOfWorkDep

Reader = Annotated[Principal, require(Role.actuary, Role.regulator, Role.operator)]
Importer = Annotated[Principal, require(Role.actuary, Role.operator)]
SourceFilter = Annotated[Literal["live", "history"] | None, Query()]
Experience = Annotated[ExperienceQuery, Depends()]

insights_api = APIRouter(prefix="/v1/insights", tags=["insights"])
page_api = APIRouter(tags=["page"])


async def _cells(runtime: RuntimeDep, uow: UnitOfWorkDep, query: ExperienceQuery,
                 valuation: datetime) -> list[CellOut]:
    published = await runtime.resources["experience"].experience(
        uow.session, query.group_by, query.filters, runtime.resources["settings"].min_organisations,
        valuation)
    return [CellOut.model_validate(cell) for cell in published]


def _valuation(runtime: RuntimeDep) -> datetime:
    """The statistics' valuation date (the exposure runs up to it): the start of today, UTC."""
    return statistics.valuation_of(runtime.clock.now())


async def _triangle(runtime: RuntimeDep, uow: UnitOfWorkDep, basis: Basis,
                    source: str | None = None) -> TriangleOut:
    k = runtime.resources["settings"].min_organisations
    valuation = runtime.clock.now()
    only = {} if source is None else {"source": source}  # a filter is a group (statistics)
    by_period = await runtime.resources["experience"].experience(
        uow.session, ("period",), only, k, statistics.valuation_of(valuation))
    hidden_quarters = {cell["dimensions"]["period"] for cell in by_period if cell["suppressed"]}
    histories = await triangles.load_histories(uow.session, source)
    rows, hidden = triangles.triangle_rows(histories, basis, valuation, hidden_quarters)
    results = await asyncio.to_thread(triangles.development, rows)  # numpy work, off the loop
    return TriangleOut.model_validate({
        "basis": basis, "source": source, "k": k, "valuation": valuation.isoformat(),
        "rows": [{"accident_quarter": quarter, "values": values} for quarter, values in rows.items()],
        "suppressed_accident_quarters": hidden,
        "only_latest_diagonal": triangles.only_latest_diagonal(rows), "development": results})


@insights_api.get("/experience", response_model=ExperienceOut)
async def experience(caller: Reader, query: Experience, runtime: RuntimeDep,
                     uow: UnitOfWorkDep) -> ExperienceOut:
    """Frequency, severity, loss ratio and response times by the `group_by` dimensions,
    within the filters, exposure and earned premium up to the `valuation` date; a cell
    covering fewer than k organisations is `suppressed`."""
    valuation = _valuation(runtime)
    return ExperienceOut(k=runtime.resources["settings"].min_organisations,
                         valuation=valuation.isoformat(), group_by=list(query.group_by),
                         filters=query.filters,
                         cells=await _cells(runtime, uow, query, valuation))


@insights_api.get("/experience.csv", response_class=Response,
              responses={200: {"content": {"text/csv": {}}}})
async def experience_csv(caller: Reader, query: Experience, runtime: RuntimeDep,
                         uow: UnitOfWorkDep) -> Response:
    """The experience cells as CSV (suppressed cells marked, their figures empty)."""
    cells = await _cells(runtime, uow, query, _valuation(runtime))
    return Response(exports.to_csv(cells, query.group_by), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="experience.csv"'})


@insights_api.get("/experience.parquet", response_class=Response,
              responses={200: {"content": {"application/vnd.apache.parquet": {}}}})
async def experience_parquet(caller: Reader, query: Experience, runtime: RuntimeDep,
                             uow: UnitOfWorkDep) -> Response:
    """The experience cells as Parquet (amounts as exact decimals)."""
    cells = await _cells(runtime, uow, query, _valuation(runtime))
    return Response(exports.to_parquet(cells, query.group_by),
                    media_type="application/vnd.apache.parquet",
                    headers={"Content-Disposition": 'attachment; filename="experience.parquet"'})


@insights_api.get("/triangles", response_model=TriangleOut)
async def loss_triangles(caller: Reader, runtime: RuntimeDep, uow: UnitOfWorkDep,
                         basis: Annotated[Basis, Query()] = Basis.paid,
                         source: SourceFilter = None) -> TriangleOut:
    """The paid or incurred triangle by accident quarter x development month, with
    chain-ladder factors, ultimates, IBNR and Mack standard errors; `source` keeps the claims
    of the event stream (`live`) or of imported bordereaux (`history`) only."""
    return await _triangle(runtime, uow, basis, source)


@insights_api.post("/history", status_code=status.HTTP_201_CREATED, response_model=ImportOut,
               responses={200: {"model": ImportOut,
                                "description": "This import was made before: nothing written"}})
async def import_history(body: Bordereau, caller: Importer, runtime: RuntimeDep,
                         uow: UnitOfWorkDep, response: Response) -> ImportOut:
    """Load a loss bordereau of the insurer's legacy system (exposures and claims with dated
    movements) as history: in the statistics and triangles (`source=history`), kept by a
    rebuild. Every row is checked before any is written (422 names the row's field); the same
    `import_id` sent again writes nothing (200), with other rows it is a conflict (409)."""
    now = runtime.clock.now()
    history.check(body, runtime.platform.currency, now)
    summary, created = await history.import_history(uow, body, by=caller.sub, now=now)
    if created:
        await uow.commit()
    else:
        response.status_code = status.HTTP_200_OK
    return summary


@insights_api.get("/report", response_class=HTMLResponse, include_in_schema=False)
async def report(caller: Reader, query: Experience, runtime: RuntimeDep,
                 uow: UnitOfWorkDep) -> HTMLResponse:
    """The page's body: the frequency/severity table, the triangle and the charts as SVG."""
    valuation = _valuation(runtime)
    cells = await _cells(runtime, uow, query, valuation)
    triangle = await _triangle(runtime, uow, Basis.paid)
    context: dict[str, Any] = {"group_by": query.group_by, "cells": cells, "triangle": triangle,
                               "valuation": valuation.date().isoformat()}
    return HTMLResponse(runtime.resources["pages"].report(context))


PAGE_ASSETS = {"insights.js": "text/javascript", "insights.css": "text/css"}


@page_api.get("/insights", response_class=HTMLResponse, include_in_schema=False)
async def insights_page() -> HTMLResponse:
    """One static page and its script, calling `/v1/insights/report` with the reader's token
    (headers: `shared/pages.py`)."""
    return HTMLResponse(read_page_file("services.insights", "page/index.html"),
                        headers=PAGE_HEADERS)


@page_api.get("/insights/{asset}", include_in_schema=False)
async def insights_asset(asset: Annotated[str, Path(pattern=ASSET_PATTERN)]) -> Response:
    return page_asset(asset, "services.insights", "page", PAGE_ASSETS)


routers = (insights_api, page_api)
