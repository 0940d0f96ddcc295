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

from tests.intake.conftest import refused_at_commit, register, report_body, sql_rows, sql_value
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
