"""Reports that arrive together are stored together (one statement, one transaction), and
each keeps the outcome it would have had alone: stored with its timeline entry and outbox
row, a replay, a 409 for a reused key, a 404 for another org's policy, or a 409 when a
constraint refuses its rows, without taking the others down with it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake import service
from services.intake.reports import NewReport, ReportStore
from services.intake.schemas import IncidentReportIn
from services.intake.views import REPORTS
from shared.auth import Principal, Role
from shared.batching import GroupCommitStopped
from tests.intake.conftest import (
    failing_for_org,
    refused_at_commit,
    register,
    report_body,
    sql_rows,
    sql_value,
)
from tests.support.service import Tokens, running, service_logs


async def _post(client: httpx.AsyncClient, insured: dict[str, Any], key: str,
                **overrides: Any) -> httpx.Response:
    return await client.post("/v1/incidents", json=report_body(insured["policy_number"], **overrides),
                             headers={**insured["headers"], "Idempotency-Key": key})


async def test_concurrent_reports_share_transactions_and_each_keeps_its_own_outcome(
    api: httpx.AsyncClient, tokens: Tokens, db: AsyncEngine
) -> None:
    orgs = [await register(api, tokens) for _ in range(3)]
    a, b, _ = orgs
    plain = [_post(api, insured, f"k-{n}", title=f"report {n}")
             for n in range(12) for insured in orgs]
    on_another_orgs_policy = api.post(
        "/v1/incidents", json=report_body(b["policy_number"]),
        headers={**a["headers"], "Idempotency-Key": "not-mine"})
    once = report_body(a["policy_number"], title="the same")
    same_key_same_body = [api.post("/v1/incidents", json=once,
                                   headers={**a["headers"], "Idempotency-Key": "twice"})
                          for _ in range(2)]
    same_key_other_body = [_post(api, b, "reused", title=title) for title in ("one", "two")]

    responses = await asyncio.gather(*plain, on_another_orgs_policy, *same_key_same_body,
                                     *same_key_other_body)
    stored, foreign = responses[:36], responses[36]
    twice, reused = responses[37:39], responses[39:41]

    assert [r.status_code for r in stored] == [201] * 36, [r.text for r in stored][:2]
    assert foreign.status_code == 404
    assert [r.status_code for r in twice] == [201, 201]
    assert twice[0].json()["id"] == twice[1].json()["id"]
    assert sorted(r.headers.get("Idempotent-Replayed", "") for r in twice) == ["", "true"]
    assert sorted(r.status_code for r in reused) == [201, 409]

    ids = [r.json()["id"] for r in stored]
    assert len(set(ids)) == 36
    for org in orgs:
        expected = 12 + (1 if org in (a, b) else 0)
        assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                               org=org["org_id"]) == expected
    # No outbox row for a report that was not stored (404, replay, 409).
    orgs_ids = [org["org_id"] for org in orgs]
    assert await sql_value(
        db, "SELECT count(*) FROM outbox WHERE envelope::jsonb -> 'data' ->> 'org_id' = ANY(:orgs)",
        orgs=orgs_ids) == await sql_value(
        db, "SELECT count(*) FROM incidents WHERE org_id = ANY(:orgs)", orgs=orgs_ids) == 38
    # Each incident was written with its timeline entry and outbox row by one transaction,
    # and several incidents shared a transaction (they were stored together).
    rows = await sql_rows(
        db, "SELECT i.xmin::text, t.xmin::text, o.xmin::text FROM incidents i "
            "JOIN timeline t ON t.incident_id = i.id "
            "JOIN outbox o ON o.partition_key = i.id::text "
            "WHERE i.id = ANY(CAST(:ids AS uuid[]))", ids=ids)
    assert len(rows) == 36
    assert all(len(set(row)) == 1 for row in rows)
    assert len({row[0] for row in rows}) < 36


async def test_a_report_refused_at_commit_fails_alone(
    make_intake: Callable[..., Any], tokens: Tokens, db: AsyncEngine,
    caplog: pytest.LogCaptureFixture
) -> None:
    marker = f"refused-{uuid.uuid4().hex}"
    async with refused_at_commit(db, marker), running(make_intake(run_workers=False),
                                                      wait_for_consumer=False) as api:
        insured = await register(api, tokens)
        with service_logs(caplog, "shared.batching"):
            responses = await asyncio.gather(
                *(_post(api, insured, f"ok-{n}", title=f"fine {n}") for n in range(10)),
                _post(api, insured, "refused", title=marker),
                *(_post(api, insured, f"ok-{n}", title=f"fine {n}") for n in range(10, 20)))

    refused = responses.pop(10)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert [r.status_code for r in responses] == [201] * 20
    assert "writing them one at a time" in caplog.text  # its batch was retried item by item
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                           org=insured["org_id"]) == 20
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE title = :marker",
                           marker=marker) == 0


async def test_a_report_failing_in_the_database_for_any_reason_never_fails_another_tenants(
    make_intake: Callable[..., Any], tokens: Tokens, db: AsyncEngine,
    caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 23, finding 3: 40 reports at once, 5 of them org B's that pass validation but
    fail in the database (not with a constraint's error): all 35 of org A's are stored."""
    async with running(make_intake(run_workers=False), wait_for_consumer=False) as api:
        a, b = await register(api, tokens), await register(api, tokens)
        async with failing_for_org(db, b["org_id"]):
            with service_logs(caplog, "shared.batching"):
                posts = [_post(api, b if n % 8 == 3 else a, f"k-{n}", title=f"report {n}")
                         for n in range(40)]
                # The test client raises what a server would answer with 500.
                outcomes = await asyncio.gather(*posts, return_exceptions=True)

    poisoned = [r for n, r in enumerate(outcomes) if n % 8 == 3]
    fine = [r for n, r in enumerate(outcomes) if n % 8 != 3]
    assert len(poisoned) == 5 and len(fine) == 35
    assert [getattr(r, "status_code", r) for r in fine] == [201] * 35
    assert all(not isinstance(r, httpx.Response) or r.status_code >= 500 for r in poisoned)
    assert "writing them one at a time" in caplog.text  # they met in a batch, which failed
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                           org=a["org_id"]) == 35
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                           org=b["org_id"]) == 0


async def test_one_statement_stores_only_what_each_report_may_store_in_its_order(
    make_intake: Callable[..., Any], tokens: Tokens, db: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch statement itself, with the cases that can meet in one batch."""
    app = make_intake(run_workers=False)
    async with running(app, wait_for_consumer=False) as api:
        mine, theirs = await register(api, tokens), await register(api, tokens)
        store: ReportStore = app.state.runtime.resources[REPORTS]
        staged: list[NewReport] = []

        async def stage_only(report: NewReport) -> bool:
            staged.append(report)
            return True

        monkeypatch.setattr(store, "store", stage_only)
        caller = Principal(role=Role.policyholder, sub="it", org_id=mine["org_id"])
        for key, policy, title in (("k1", mine, "first"), ("k1", mine, "same key, other body"),
                                   ("k2", theirs, "on another org's policy"), ("k3", mine, "last")):
            body = IncidentReportIn.model_validate(report_body(policy["policy_number"], title=title))
            await service.report_incident(store, caller, key, body)
        monkeypatch.undo()
        assert await store.store_together(staged) == [True, False, False, True]

    stored_ids = [str(staged[0].incident["id"]), str(staged[3].incident["id"])]
    rows = await sql_rows(db, "SELECT partition_key FROM outbox WHERE partition_key = ANY(:ids) "
                              "ORDER BY id", ids=[str(r.incident["id"]) for r in staged])
    assert [row[0] for row in rows] == stored_ids  # one row each, in the order given
    assert await sql_value(db, "SELECT count(*) FROM timeline WHERE incident_id = ANY("
                               "CAST(:ids AS uuid[]))", ids=[str(r.incident["id"]) for r in staged]) == 2
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                           org=mine["org_id"]) == 2


async def test_a_report_caught_by_a_shutdown_is_a_503_to_retry_with_its_key(
    make_intake: Callable[..., Any], tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_intake(run_workers=False)
    async with running(app, wait_for_consumer=False) as api:
        insured = await register(api, tokens)
        store: ReportStore = app.state.runtime.resources[REPORTS]

        async def stopped(report: NewReport) -> bool:
            raise GroupCommitStopped("stopped while writing")

        monkeypatch.setattr(store._together, "submit", stopped)
        response = await _post(api, insured, "during-shutdown")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert "Idempotency-Key" in response.json()["detail"]
