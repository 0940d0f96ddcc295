"""A report becomes one well-formed event on Kafka, committed with its outbox row in one
transaction (a failed commit leaves neither), and a relay that was down publishes it later."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events import IncidentReported
from shared.topics import INCIDENTS
from tests.intake.conftest import refused_at_commit, register, report_body, sql_rows, sql_value
from tests.support.kafka import read_topic, relayed_events, wait_for_events, wait_for_records
from tests.support.service import Tokens, running


def _headers(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


async def test_report_is_published_once_with_the_cloudevents_envelope(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str, db: AsyncEngine
) -> None:
    body = report_body(insured["policy_number"], data_types=["pii", "credentials"],
                       ransom_demanded="120000.5")
    response = await intake.post("/v1/incidents", json=body,
                                 headers={**insured["headers"], "Idempotency-Key": "k1",
                                          "X-Correlation-Id": "trace-report-k1"})
    assert response.status_code == 201, response.text
    incident_id = response.json()["id"]
    assert response.json()["status"] == "reported"
    assert response.headers["Location"] == f"/v1/incidents/{incident_id}"

    events = await relayed_events(broker, INCIDENTS.name, db, incident_id,
                                  lambda e: e.subject == incident_id)
    assert len(events) == 1
    envelope = events[0]
    assert envelope.type == IncidentReported.event_type
    assert envelope.specversion == "1.0"
    assert envelope.source == "/cyberclaims/intake"
    assert envelope.correlationid == "trace-report-k1"  # the request's X-Correlation-Id
    assert envelope.causationid is None
    event = envelope.event()
    assert isinstance(event, IncidentReported)
    assert str(event.incident_id) == incident_id
    assert event.org_id == insured["org_id"]
    assert event.policy_number == insured["policy_number"]
    assert event.reported_at == datetime.fromisoformat(response.json()["reported_at"])
    assert [d.value for d in event.data_types] == ["pii", "credentials"]

    # The raw record: CloudEvents Kafka binding, binary mode; key = incident id.
    [record] = await wait_for_records(
        broker, INCIDENTS.name, lambda r: _headers(r).get("ce_subject") == incident_id)
    assert record.key == incident_id.encode()
    headers = _headers(record)
    assert headers["ce_id"] == str(envelope.id)
    assert headers["ce_type"] == "cyberclaims.incident.reported.v1"
    assert headers["ce_source"] == "/cyberclaims/intake"
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_correlationid"] == "trace-report-k1"
    assert headers["ce_dataschema"] == "urn:cyberclaims:schema:cyberclaims.incident.reported.v1"
    assert datetime.fromisoformat(headers["ce_time"]).tzinfo is not None
    assert headers["content-type"] == "application/json"
    assert "ce_data" not in headers and "ce_causationid" not in headers
    data = json.loads(record.value)
    assert data["incident_id"] == incident_id
    assert data["ransom_demanded"] == "120000.50"  # money is a decimal string on the wire

    listing = await intake.get("/v1/incidents", headers=insured["headers"])
    assert [item["id"] for item in listing.json()["items"]] == [incident_id]
    assert uuid.UUID(incident_id)


async def test_without_a_correlation_header_the_event_carries_the_one_the_response_names(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str
) -> None:
    response = await intake.post("/v1/incidents", json=report_body(insured["policy_number"]),
                                 headers={**insured["headers"], "Idempotency-Key": "k2"})
    assert response.status_code == 201, response.text
    incident_id = response.json()["id"]
    [envelope] = await wait_for_events(broker, INCIDENTS.name, lambda e: e.subject == incident_id)
    assert envelope.correlationid == response.headers["X-Correlation-Id"]


async def test_a_failed_commit_leaves_neither_incident_nor_outbox_row(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str, db: AsyncEngine
) -> None:
    """A deferred trigger makes COMMIT itself fail, after every row was written."""
    marker = f"refused-{uuid.uuid4().hex}"
    body = report_body(insured["policy_number"], title=marker)
    headers = {**insured["headers"], "Idempotency-Key": "fails-once"}
    async with refused_at_commit(db, marker):
        response = await intake.post("/v1/incidents", json=body, headers=headers)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                           org=insured["org_id"]) == 0
    assert await sql_value(db, "SELECT count(*) FROM outbox WHERE envelope::jsonb "
                               "-> 'data' ->> 'title' = :marker", marker=marker) == 0
    assert await sql_value(db, "SELECT count(*) FROM timeline WHERE summary LIKE :m",
                           m=f"%{marker}%") == 0

    retried = await intake.post("/v1/incidents", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    incident_id = retried.json()["id"]
    events = await relayed_events(broker, INCIDENTS.name, db, incident_id,
                                  lambda e: e.data.get("title") == marker)
    assert [e.subject for e in events] == [incident_id]


async def test_an_event_committed_while_the_relay_is_down_is_published_once_after_restart(
    make_intake: Callable[..., Any], tokens: Tokens, broker: str, db: AsyncEngine
) -> None:
    # An instance whose relay is not running: the crash after the commit, before publishing.
    async with running(make_intake(run_workers=False), wait_for_consumer=False) as down:
        insured = await register(down, tokens)
        response = await down.post("/v1/incidents", json=report_body(insured["policy_number"]),
                                   headers={**insured["headers"], "Idempotency-Key": "r1"})
        assert response.status_code == 201, response.text
    incident_id = response.json()["id"]

    [(event_id, state, attempts)] = await sql_rows(
        db, "SELECT event_id, state, attempts FROM outbox WHERE partition_key = :key",
        key=incident_id)
    assert (state, attempts) == ("pending", 0)
    # The incident, its timeline entry and its outbox row were written by one transaction.
    xmins = await sql_rows(
        db, "SELECT (SELECT xmin::text FROM incidents WHERE id = CAST(:id AS uuid)), "
            "(SELECT xmin::text FROM timeline WHERE event_id = :event), "
            "(SELECT xmin::text FROM outbox WHERE event_id = :event)",
        id=incident_id, event=event_id)
    assert len(set(xmins[0])) == 1 and xmins[0][0] is not None
    assert not [r for r in await read_topic(broker, INCIDENTS.name)
                if r.key == incident_id.encode()]

    # A fresh instance with its relay, on the same database, publishes it exactly once.
    async with running(make_intake(), wait_for_consumer=False):
        events = await relayed_events(broker, INCIDENTS.name, db, incident_id,
                                      lambda e: e.subject == incident_id)
    assert [e.id for e in events] == [event_id]
    [(state, attempts)] = await sql_rows(
        db, "SELECT state, attempts FROM outbox WHERE event_id = :event", event=event_id)
    assert (state, attempts) == ("sent", 1)
