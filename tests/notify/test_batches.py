"""A fetch applied in one transaction notifies exactly as its events applied one at a time:
the handlers read each row once per transaction and insert what they add at commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.notify.fanout import Notifier
from services.notify.models import Delivery, IncidentCopy, Reminder, ReminderState
from shared.events import Envelope, Event, RegulatorReportFiled
from shared.service import Runtime
from shared.topics import INCIDENTS
from tests.notify.conftest import dispatched, subscribe, unique
from tests.notify.test_email import reported
from tests.notify.test_reminders import triaged
from tests.support.kafka import fetched
from tests.support.service import Tokens, running, service_logs

CONFIRMED_AT = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
CORRECTED_AT = datetime(2025, 3, 1, 8, 30, tzinfo=UTC)


def incident_story(org: str, vendor: str) -> list[Event]:
    """A job dispatched before notify saw the report, the report, its triage, the
    policyholder's confirmation to the regulator, and two more jobs."""
    report = reported(org, f"{org}@example.com", "ERP down")
    incident_id = report.incident_id
    deadline = datetime.now(UTC) + timedelta(hours=20)
    return [
        dispatched(vendor, incident_id=incident_id, org_id=org),
        report,
        triaged(str(incident_id), org, deadline),
        RegulatorReportFiled(incident_id=incident_id, org_id=org, reported_at=CONFIRMED_AT,
                             reference="CAC-1"),
        dispatched(vendor, incident_id=incident_id, org_id=org),
        dispatched(f"{vendor}-other", incident_id=incident_id, org_id=org),
    ]


def later_fetch(org: str, vendor: str, incident_id: uuid.UUID) -> list[Event]:
    """A job (the copy read without a lock) and a corrected confirmation (the copy locked and
    read again) in a later fetch."""
    return [
        dispatched(vendor, incident_id=incident_id, org_id=org),
        RegulatorReportFiled(incident_id=incident_id, org_id=org, reported_at=CORRECTED_AT,
                             reference="CAC-2"),
    ]


async def outcome(runtime: Runtime, incident_id: uuid.UUID, org: str,
                  vendor: str) -> dict[str, Any]:
    """What notify did for the incident, with its ids and the test's names taken out."""
    def plain(value: str) -> str:
        return value.replace(org, "ORG").replace(vendor, "VENDOR")

    async with runtime.uow() as uow:
        rows = (await uow.session.scalars(
            select(Delivery).where(Delivery.incident_id == incident_id))).all()
        reminder = await uow.session.get(Reminder, incident_id)
        copy = await uow.session.get(IncidentCopy, incident_id)
    assert reminder is not None and copy is not None
    return {
        "deliveries": sorted(
            (row.kind, plain(row.recipient), row.channel,
             "subscription" if row.subscription_id else plain(row.target), row.state)
            for row in rows),
        "events_notified": len({row.source_event_id for row in rows}),
        "reminder": reminder.state,
        "copy": (copy.title, plain(copy.contact_email or ""), copy.regulator_reported_at),
    }


async def test_one_transaction_per_fetch_notifies_as_one_event_at_a_time_and_replays_nothing(
    make_notify: Callable[..., FastAPI], tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    together_org, alone_org = unique("org"), unique("org")
    together_vendor, alone_vendor = unique("vendor"), unique("vendor")
    app = make_notify(run_workers=False)
    async with running(app, wait_for_consumer=False) as notify:
        for vendor in (together_vendor, alone_vendor):
            await subscribe(notify, tokens.vendor(vendor), f"http://127.0.0.1:9/{vendor}/hooks",
                            "s" * 20, event_types=["cyberclaims.job.dispatched.v1"])
        runtime: Runtime = app.state.runtime
        consumer = runtime.consumer
        assert consumer is not None

        def wrap(event: Event) -> Envelope:
            return Envelope.wrap(event, source="/cyberclaims/triage", time=datetime.now(UTC))

        together = [wrap(e) for e in incident_story(together_org, together_vendor)]
        alone = [wrap(e) for e in incident_story(alone_org, alone_vendor)]
        with service_logs(caplog, "shared.consumer"):
            await consumer.process_batch(fetched(*together, topic=INCIDENTS.name))
            assert "one at a time" not in caplog.text  # the fetch was applied in one transaction
            for envelope in alone:
                await consumer.process_batch(fetched(envelope, topic=INCIDENTS.name))
            incident_together = uuid.UUID(together[0].data["incident_id"])
            incident_alone = uuid.UUID(alone[0].data["incident_id"])
            await consumer.process_batch(fetched(
                *[wrap(e) for e in later_fetch(together_org, together_vendor, incident_together)],
                topic=INCIDENTS.name))
            for event in later_fetch(alone_org, alone_vendor, incident_alone):
                await consumer.process_batch(fetched(wrap(event), topic=INCIDENTS.name))
            assert "one at a time" not in caplog.text

        applied_together = await outcome(runtime, incident_together, together_org,
                                         together_vendor)
        applied_alone = await outcome(runtime, incident_alone, alone_org, alone_vendor)

        # replays: the whole fetch again, and an event straight to the notifier in a new
        # transaction (past the consumer's inbox)
        await consumer.process_batch(fetched(*together, topic=INCIDENTS.name))
        notifier: Notifier = runtime.resources["notifier"]
        async with runtime.uow() as uow:
            copy = await uow.session.get(IncidentCopy, incident_together)
            assert await notifier.notify(uow.session, together[4], copy) == 0
            await uow.commit()
        replayed = await outcome(runtime, incident_together, together_org, together_vendor)

    assert applied_together == applied_alone
    assert replayed == applied_together
    assert applied_together["reminder"] == ReminderState.cancelled
    assert applied_together["copy"] == ("ERP down", "ORG@example.com", CORRECTED_AT)
    assert applied_together["events_notified"] == 6
    assert ("incident_received", "org:ORG", "email", "ORG@example.com", "pending") \
        in applied_together["deliveries"]
    webhooks = [d for d in applied_together["deliveries"] if d[2] == "webhook"]
    assert webhooks == [("job_dispatched", "vendor:VENDOR", "webhook", "subscription",
                         "pending")] * 3
