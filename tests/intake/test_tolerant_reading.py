"""A tolerant reader: an event from a newer producer, with a field and a CloudEvents attribute
this version does not know, is applied (not dead-lettered), through the real broker."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import jsoncodec
from shared.topics import RESPONSE
from tests.intake.conftest import produce, report, sql_value
from tests.intake.test_consuming import triaged, wait_for_entry


async def test_an_event_with_a_field_added_by_a_newer_producer_is_applied(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str, db: AsyncEngine
) -> None:
    incident_id = await report(intake, insured)
    envelope = triaged(incident_id, insured["org_id"], insured["policy_number"])
    newer = {**envelope.data, "triage_model": "2027.1",
             "jobs": [{**job, "eta_minutes": 30} for job in envelope.data["jobs"]]}
    headers = [*envelope.to_kafka_headers(), ("ce_traceparent", b"00-4bf92f35-00f067aa-01")]

    await produce(broker, RESPONSE.name, jsoncodec.dumps(newer), key=incident_id.encode(),
                  headers=headers)

    assert await wait_for_entry(intake, insured, incident_id, "incident.triaged") == [
        "incident.reported", "incident.triaged"]
    assert await sql_value(db, "SELECT count(*) FROM inbox WHERE event_id = :id",
                           id=envelope.id) == 1
    incident = (await intake.get(f"/v1/incidents/{incident_id}", headers=insured["headers"])).json()
    assert incident["priority"] == "P1"
