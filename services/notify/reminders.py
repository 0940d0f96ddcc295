"""Regulatory deadline reminders (rulebook sections 5 and 11).

From an `IncidentTriaged` with a regulatory deadline, a reminder is due `reminder_lead_seconds`
(1 hour) before it. The policyholder's confirmation (`RegulatorReportFiled`) cancels it, also
when it arrives before the triage (the two come on different topics): the confirmation is kept
on the incident copy. A pass fires each due reminder exactly once (FOR UPDATE SKIP LOCKED, state
pending -> sent in the same transaction as its deliveries); a reminder found only after its
deadline has passed is not sent (it lapses).

The timer and the confirmation may come at the same moment; the reminder's row lock decides.
The confirmation locks the incident copy, then the reminder; the pass locks the reminder (and
passes by one a confirmation holds) and only then reads the copy, unlocked, so the two never
wait for each other in a circle. A confirmation that comes while a pass holds the reminder
waits and finds it sent; a pass that comes while a confirmation holds it leaves it to be
cancelled (tests/notify/test_reminder_races.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.fanout import Notifier
from services.notify.models import IncidentCopy, Reminder, ReminderState
from services.notify.routing import REGULATORY_REMINDER
from shared.db import TransactionRows, UnitOfWorkFactory
from shared.events import Envelope
from shared.polling import PollingLoop

log = logging.getLogger(__name__)

REMINDER_IDS = uuid.UUID("6f1c2b8e-2f43-4c59-9d7a-7f0e3f7b9a11")
SOURCE = "/cyberclaims/notify"


def reminder_event_id(incident_id: uuid.UUID) -> uuid.UUID:
    """The reminder's own id, the same on every pass (its deliveries' source event)."""
    return uuid.uuid5(REMINDER_IDS, f"regulatory-reminder:{incident_id}")


async def schedule(session: AsyncSession, notifier: Notifier, copy: IncidentCopy,
                   deadline: datetime, correlation_id: str) -> None:
    due_at = deadline - timedelta(seconds=notifier.settings.reminder_lead_seconds)
    rows = TransactionRows.of(session)
    reminder = await rows.get(session, Reminder, copy.incident_id, for_update=True)
    if reminder is None:
        reminder = Reminder(incident_id=copy.incident_id, org_id=copy.org_id, deadline=deadline,
                            due_at=due_at, state=ReminderState.pending,
                            correlation_id=correlation_id, created_at=notifier.clock.now(),
                            fired_at=None)
        rows.add(session, reminder, copy.incident_id)
    elif reminder.state == ReminderState.pending:
        reminder.deadline, reminder.due_at = deadline, due_at
    if copy.regulator_reported_at is not None and reminder.state == ReminderState.pending:
        reminder.state = ReminderState.cancelled


async def cancel(session: AsyncSession, incident_id: uuid.UUID) -> None:
    reminder = await TransactionRows.of(session).get(session, Reminder, incident_id,
                                                      for_update=True)
    if reminder is not None and reminder.state == ReminderState.pending:
        reminder.state = ReminderState.cancelled


async def fire_due_reminders(uows: UnitOfWorkFactory, notifier: Notifier,
                             now: datetime | None = None, *, batch_size: int = 100) -> int:
    """Fire every reminder due at `now` (default: the clock's time); returns how many fired."""
    now = now or notifier.clock.now()
    async with uows() as uow:
        session = uow.session
        due = (await session.scalars(
            select(Reminder)
            .where(Reminder.state == ReminderState.pending, Reminder.due_at <= now)
            .order_by(Reminder.due_at, Reminder.incident_id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )).all()
        fired = 0
        for reminder in due:
            copy = await session.get(IncidentCopy, reminder.incident_id)
            if copy is not None and copy.regulator_reported_at is not None:
                reminder.state = ReminderState.cancelled
                continue
            if now >= reminder.deadline:
                reminder.state = ReminderState.lapsed
                log.warning("regulatory reminder of %s lapsed: found after its deadline",
                            reminder.incident_id)
                continue
            minutes_left = int((reminder.deadline - now).total_seconds() // 60)
            envelope = Envelope(
                id=reminder_event_id(reminder.incident_id), source=SOURCE,
                type=REGULATORY_REMINDER, time=now, subject=str(reminder.incident_id),
                correlationid=reminder.correlation_id,
                data={"incident_id": str(reminder.incident_id), "org_id": reminder.org_id,
                      "regulatory_deadline": reminder.deadline.isoformat(),
                      "minutes_left": minutes_left},
            )
            await notifier.notify(session, envelope, copy)
            reminder.state = ReminderState.sent
            reminder.fired_at = now
            fired += 1
        await uow.commit()
    return fired


class ReminderWorker:
    def __init__(self, uows: UnitOfWorkFactory, notifier: Notifier,
                 on_fired: Callable[[], None]) -> None:
        self._uows = uows
        self._notifier = notifier
        self._on_fired = on_fired
        self._loop = PollingLoop("reminder", self._pass,
                                 interval_seconds=notifier.settings.reminder_poll_seconds)

    async def run(self) -> None:
        await self._loop.run()

    async def _pass(self) -> int:
        fired = await fire_due_reminders(self._uows, self._notifier)
        if fired:
            self._on_fired()
        return fired
