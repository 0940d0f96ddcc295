"""Every report carries an Idempotency-Key: the same key and body give the first incident, even
a hundred times at once; the same key with another body is a 409."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events import IncidentReported
from shared.topics import INCIDENTS, RESPONSE
from tests.intake.conftest import produce_envelope, register, report_body, sql_value
from tests.intake.test_consuming import triaged, wait_for_entry
from tests.support.kafka import relayed_events
from tests.support.service import Tokens


async def test_a_hundred_concurrent_reports_with_one_key_create_one_incident(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str, db: AsyncEngine
) -> None:
    body = report_body(insured["policy_number"])
    headers = {**insured["headers"], "Idempotency-Key": "same-key-100"}
    responses = await asyncio.gather(
        *(intake.post("/v1/incidents", json=body, headers=headers) for _ in range(100)))

    assert {r.status_code for r in responses} == {201}, [r.text for r in responses
                                                         if r.status_code != 201][:3]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    [incident_id] = ids
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 99
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                           org=insured["org_id"]) == 1
    assert await sql_value(db, "SELECT count(*) FROM outbox WHERE event_type = :type "
                               "AND partition_key = :key",
                           type=IncidentReported.event_type, key=incident_id) == 1
    events = await relayed_events(broker, INCIDENTS.name, db, incident_id,
                                  lambda e: e.data.get("org_id") == insured["org_id"])
    assert [(e.type, e.subject) for e in events] == [(IncidentReported.event_type, incident_id)]

    again = await intake.post("/v1/incidents", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == incident_id


async def test_the_same_key_with_another_body_is_a_conflict(
    api: httpx.AsyncClient, tokens: Tokens, db: AsyncEngine
) -> None:
    insured = await register(api, tokens)
    headers = {**insured["headers"], "Idempotency-Key": "reused"}
    first = await api.post("/v1/incidents", json=report_body(insured["policy_number"]),
                           headers=headers)
    assert first.status_code == 201, first.text

    other = report_body(insured["policy_number"], title="Another incident altogether")
    conflict = await api.post("/v1/incidents", json=other, headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    problem = conflict.json()
    assert problem["status"] == 409 and problem["title"] == "Conflict"
    assert [e["field"] for e in problem["errors"]] == ["Idempotency-Key"]
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                           org=insured["org_id"]) == 1


async def test_keys_belong_to_one_org(api: httpx.AsyncClient, tokens: Tokens) -> None:
    """Two policyholders who happen to pick the same key each get their own incident."""
    first, second = await register(api, tokens), await register(api, tokens)
    ids = []
    for insured in (first, second):
        response = await api.post("/v1/incidents", json=report_body(insured["policy_number"]),
                                  headers={**insured["headers"], "Idempotency-Key": "0001"})
        assert response.status_code == 201, response.text
        assert response.json()["org_id"] == insured["org_id"]
        ids.append(response.json()["id"])
    assert ids[0] != ids[1]


async def test_a_replayed_report_returns_the_first_response_body_even_after_triage(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str
) -> None:
    body = report_body(insured["policy_number"], ransom_demanded="800000",
                       data_types=["pii", "credentials"])
    headers = {**insured["headers"], "Idempotency-Key": "replayed-later"}
    first = await intake.post("/v1/incidents", json=body, headers=headers)
    assert first.status_code == 201, first.text
    incident_id = first.json()["id"]
    await produce_envelope(broker, RESPONSE.name, triaged(
        incident_id, insured["org_id"], insured["policy_number"]), key=incident_id)
    await wait_for_entry(intake, insured, incident_id, "incident.triaged")  # its state moved on

    replayed = await intake.post("/v1/incidents", json=body, headers=headers)

    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.content == first.content
    assert replayed.headers["Location"] == first.headers["Location"]
