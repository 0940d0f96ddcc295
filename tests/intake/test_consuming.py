"""Intake's consumer: a redelivered event has one effect, poison goes to the dead-letter topic
while later messages of the same key still flow, and dead letters can be listed and replayed."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from cyberclaims.cli import app as cli
from shared import dlq
from shared.events import (
    Envelope,
    IncidentTriaged,
    JobDispatched,
    JobType,
    OpenedJob,
    Priority,
    RegulatoryGrade,
)
from shared.topics import RESPONSE
from tests.intake.conftest import (
    eventually,
    produce,
    produce_envelope,
    report,
    sql_value,
)
from tests.support.kafka import read_topic, wait_for_records

TRIAGE = "/cyberclaims/triage"


def triaged(incident_id: str, org_id: str, policy_number: str, *,
            priority: Priority = Priority.P1, event_id: uuid.UUID | None = None) -> Envelope:
    now = datetime.now(UTC)
    event = IncidentTriaged(
        incident_id=uuid.UUID(incident_id), org_id=org_id, policy_number=policy_number,
        priority=priority, regulatory_grade=RegulatoryGrade.serious,
        regulatory_deadline=now + timedelta(hours=4),
        jobs=[OpenedJob(job_id=uuid.uuid4(), job_type=JobType.forensics)], triaged_at=now)
    return Envelope.wrap(event, source=TRIAGE, time=now, event_id=event_id)


def dispatched(incident_id: str, org_id: str) -> Envelope:
    now = datetime.now(UTC)
    event = JobDispatched(
        incident_id=uuid.UUID(incident_id), org_id=org_id, job_id=uuid.uuid4(),
        job_type=JobType.forensics, at=now, vendor_id="vendor-a", priority=Priority.P1,
        accept_by=now + timedelta(minutes=30), attempt=1)
    return Envelope.wrap(event, source=TRIAGE, time=now)


async def wait_for_entry(client: httpx.AsyncClient, insured: dict[str, Any], incident_id: str,
                         entry: str) -> list[str]:
    """Poll the incident until `entry` is on its timeline; returns the timeline's types."""
    async def check() -> list[str] | None:
        response = await client.get(f"/v1/incidents/{incident_id}", headers=insured["headers"])
        assert response.status_code == 200, response.text
        types = [item["type"] for item in response.json()["timeline"]]
        return types if entry in types else None

    return await eventually(check, what=f"{entry} on the timeline of {incident_id}")


async def test_an_event_delivered_twice_has_one_effect(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str, db: AsyncEngine
) -> None:
    incident_id = await report(intake, insured)
    envelope = triaged(incident_id, insured["org_id"], insured["policy_number"])
    await produce_envelope(broker, RESPONSE.name, envelope, key=incident_id)
    await produce_envelope(broker, RESPONSE.name, envelope, key=incident_id)  # redelivery
    # A later event of the same key: once it is applied, both copies before it were handled.
    await produce_envelope(broker, RESPONSE.name, dispatched(incident_id, insured["org_id"]),
                           key=incident_id)

    types = await wait_for_entry(intake, insured, incident_id, "job.dispatched")
    assert types == ["incident.reported", "incident.triaged", "job.dispatched"]
    assert await sql_value(db, "SELECT count(*) FROM inbox WHERE event_id = :id",
                           id=envelope.id) == 1
    incident = (await intake.get(f"/v1/incidents/{incident_id}", headers=insured["headers"])).json()
    assert incident["status"] == "response_in_progress"
    assert incident["priority"] == "P1"


async def test_poison_messages_are_dead_lettered_and_later_messages_still_flow(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str, db: AsyncEngine
) -> None:
    incident_id = await report(intake, insured)
    key = incident_id.encode()
    org, policy = insured["org_id"], insured["policy_number"]

    # 1. Bytes no one can read.
    unreadable = await produce(broker, RESPONSE.name, b"{\xff not json", key=key,
                               headers=[("ce_type", IncidentTriaged.event_type.encode())])
    # 2. A well-formed envelope whose data breaks the contract (no such priority).
    good_shape = triaged(incident_id, org, policy)
    broken = Envelope.model_validate({**good_shape.model_dump(), "id": uuid.uuid4(),
                                      "data": {**good_shape.data, "priority": "P9"}})
    contract = await produce_envelope(broker, RESPONSE.name, broken, key=incident_id)
    # 3. A valid event whose handler fails on every try: its id collides with the timeline
    #    entry of the report, so every attempt violates a unique constraint.
    reported_event = await sql_value(
        db, "SELECT event_id FROM timeline WHERE incident_id = CAST(:id AS uuid)", id=incident_id)
    failing = triaged(incident_id, org, policy, priority=Priority.P4, event_id=reported_event)
    keeps_failing = await produce_envelope(broker, RESPONSE.name, failing, key=incident_id)
    # 4. A good event after them, on the same key and so the same partition.
    good = triaged(incident_id, org, policy, priority=Priority.P2)
    later = await produce_envelope(broker, RESPONSE.name, good, key=incident_id)
    assert unreadable.partition == contract.partition == keeps_failing.partition == later.partition

    assert await wait_for_entry(intake, insured, incident_id, "incident.triaged") == [
        "incident.reported", "incident.triaged"]
    incident = (await intake.get(f"/v1/incidents/{incident_id}", headers=insured["headers"])).json()
    assert incident["priority"] == "P2"  # from the good event only

    letters = await wait_for_records(broker, RESPONSE.dead_letter, lambda r: r.key == key,
                                     count=3)
    assert len(letters) == 3
    by_offset = {int(dict(r.headers)["dlq_origin_offset"]): r for r in letters}
    assert set(by_offset) == {unreadable.offset, contract.offset, keeps_failing.offset}
    for origin, error_types, attempts in (
            (unreadable, {"UnicodeDecodeError", "JSONDecodeError"}, "1"),
            (contract, {"ValidationError"}, "1"),
            (keeps_failing, {"IntegrityError"}, "3")):
        letter = by_offset[origin.offset]
        headers = {name: value.decode(errors="replace") for name, value in letter.headers}
        assert headers["dlq_origin_topic"] == RESPONSE.name
        assert headers["dlq_origin_partition"] == str(origin.partition)
        assert headers["dlq_consumer"] == "intake"
        assert headers["dlq_error_type"] in error_types
        assert headers["dlq_error"]
        assert headers["dlq_attempts"] == attempts
        assert datetime.fromisoformat(headers["dlq_failed_at"]).tzinfo is not None
    assert by_offset[unreadable.offset].value == b"{\xff not json"  # kept as it came
    assert json.loads(by_offset[contract.offset].value)["priority"] == "P9"
    assert dict(by_offset[contract.offset].headers)["ce_id"] == str(broken.id).encode()
    # None of the failures left anything behind; the inbox holds only the good event.
    assert await sql_value(db, "SELECT count(*) FROM inbox WHERE event_id IN "
                               "(:a, :b, :c)", a=broken.id, b=failing.id, c=good.id) == 1

    # `cyberclaims dlq list` sees them, with origin and error.
    summaries = {letter.id: letter.summary() for letter in await dlq.read_all(broker)}
    mine = [s for s in summaries.values() if s["origin"].startswith(
        f"{RESPONSE.name}:{later.partition}:")
            and int(s["origin"].rsplit(":", 1)[1]) in by_offset]
    assert sorted(s["type"] for s in mine) == [IncidentTriaged.event_type] * 3
    assert {s["consumer"] for s in mine} == {"intake"}
    assert all(s["error"] and s["dead_letter"].startswith(RESPONSE.dead_letter) for s in mine)


async def test_a_replayed_dead_letter_is_applied_once(
    intake: httpx.AsyncClient, insured: dict[str, Any], broker: str, db: AsyncEngine
) -> None:
    """A dead letter left by a fault since fixed goes back to its origin topic, twice even,
    and has one effect."""
    incident_id = await report(intake, insured)
    envelope = triaged(incident_id, insured["org_id"], insured["policy_number"])
    await produce(broker, RESPONSE.dead_letter, envelope.to_kafka_value(),
                  key=incident_id.encode(), headers=[
                      *envelope.to_kafka_headers(),
                      ("dlq_error", b"OperationalError('database was down')"),
                      ("dlq_consumer", b"intake"),
                      ("dlq_origin_topic", RESPONSE.name.encode()),
                      ("dlq_origin_partition", b"0"), ("dlq_origin_offset", b"0")])
    [letter] = [letter for letter in await dlq.read_all(broker)
                if letter.header("ce_id") == str(envelope.id)]

    assert await dlq.replay(broker, letter.id) == 1
    assert await dlq.replay(broker, letter.id) == 1
    await produce_envelope(broker, RESPONSE.name, dispatched(incident_id, insured["org_id"]),
                           key=incident_id)
    assert await wait_for_entry(intake, insured, incident_id, "job.dispatched") == [
        "incident.reported", "incident.triaged", "job.dispatched"]
    assert await sql_value(db, "SELECT count(*) FROM inbox WHERE event_id = :id",
                           id=envelope.id) == 1
    replayed = [r for r in await read_topic(broker, RESPONSE.name)
                if dict(r.headers).get("ce_id") == str(envelope.id).encode()]
    assert len(replayed) == 2
    assert all(not name.startswith("dlq_") for r in replayed for name, _ in r.headers)
    assert all(r.key == incident_id.encode() for r in replayed)


def test_the_dlq_command_lists_and_replays_against_the_broker(broker: str) -> None:
    marker = uuid.uuid4().hex
    value = json.dumps({"marker": marker}).encode()
    asyncio.run(produce(broker, RESPONSE.dead_letter, value, key=marker.encode(), headers=[
        ("ce_type", b"cyberclaims.test.v1"), ("dlq_error", b"ValueError('bad')"),
        ("dlq_consumer", b"intake"), ("dlq_origin_topic", RESPONSE.name.encode()),
        ("dlq_origin_partition", b"2"), ("dlq_origin_offset", b"7")]))
    runner = CliRunner(env={"CYBERCLAIMS_KAFKA_BOOTSTRAP": broker})

    listed = runner.invoke(cli, ["dlq", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [entry] = [e for e in json.loads(listed.output) if e["type"] == "cyberclaims.test.v1"
               and e["origin"] == f"{RESPONSE.name}:2:7"]
    assert entry["consumer"] == "intake" and entry["error"] == "ValueError('bad')"
    text = runner.invoke(cli, ["dlq", "list"])
    assert entry["dead_letter"] in text.output

    assert runner.invoke(cli, ["dlq", "replay"]).exit_code != 0  # names one, or --all
    missing = runner.invoke(cli, ["dlq", "replay", f"{RESPONSE.dead_letter}:0:999999"])
    assert missing.exit_code != 0
    replayed = runner.invoke(cli, ["dlq", "replay", entry["dead_letter"]])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 message(s)" in replayed.output
    back = [r for r in asyncio.run(read_topic(broker, RESPONSE.name)) if r.value == value]
    assert len(back) == 1 and back[0].key == marker.encode()
    assert dict(back[0].headers) == {"ce_type": b"cyberclaims.test.v1", "cc_replayed": b"1"}
