"""An incident report triage fails on is not lost in silence: triage marks the incident,
operators are alerted (ResponseEventDeadLettered), and a replay after the fix triages it and
clears the mark."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.triage import incidents
from services.triage.models import DeadLetter
from shared import dlq
from shared.events import IncidentReported, ResponseEventDeadLettered
from shared.topics import RESPONSE
from tests.support.kafka import wait_for_events
from tests.triage.conftest import Desk


async def test_a_dead_lettered_report_marks_the_incident_alerts_and_replay_clears_it(
        desk: Desk, broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor = await desk.vendor("steady", capabilities=["forensics"])
    policy = await desk.policy()

    async def broken(*_: object) -> None:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(incidents, "receive_incident", broken)
    incident_id = await desk.report(policy)
    [alert] = await wait_for_events(broker, RESPONSE.name, lambda e: (
        e.subject == str(incident_id) and e.type == ResponseEventDeadLettered.event_type))
    assert alert.data["marked"] == [f"incident {incident_id}"]
    assert alert.data["dead_event_type"] == IncidentReported.event_type
    assert "OverflowError" in alert.data["error"]

    async def marks() -> list[DeadLetter]:
        async with desk.runtime.uow() as uow:
            return list(await uow.session.scalars(
                select(DeadLetter).where(DeadLetter.incident_id == incident_id)))

    [mark] = await marks()
    assert mark.consumer == "triage" and str(mark.event_id) == alert.data["dead_event_id"]

    monkeypatch.undo()
    [letter] = [letter for letter in await dlq.read_all(broker)
                if letter.header("ce_id") == str(mark.event_id)]
    assert await dlq.replay(broker, letter.id) == 1
    [job] = (await desk.triaged(incident_id))["jobs"]
    assert job["vendor_id"] == vendor and job["dead_letters"] == []
    assert await marks() == []  # cleared in the transaction that applied the replay
