"""The operators' API and page, the same on every service that has something for them.

`GET /v1/dead-letters` lists the service's dead-letter marks (`shared/dead_letters.py`: the
events about an incident it gave up on) and `POST /v1/dead-letters/{event_id}/replay` (or
`/v1/dead-letters/replay`, all of them) publishes their dead letters back to the origin topic,
as `cyberclaims dlq replay` does (`shared/dlq.py`); the mark goes once the replayed copy is
applied. `GET /v1/operations` says who is signed in and what this service lists, and
`/operations` is the page that shows those lists with their actions (`operator_page/`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Path, status
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from shared import dlq
from shared.auth import Principal, Role, require
from shared.db import UnitOfWork
from shared.dead_letters import DeadLetterColumns, DeadLetterMarks, DeadLetterOut
from shared.inputs import PageLimit, PageOffset
from shared.pages import ASSET_PATTERN, PAGE_HEADERS, page_asset, read_page_file
from shared.problems import Conflict, NotFound, Unavailable
from shared.service import Runtime, RuntimeDep, UnitOfWorkDep

Operator = Annotated[Principal, require(Role.operator)]
DEAD_LETTERS = "dead-letters"
READ_TOPICS_TIMEOUT_SECONDS = 30.0

PAGE_ASSETS = {"operations.js": "text/javascript"}


class OperationsOut(BaseModel):
    """Who is signed in, on which service, and the lists the operators' page shows there."""

    service: str
    sub: str
    role: Role
    lists: list[str]


class MarkOut(DeadLetterOut):
    """An event about an incident this service gave up on, and what it froze."""

    incident_id: uuid.UUID
    marked: list[str]
    """What the service holds about the incident, named for operators ("claim <id>")."""


class MarkPage(BaseModel):
    items: list[MarkOut]
    total: int
    limit: int
    offset: int


class ReplayOut(BaseModel):
    """Replayed: published back to the origin topic (the mark goes once a consumer applies
    it). Gone: no longer on the dead-letter topic (kept 30 days), so nothing to replay."""

    replayed: list[uuid.UUID]
    gone: list[uuid.UUID]


def operations_router(*, dead_letters: bool, lists: Sequence[str]) -> APIRouter:
    """The routes for a service: the dead-letter ones where it keeps marks, and the page and
    `GET /v1/operations` listing `lists` (its own others: payout's payments, notify's
    deliveries) after the dead letters."""
    router = APIRouter(tags=["operations"])
    shown = [DEAD_LETTERS, *lists] if dead_letters else list(lists)

    @router.get("/v1/operations", response_model=OperationsOut)
    async def signed_in(caller: Operator, runtime: RuntimeDep) -> OperationsOut:
        """Who is signed in and what this service's operators' page lists."""
        return OperationsOut(service=runtime.name, sub=caller.sub, role=caller.role, lists=shown)

    @router.get("/operations", response_class=HTMLResponse, include_in_schema=False)
    async def operations_page() -> HTMLResponse:
        """The operators' page: one static page and its script, calling this service's API
        with the operator's token."""
        return HTMLResponse(read_page_file("shared", "operator_page/index.html"),
                            headers=PAGE_HEADERS)

    @router.get("/operations/{asset}", include_in_schema=False)
    async def operations_asset(asset: Annotated[str, Path(pattern=ASSET_PATTERN)]) -> Response:
        return page_asset(asset, "shared", "operator_page", PAGE_ASSETS)

    if dead_letters:
        _add_dead_letter_routes(router)
    return router


def _add_dead_letter_routes(router: APIRouter) -> None:
    @router.get("/v1/dead-letters", response_model=MarkPage)
    async def list_dead_letters(_: Operator, runtime: RuntimeDep, uow: UnitOfWorkDep,
                                limit: PageLimit = 20, offset: PageOffset = 0) -> MarkPage:
        """The events about an incident this service gave up on and not yet applied by a
        replay, oldest first."""
        marks = _marks(runtime)
        rows, total = await marks.page(uow, limit=limit, offset=offset)
        return MarkPage(items=[await _mark_out(uow, marks, row) for row in rows], total=total,
                        limit=limit, offset=offset)

    @router.post("/v1/dead-letters/replay", status_code=status.HTTP_202_ACCEPTED,
                 response_model=ReplayOut)
    async def replay_all(_: Operator, runtime: RuntimeDep, uow: UnitOfWorkDep) -> ReplayOut:
        """Replay every marked event (after the fix is deployed): each consumer applies an
        event at most once, so replaying one already applied changes nothing."""
        return await _replay(runtime, await _marks(runtime).every(uow))

    @router.post("/v1/dead-letters/{event_id}/replay", status_code=status.HTTP_202_ACCEPTED,
                 response_model=ReplayOut,
                 responses={409: {"description": "the dead letter is no longer on its topic"}})
    async def replay_one(event_id: uuid.UUID, _: Operator, runtime: RuntimeDep,
                         uow: UnitOfWorkDep) -> ReplayOut:
        """Replay one marked event (after the fix is deployed)."""
        mark = await _marks(runtime).one(uow, event_id)
        if mark is None:
            raise NotFound(f"no dead-lettered event {event_id} here (applied, or never marked)")
        result = await _replay(runtime, [mark])
        if result.gone:
            raise Conflict(f"the dead letter of event {event_id} is no longer on its topic "
                           "(dead letters are kept 30 days)")
        return result


def _marks(runtime: Runtime) -> DeadLetterMarks:
    assert runtime.dead_letters is not None  # the routes are mounted only where it is set
    return runtime.dead_letters


async def _mark_out(uow: UnitOfWork, marks: DeadLetterMarks, row: DeadLetterColumns) -> MarkOut:
    return MarkOut(event_id=row.event_id, event_type=row.event_type, consumer=row.consumer,
                   error=row.error, at=row.at, incident_id=row.incident_id,
                   marked=await marks.describe(uow, row.incident_id))


async def _replay(runtime: Runtime, marks: Sequence[DeadLetterColumns]) -> ReplayOut:
    """Publish the dead letters of `marks` back to their origin topics, the latest copy of
    each where an event was dead-lettered more than once."""
    wanted = {(str(mark.event_id), mark.consumer): mark.event_id for mark in marks}
    if not wanted:
        return ReplayOut(replayed=[], gone=[])
    try:
        letters = await asyncio.wait_for(dlq.read_all(runtime.platform.kafka_bootstrap),
                                         READ_TOPICS_TIMEOUT_SECONDS)
    except (KafkaError, TimeoutError) as exc:
        raise Unavailable(f"the broker cannot be read right now: {type(exc).__name__}") from exc
    found = {(letter.header("ce_id"), letter.header("dlq_consumer")): letter
             for letter in letters}
    chosen = {key: found[key] for key in wanted if key in found}
    await dlq.republish(runtime.publisher, list(chosen.values()))
    return ReplayOut(replayed=[wanted[key] for key in chosen],
                     gone=[event_id for key, event_id in wanted.items() if key not in chosen])

