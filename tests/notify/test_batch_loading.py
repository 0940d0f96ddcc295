"""A fetch of events costs notify a fixed number of statements, however many incidents it
carries: the copies, reminders and delivery keys it reads are read in one statement each
(`handlers.load_batch`), and what the handlers add goes in at commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import func, select

from services.notify.models import Delivery, Reminder
from shared.events import Envelope, Event
from shared.service import Runtime
from shared.topics import RESPONSE
from tests.notify.conftest import dispatched, unique
from tests.notify.test_email import reported
from tests.notify.test_reminders import triaged
from tests.support.kafka import assert_same_texts, fetched, statements_run
from tests.support.service import running


async def _fetch(runtime: Runtime, incidents: int) -> list[str]:
    """Each incident's report, triage (with a regulatory deadline) and a job dispatched,
    applied as one fetch; the statements it took (each executemany once)."""
    events: list[Event] = []
    for _ in range(incidents):
        org = unique("org")
        report = reported(org, f"{org}@example.com", "ERP down")
        events += [report, triaged(str(report.incident_id), org,
                                   datetime.now(UTC) + timedelta(hours=20)),
                   dispatched(unique("vendor"), incident_id=report.incident_id, org_id=org)]
    envelopes = [Envelope.wrap(e, source="/test", time=datetime.now(UTC)) for e in events]
    ids = [uuid.UUID(envelope.data["incident_id"]) for envelope in envelopes]
    assert runtime.consumer is not None
    with statements_run(runtime.engine) as sent:
        await runtime.consumer.process_batch(fetched(*envelopes, topic=RESPONSE.name))
    async with runtime.uow() as uow:
        reminders = await uow.session.scalar(select(func.count()).select_from(Reminder)
                                             .where(Reminder.incident_id.in_(ids)))
        notified = await uow.session.scalar(
            select(func.count(func.distinct(Delivery.source_event_id)))
            .where(Delivery.incident_id.in_(ids)))
    assert reminders == incidents and notified == 3 * incidents
    return sent


async def test_a_fetch_takes_as_many_statements_for_30_incidents_as_for_3(
    make_notify: Callable[..., FastAPI],
) -> None:
    app = make_notify(run_workers=False)
    async with running(app, wait_for_consumer=False):
        few = await _fetch(app.state.runtime, 3)
        many = await _fetch(app.state.runtime, 30)
    assert len(many) == len(few), (few, many)
    assert_same_texts(few, many)
