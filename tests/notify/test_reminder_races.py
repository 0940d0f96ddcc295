"""The regulatory reminder's timer and the policyholder's confirmation, really at once: whichever
takes the reminder first decides, the other waits for it or passes it by, and the outcome is one
of the two serial orders (sent and then confirmed, or cancelled), never both or neither."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.fanout import Notifier
from services.notify.handlers import handlers
from services.notify.models import IncidentCopy, Notification, Reminder
from services.notify.reminders import fire_due_reminders
from services.notify.routing import REGULATORY_REMINDER
from shared.events import Envelope, Event, IncidentEvent, RegulatorReportFiled
from shared.service import Runtime
from shared.topics import INCIDENTS
from tests.notify.conftest import unique, wait_until
from tests.notify.test_reminders import triaged
from tests.support.kafka import fetched
from tests.support.service import running


@dataclass(frozen=True)
class PausedAfterDeciding(Notifier):
    """A notifier that stops a reminder pass between its decision to fire (the reminder locked,
    the confirmation not seen) and the deliveries, until the test lets it go on."""

    decided: asyncio.Event = field(default_factory=asyncio.Event)
    go_on: asyncio.Event = field(default_factory=asyncio.Event)

    async def notify(self, session: AsyncSession, envelope: Envelope,
                     incident: IncidentCopy | None) -> int:
        self.decided.set()
        await self.go_on.wait()
        return await super().notify(session, envelope, incident)


@dataclass
class Story:
    runtime: Runtime
    notifier: Notifier
    now: datetime

    @property
    def due(self) -> datetime:
        return self.now + timedelta(hours=1)

    async def apply(self, *events: Event) -> None:
        """Events as notify's consumer applies one fetch of them."""
        consumer = self.runtime.consumer
        assert consumer is not None
        await consumer.process_batch(fetched(*(_wrapped(e) for e in events),
                                             topic=INCIDENTS.name))

    async def pending_reminder(self) -> tuple[uuid.UUID, str]:
        org, incident_id = unique("org"), uuid.uuid4()
        await self.apply(triaged(str(incident_id), org, self.now + timedelta(hours=2)))
        assert (await self.state(incident_id))["reminder"] == "pending"
        return incident_id, org

    async def state(self, incident_id: uuid.UUID) -> dict[str, Any]:
        async with self.runtime.uow() as uow:
            reminder = await uow.session.get(Reminder, incident_id)
            copy = await uow.session.get(IncidentCopy, incident_id)
            reminded = await uow.session.scalar(
                select(func.count()).select_from(Notification).where(
                    Notification.incident_id == incident_id,
                    Notification.event_type == REGULATORY_REMINDER))
        return {"reminder": reminder.state if reminder else None, "reminded": reminded,
                "confirmed": copy is not None and copy.regulator_reported_at is not None}

    async def waiting_on_a_lock(self) -> bool:
        async with self.runtime.uow() as uow:
            waiting = await uow.session.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"))
        return bool(waiting)


def confirmation(incident_id: uuid.UUID, org: str) -> RegulatorReportFiled:
    return RegulatorReportFiled(incident_id=incident_id, org_id=org,
                                reported_at=datetime.now(UTC), reference=unique("CAC"))


def _wrapped(event: Event) -> Envelope:
    source = "/cyberclaims/intake" if isinstance(event, RegulatorReportFiled) \
        else "/cyberclaims/triage"
    return Envelope.wrap(event, source=source, time=datetime.now(UTC))


@pytest.fixture
async def story(make_notify: Callable[..., FastAPI]) -> AsyncIterator[Story]:
    """Notify without its own workers or consumer loop: the test drives both inputs."""
    app = make_notify(run_workers=False)
    async with running(app, wait_for_consumer=False):
        runtime: Runtime = app.state.runtime
        yield Story(runtime, runtime.resources["notifier"], datetime.now(UTC))


async def test_a_confirmation_arriving_while_the_timer_fires_waits_and_then_finds_it_sent(
    story: Story,
) -> None:
    incident_id, org = await story.pending_reminder()
    paused = PausedAfterDeciding(settings=story.notifier.settings, clock=story.notifier.clock,
                                 outbox=story.notifier.outbox,
                                 templates=story.notifier.templates)
    timer = asyncio.create_task(fire_due_reminders(story.runtime.uow, paused, story.due))
    await paused.decided.wait()
    confirming = asyncio.create_task(story.apply(confirmation(incident_id, org)))
    await wait_until(story.waiting_on_a_lock)  # the confirmation waits for the timer's lock
    assert not confirming.done()
    paused.go_on.set()
    await asyncio.gather(timer, confirming)

    assert await story.state(incident_id) == {"reminder": "sent", "reminded": 1,
                                              "confirmed": True}


async def test_the_timer_passes_by_a_reminder_a_confirmation_is_cancelling(story: Story) -> None:
    incident_id, org = await story.pending_reminder()
    event = confirmation(incident_id, org)
    on_confirmation = handlers(story.notifier)[RegulatorReportFiled]
    async with story.runtime.uow() as uow:  # the confirmation's transaction, still open
        await on_confirmation(uow, event, _wrapped(event))
        await fire_due_reminders(story.runtime.uow, story.notifier, story.due)
        during = await story.state(incident_id)
        await uow.commit()
    await fire_due_reminders(story.runtime.uow, story.notifier, story.due)

    assert during == {"reminder": "pending", "reminded": 0, "confirmed": False}
    assert await story.state(incident_id) == {"reminder": "cancelled", "reminded": 0,
                                              "confirmed": True}


async def test_timers_and_confirmations_at_once_end_in_one_serial_order_each(
    story: Story,
) -> None:
    incidents = [await story.pending_reminder() for _ in range(8)]
    await asyncio.gather(
        *(fire_due_reminders(story.runtime.uow, story.notifier, story.due) for _ in range(3)),
        *(story.apply(confirmation(incident_id, org)) for incident_id, org in incidents))
    outcomes = [await story.state(incident_id) for incident_id, _ in incidents]

    for outcome in outcomes:
        assert outcome in ({"reminder": "sent", "reminded": 1, "confirmed": True},
                           {"reminder": "cancelled", "reminded": 0, "confirmed": True})


async def test_a_triage_and_a_confirmation_at_once_never_leave_a_reminder_pending(
    story: Story,
) -> None:
    """Before either, notify knows nothing of the incident: both create its copy at once."""
    incidents = [(uuid.uuid4(), unique("org")) for _ in range(6)]
    inputs: list[IncidentEvent] = []
    for incident_id, org in incidents:
        inputs += [triaged(str(incident_id), org, story.now + timedelta(hours=2)),
                   confirmation(incident_id, org)]
    await asyncio.gather(*(story.apply(event) for event in inputs))
    await fire_due_reminders(story.runtime.uow, story.notifier, story.due)

    for incident_id, _ in incidents:
        assert await story.state(incident_id) == {"reminder": "cancelled", "reminded": 0,
                                                  "confirmed": True}
