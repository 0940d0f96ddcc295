"""The safety net: an incident triage never answered is offered to triage again.

An incident still `reported` long after its report (triage grades a report within a second;
the default threshold is ten minutes) means triage never took its event: a broker that lost
it, an event dead-lettered and never replayed, a bug. The net sends the report's event again:
the same outbox row, so the same event id, which a triage that did take it skips (its inbox)
and one that did not grades now. A row is offered again only once it has been sent longer
ago than the threshold, so a report is re-sent at most once per threshold while triage stays
silent. Each repair is counted and logged (`shared.repairs`).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update

from services.intake.models import Incident, Outbox, TimelineEntry
from services.intake.settings import IntakeSettings
from shared.clock import Clock
from shared.db import UnitOfWorkFactory, any_of
from shared.events import IncidentReported
from shared.outbox import OutboxState
from shared.repairs import SafetyNet, record_repair

SERVICE = "intake"
REPORTED = "reported"


class UntriagedIncidents(SafetyNet):
    def __init__(self, uows: UnitOfWorkFactory, clock: Clock, settings: IntakeSettings,
                 wake_relay: Callable[[], None]) -> None:
        super().__init__(interval_seconds=settings.safety_net_interval_seconds,
                         stuck_after_seconds=settings.stuck_after_seconds)
        self._uows = uows
        self._clock = clock
        self._wake_relay = wake_relay

    async def repair_stuck(self) -> int:
        """One pass; returns how many untriaged incidents it offered to triage again."""
        now = self._clock.now()
        cutoff = now - self.stuck_after
        async with self._uows() as uow:
            stuck = (await uow.session.execute(
                select(Incident.id, Outbox.id)
                .join(TimelineEntry, (TimelineEntry.incident_id == Incident.id)
                      & (TimelineEntry.type == "incident.reported"))
                .join(Outbox, Outbox.event_id == TimelineEntry.event_id)
                .where(Incident.status == REPORTED, Incident.reported_at <= cutoff,
                       Outbox.event_type == IncidentReported.event_type,
                       Outbox.state == OutboxState.sent, Outbox.sent_at <= cutoff)
                .order_by(Incident.reported_at).limit(self.batch)
                .with_for_update(of=Outbox, skip_locked=True))).all()
            if not stuck:
                return 0
            await uow.session.execute(
                update(Outbox).where(any_of(Outbox.id, [row_id for _, row_id in stuck]))
                .values(state=OutboxState.pending, next_attempt_at=now, sent_at=None))
            await uow.commit()
        self._wake_relay()
        for incident_id, _ in stuck:
            record_repair(SERVICE, "incident_untriaged",
                          f"incident {incident_id} had no triage {self.stuck_after} after its "
                          "report; its report's event was sent again")
        return len(stuck)
