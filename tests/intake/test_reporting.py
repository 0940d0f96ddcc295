"""A report becomes one well-formed event on Kafka, committed with its outbox row."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from shared.events import IncidentReported
from shared.topics import INCIDENTS
from tests.intake.conftest import report_body
from tests.support.kafka import wait_for_events


async def test_report_is_published_once_with_the_cloudevents_envelope(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str
) -> None:
    response = await intake.post("/v1/incidents", json=report_body(insured["policy_number"]),
                                 headers={**insured["headers"], "Idempotency-Key": "k1"})
    assert response.status_code == 201, response.text
    incident_id = response.json()["id"]
    assert response.json()["status"] == "reported"

    events = await wait_for_events(broker, INCIDENTS.name, lambda e: e.subject == incident_id,
                                   settle=1.0)
    assert len(events) == 1
    envelope = events[0]
    assert envelope.type == IncidentReported.event_type
    assert envelope.specversion == "1.0"
    assert envelope.source == "/cyberclaims/intake"
    assert envelope.correlationid
    event = envelope.event()
    assert isinstance(event, IncidentReported)
    assert str(event.incident_id) == incident_id
    assert event.org_id == insured["org_id"]

    listing = await intake.get("/v1/incidents", headers=insured["headers"])
    assert [item["id"] for item in listing.json()["items"]] == [incident_id]
    assert uuid.UUID(incident_id)
