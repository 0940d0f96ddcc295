"""The loss experience of a simulated book, published as its services would, equals the
test's own computation from the raw events, exposure and earned premium up to the valuation
date; no published cell or export covers fewer than k organisations, and differencing two
queries reveals none."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pyarrow.parquet as pq
from sqlalchemy import func, select

from cyberclaims.simulate import Book, SimPolicy, book
from services.insights.models import Inbox
from shared.auth import Role
from shared.events import Event, PolicyRegistered, PolicyUpdated
from shared.service import Runtime
from tests.insights.conftest import World, book_events, policy_event, publish_all
from tests.insights.expected import ORDER, POLICY_DIMS, YEAR, Raw, as_numbers, quarter_overlaps
from tests.support.service import running

K = 5
START = datetime(2025, 1, 1, tzinfo=UTC)


def simulated(seed: int, policies: int = 300) -> tuple[Book, list[Event]]:
    the_book = book(policies, 2, seed, start=START)
    return the_book, book_events(the_book, until=datetime.now(UTC))


async def consumed(client: httpx.AsyncClient, runtime: Runtime, count: int,
                   timeout: float = 120.0) -> None:
    """Wait until the consumer has applied `count` events (its inbox holds each once)."""
    deadline = time.monotonic() + timeout
    while True:
        async with runtime.uow() as uow:
            applied = await uow.session.scalar(select(func.count()).select_from(Inbox))
        if applied == count:
            return
        assert time.monotonic() < deadline, f"{applied} of {count} events applied"
        await asyncio.sleep(0.2)


async def experience(client: httpx.AsyncClient, world: World, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/insights/experience", params=params,
                                headers=world.bearer(Role.actuary))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def check_against(client: httpx.AsyncClient, world: World, raw: Raw, body: dict[str, Any],
                        group_by: tuple[str, ...], filters: dict[str, str]) -> int:
    """Every published cell equals the test's computation (exposure up to the answer's
    valuation) and covers at least k organisations; returns how many were published. A cell
    by category or vector shows its policy dimensions' exposure only where their own grouping
    publishes it."""
    grouping = tuple(d for d in ORDER if d in group_by or d in filters)
    parents = tuple(d for d in grouping if d in POLICY_DIMS)
    withheld: frozenset[tuple[str, ...]] = frozenset()
    if parents != grouping:
        coarser = await experience(client, world, group_by=",".join(parents))
        withheld = frozenset(tuple(c["dimensions"][d] for d in parents)
                             for c in coarser["cells"] if c["suppressed"])
    expected = raw.cells(grouping, datetime.fromisoformat(body["valuation"]), withheld)
    wanted = {key: cell for key, cell in expected.items()
              if all(dict(zip(grouping, key, strict=True))[d] == v for d, v in filters.items())}
    assert len(body["cells"]) == len(wanted)
    published = 0
    for cell in body["cells"]:
        key = tuple(cell["dimensions"].get(d, filters.get(d)) for d in grouping)
        truth = wanted[key]
        if cell["suppressed"]:
            assert cell["figures"] is None
            continue
        published += 1
        assert len(truth["orgs"]) >= K, (key, truth["orgs"])
        assert as_numbers(cell["figures"]) == truth["figures"], key
    return published


async def test_statistics_equal_an_independent_computation_from_the_raw_events(world: World) -> None:
    _, events = simulated(seed=11)
    await publish_all(world.broker, events)
    raw = Raw.of(events)
    app = world.app(min_organisations=K)
    async with running(app) as client:
        await consumed(client, app.state.runtime, len(events))
        published = 0
        for group_by, filters in [((), {}), (("industry",), {}), (("industry", "category"), {}),
                                  (("size_band",), {}), (("category",), {"period": "2025Q3"}),
                                  (("period",), {}), (("attack_vector",), {"industry": "internet"}),
                                  (("region", "size_band"), {})]:
            body = await experience(client, world, group_by=",".join(group_by), **filters)
            assert body["k"] == K
            published += await check_against(client, world, raw, body, group_by, filters)
        assert published >= 10  # the book is large enough for most coarse cells to show

        # More events: the statistics' in-memory copy follows the read model.
        _, more = simulated(seed=12, policies=100)
        await publish_all(world.broker, more)
        await consumed(client, app.state.runtime, len(events) + len(more))
        await check_against(client, world, Raw.of(events + more),
                            await experience(client, world, group_by="industry"), ("industry",), {})


async def test_exposure_and_earned_premium_run_to_the_valuation_date(world: World) -> None:
    """A book still in force: no exposure in the quarters to come, the current quarter's time
    in force so far, and premium earned for that time only (36,500 a year: 100 a day)."""
    today = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC)
    start = today - timedelta(days=100)
    events: list[Event] = [policy_event(SimPolicy(
        policy_number=f"IN-FORCE-{n}", org_id=f"in-force-{n}", holder_name=f"SME {n}",
        industry="finance", region="CN-GD", employees=30, annual_revenue=Decimal(10_000_000),
        annual_premium=Decimal("36500.00"), period_start=start,
        period_end=start + timedelta(days=365))) for n in range(K)]
    await publish_all(world.broker, events)
    app = world.app(min_organisations=K)
    async with running(app) as client:
        await consumed(client, app.state.runtime, len(events))
        by_period = await experience(client, world, group_by="period")
        assert await check_against(client, world, Raw.of(events), by_period, ("period",), {}) >= 2
        total = await experience(client, world)
    valuation = datetime.fromisoformat(by_period["valuation"])
    assert valuation == today or valuation == today + timedelta(days=1)  # midnight passed
    assert [c["dimensions"]["period"] for c in by_period["cells"]] == \
        sorted(quarter_overlaps(start, valuation))  # none of the quarters to come
    days = (valuation - start).days
    [everything] = total["cells"]
    assert Decimal(everything["figures"]["earned_premium"]) == K * 100 * days
    assert Decimal(everything["figures"]["exposure_policy_years"]) == \
        round(Decimal(K * days * 86_400) / YEAR, 4)


def lone_organisation(seed: int, start: datetime = START) -> tuple[Book, SimPolicy]:
    """A book with one energy company (its industry's only organisation) that claims."""
    the_book = book(200, 2, seed, start=start)
    claim = the_book.claims[0]
    lone = SimPolicy(**{**claim.policy.__dict__, "industry": "energy",
                        "org_id": "lone-energy-org", "policy_number": "LONE-1"})
    claims = (type(claim)(**{**claim.__dict__, "policy": lone}), *the_book.claims[1:])
    return Book((*the_book.policies, lone), claims), lone


async def test_k_anonymity_holds_and_differencing_two_queries_reveals_no_one(world: World) -> None:
    the_book, lone = lone_organisation(seed=23)
    events = book_events(the_book, until=datetime.now(UTC))
    await publish_all(world.broker, events)
    raw = Raw.of(events)
    lone_paid = sum(Decimal(r["paid"]) for r in raw.claim_rows() if r["org"] == lone.org_id) / 100
    app = world.app(min_organisations=K)
    async with running(app) as client:
        await consumed(client, app.state.runtime, len(events))
        total = await experience(client, world)
        by_industry = await experience(client, world, group_by="industry")
        await check_against(client, world, raw, total, (), {})
        await check_against(client, world, raw, by_industry, ("industry",), {})
        [everything] = total["cells"]
        assert not everything["suppressed"]
        cells = {c["dimensions"]["industry"]: c for c in by_industry["cells"]}
        assert cells["energy"]["suppressed"]  # primary: one organisation
        hidden = [name for name, c in cells.items() if c["suppressed"]]
        assert len(hidden) >= 2  # complementary: the total minus the rest is not energy alone
        valuation = datetime.fromisoformat(by_industry["valuation"])
        expected = raw.cells(("industry",), valuation)
        assert len(set().union(*(expected[(name,)]["orgs"] for name in hidden))) >= K
        # The attack: the total minus every visible industry.
        visible = sum(Decimal(c["figures"]["paid"]["total"]) for c in cells.values()
                      if not c["suppressed"])
        difference = Decimal(everything["figures"]["paid"]["total"]) - visible
        assert difference != lone_paid
        # Filtering is no way round it: the same cells are hidden whatever the filter.
        alone = await experience(client, world, group_by="industry", industry="energy")
        assert [c["suppressed"] for c in alone["cells"]] == [True]
        just_energy = await experience(client, world, industry="energy")
        assert [c["suppressed"] for c in just_energy["cells"]] == [True]

        # The exports are the same cells: nothing more, and no organisation's id.
        headers = world.bearer(Role.regulator)
        response = await client.get("/v1/insights/experience.csv",
                                    params={"group_by": "industry,category"}, headers=headers)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert lone.org_id not in response.text and "sim-" not in response.text
        rows = list(csv.DictReader(io.StringIO(response.text)))
        json_cells = (await experience(client, world, group_by="industry,category"))["cells"]
        # Nor does a finer cell give away a hidden industry's exposure or premium.
        for cell in json_cells:
            if cell["dimensions"]["industry"] in hidden and cell["figures"] is not None:
                assert cell["figures"]["earned_premium"] is None
                assert cell["figures"]["exposure_policy_years"] is None
        assert [(r["industry"], r["category"], r["suppressed"]) for r in rows] == [
            (c["dimensions"]["industry"], c["dimensions"]["category"], str(c["suppressed"]))
            for c in json_cells]
        assert all(r["claims"] == "" for r in rows if r["suppressed"] == "True")
        expected_cells = raw.cells(("industry", "category"), valuation)
        for row in rows:
            if row["suppressed"] == "False":
                assert len(expected_cells[(row["industry"], row["category"])]["orgs"]) >= K
        response = await client.get("/v1/insights/experience.parquet",
                                    params={"group_by": "industry,category"}, headers=headers)
        assert response.status_code == 200
        table = pq.read_table(io.BytesIO(response.content)).to_pylist()
        assert [(r["industry"], r["category"], r["suppressed"]) for r in table] == [
            (c["dimensions"]["industry"], c["dimensions"]["category"], c["suppressed"])
            for c in json_cells]
        assert lone.org_id.encode() not in response.content
        for row, cell in zip(table, json_cells, strict=True):
            if cell["suppressed"]:
                assert row["paid_total"] is None and row["claims"] is None
            else:
                assert row["paid_total"] == Decimal(cell["figures"]["paid"]["total"])


async def test_a_policy_changed_after_its_claims_takes_them_and_its_exposure_along(
        world: World) -> None:
    """The statistics follow changes to rows they already hold: a newer version of policies
    with claims (another industry and size band) moves the claims and the exposure."""
    _, events = simulated(seed=31)
    await publish_all(world.broker, events)
    app = world.app(min_organisations=K)
    queries = [(("industry",), {}), (("industry", "category"), {}), (("size_band",), {}),
               (("industry",), {"period": "2025Q3"})]
    async with running(app) as client:
        await consumed(client, app.state.runtime, len(events))
        for group_by, filters in queries:  # the aggregates are built (and answers kept)
            await check_against(client, world, Raw.of(events),
                                await experience(client, world, group_by=",".join(group_by),
                                                 **filters), group_by, filters)
        raw = Raw.of(events)
        claimed = {raw.claims[c].policy_number for c in raw.claims} - {None}
        moved = [event.policy for event in events if isinstance(event, PolicyRegistered)
                 and event.policy.policy_number in claimed
                 and event.policy.industry.value == "telecom"][:12]
        assert len(moved) >= 6
        updates: list[Event] = [PolicyUpdated(policy=policy.model_copy(update={
            "industry": type(policy.industry)("finance"), "employees": 4000}), version=2)
            for policy in moved]
        await publish_all(world.broker, updates)
        await consumed(client, app.state.runtime, len(events) + len(updates))
        for group_by, filters in queries:
            await check_against(client, world, Raw.of(events + updates),
                                await experience(client, world, group_by=",".join(group_by),
                                                 **filters), group_by, filters)
