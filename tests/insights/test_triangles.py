"""Loss triangles from a simulated book equal the test's own triangles from the raw events,
and chain ladder (ultimate, IBNR, Mack standard error) equals `chainladder` run on the
triangle the test builds; a rebuild from offset 0 gives identical tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import chainladder as cl
import httpx
import pandas as pd
from sqlalchemy import select

from services.insights.models import READ_MODEL, Inbox
from services.insights.rebuild import empty_read_model, rebuild
from services.insights.triangles import Basis, ClaimHistory, only_latest_diagonal, triangle_rows
from shared.auth import Role
from shared.service import Runtime
from tests.insights.conftest import World, publish_all
from tests.insights.expected import Claim, Raw, quarter
from tests.insights.test_experience import K, consumed, experience, simulated
from tests.support.service import running


def months_later(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.month - 1 + months, 12)
    return datetime(moment.year + year, month + 1, 1, tzinfo=UTC)


def claim_value(claim: Claim, cutoff: datetime, basis: str) -> Decimal:
    if claim.opened_at is None or claim.opened_at >= cutoff:
        return Decimal(0)
    before = sorted(m for m in claim.movements if m[0] < cutoff)  # at one instant, the larger
    paid = sum((amount for _, kind, amount in before if kind == "paid"), Decimal(0))
    reserves = [amount for _, kind, amount in before if kind == "reserve"]
    closed = any(kind == "closed" for _, kind, _ in before)
    if basis == "paid" or closed or not reserves:
        return paid
    return paid + max(reserves[-1] - paid, Decimal(0))


def expected_triangle(raw: Raw, basis: str, valuation: datetime, hidden_periods: set[str]
                      ) -> tuple[dict[str, list[Decimal]], list[str]]:
    by_quarter: dict[str, list[Claim]] = {}
    for claim in raw.claims.values():
        occurred = raw.incidents.get(claim.incident_id, {}).get("occurred")
        if occurred is not None:
            by_quarter.setdefault(quarter(occurred), []).append(claim)
    rows, hidden = {}, []
    for name in sorted(by_quarter):
        start = datetime(int(name[:4]), 3 * int(name[5]) - 2, 1, tzinfo=UTC)
        if start > valuation:
            continue
        claims = by_quarter[name]
        if name in hidden_periods:
            hidden.append(name)
            continue
        values, month = [], 1
        while months_later(start, month - 1) <= valuation:
            cutoff = min(months_later(start, month), valuation)
            values.append(sum((claim_value(c, cutoff, basis) for c in claims), Decimal(0)))
            month += 1
        rows[name] = values
    return rows, hidden


def chain_ladder(rows: dict[str, list[Decimal]]) -> dict[str, Any]:
    records = []
    for name, values in rows.items():
        start = datetime(int(name[:4]), 3 * int(name[5]) - 2, 1)
        for month, value in enumerate(values, start=1):
            end = months_later(start.replace(tzinfo=UTC), month).replace(tzinfo=None)
            records.append({"origin": start, "valuation": end - timedelta(days=1),
                            "value": float(value)})
    triangle = cl.Triangle(pd.DataFrame(records), origin="origin", development="valuation",
                           columns=["value"], cumulative=True)
    developed = cl.Development(sigma_interpolation="mack").fit_transform(triangle)
    summary = cl.MackChainladder().fit(developed).summary_.to_frame(origin_as_datetime=True)
    return {quarter(origin.to_pydatetime().replace(tzinfo=UTC)): line
            for origin, line in summary.iterrows()}


def rounded(value: float) -> float | None:
    return None if pd.isna(value) else round(float(value), 2)


async def developed_triangle(client: httpx.AsyncClient, world: World, raw: Raw,
                            hidden_periods: set[str], params: dict[str, str]
                            ) -> tuple[dict[str, Any], dict[str, list[Decimal]]]:
    """The service's triangle for `params`, checked against the test's own from `raw`: the
    same rows, the same suppressed accident quarters, and real development. Its body and the
    test's rows."""
    response = await client.get("/v1/insights/triangles", params=params,
                                headers=world.bearer(Role.actuary))
    assert response.status_code == 200, response.text
    body = response.json()
    rows, hidden = expected_triangle(raw, params["basis"],
                                     datetime.fromisoformat(body["valuation"]), hidden_periods)
    assert {r["accident_quarter"]: [Decimal(v) for v in r["values"]]
            for r in body["rows"]} == rows
    assert body["suppressed_accident_quarters"] == hidden
    assert body["only_latest_diagonal"] is False  # dated movements: real development
    return body, rows


def assert_chain_ladder(body: dict[str, Any], rows: dict[str, list[Decimal]]
                        ) -> dict[str, Any]:
    """Each origin's ultimate, IBNR and Mack standard error equal chainladder's on `rows`;
    chainladder's lines, for further checks."""
    truth = chain_ladder(rows)
    for origin in body["development"]["origins"]:
        line = truth[origin["accident_quarter"]]
        assert origin["ultimate"] == rounded(line["Ultimate"])
        assert origin["ibnr"] == rounded(line["IBNR"])
        assert origin["mack_std_err"] == rounded(line["Mack Std Err"])
    return truth


async def test_triangles_and_chain_ladder_equal_the_tests_own(world: World) -> None:
    _, events = simulated(seed=31)
    await publish_all(world.broker, events)
    raw = Raw.of(events)
    app = world.app(min_organisations=K)
    async with running(app) as client:
        await consumed(client, app.state.runtime, len(events))
        by_period = await client.get("/v1/insights/experience", params={"group_by": "period"},
                                     headers=world.bearer(Role.actuary))
        hidden_periods = {c["dimensions"]["period"] for c in by_period.json()["cells"]
                          if c["suppressed"]}
        assert hidden_periods  # the book's thin early quarters
        for basis in ("paid", "incurred"):
            body, rows = await developed_triangle(client, world, raw, hidden_periods,
                                                  {"basis": basis})
            # Every row shown covers k organisations (the period's own check is in
            # test_experience), so no row undoes the experience's suppression.
            for name in rows:
                assert len({c.org_id for c in raw.claims.values()
                            if quarter(raw.incidents[c.incident_id]["occurred"]) == name}) >= K
            assert len(rows) >= 4 and max(len(v) for v in rows.values()) >= 12
            assert [o["accident_quarter"] for o in body["development"]["origins"]] == list(rows)
            truth = assert_chain_ladder(body, rows)
            assert body["development"]["total"]["ultimate"] == rounded(  # NaN rows left out
                pd.Series([line["Ultimate"] for line in truth.values()]).sum())


def test_a_book_played_at_once_is_flagged_as_having_no_development() -> None:
    """Claims of past accident quarters opened, assessed and paid all today (a book played
    through the APIs in one go) lie on the latest diagonal: flagged, not developed."""
    valuation = datetime(2026, 12, 6, tzinfo=UTC)
    today = valuation - timedelta(hours=1)
    played = [ClaimHistory(org_id=f"org-{i}", accident_quarter=quarter, opened_at=today,
                           movements=((today, "paid", Decimal(100 + i)),))
              for i, quarter in enumerate(["2025Q1", "2025Q3", "2026Q2", "2026Q4"])]
    rows, _ = triangle_rows(played, Basis.paid, valuation, hidden_quarters=())
    assert len(rows) == 4 and only_latest_diagonal(rows)
    paid_earlier = ClaimHistory(org_id="org-9", accident_quarter="2025Q3", opened_at=today
                                - timedelta(days=200),
                                movements=((today - timedelta(days=200), "paid", Decimal(7)),))
    rows, _ = triangle_rows([*played, paid_earlier], Basis.paid, valuation, hidden_quarters=())
    assert not only_latest_diagonal(rows)


async def snapshot(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    tables = {}
    async with runtime.uow() as uow:
        for model in READ_MODEL:
            columns = [c for c in model.__table__.columns  # when, not what:
                       if not (model is Inbox and c.name == "received_at")
                       and c.name != "changed_in"]
            rows = (await uow.session.execute(select(*columns))).all()
            tables[model.__tablename__] = sorted((tuple(row) for row in rows), key=repr)
    return tables


async def test_a_rebuild_from_offset_zero_gives_identical_tables(world: World) -> None:
    _, events = simulated(seed=47, policies=120)
    await publish_all(world.broker, events)
    app = world.app(min_organisations=K)
    async with running(app) as client:
        runtime: Runtime = app.state.runtime
        await consumed(client, runtime, len(events))
        before = await snapshot(runtime)
        assert all(before[name] for name in ("policies", "exposures", "incidents", "claims",
                                             "claim_movements"))
        answer = await experience(client, world, group_by="industry,category")
        # Rows deleted carry no change stamp: the statistics start again after an emptying.
        await empty_read_model(runtime.uow)
        assert (await experience(client, world, group_by="industry,category"))["cells"] == []
        read = await rebuild(runtime.uow, world.broker, runtime.publisher, runtime.clock)
        assert read == len(events)
        assert await snapshot(runtime) == before
        assert await experience(client, world, group_by="industry,category") == answer
