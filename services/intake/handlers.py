"""Intake's event handlers: each incident's status and timeline, from downstream events.

Status only moves forward (events of different topics may arrive in any order).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import Incident, TimelineEntry
from shared.consumer import Handler, ids_in
from shared.db import TransactionRows, UnitOfWork, append_row
from shared.events import (
    ClaimApproved,
    ClaimClosedWithoutPayment,
    ClaimDenied,
    ClaimPendingApproval,
    Envelope,
    Event,
    IncidentResponseCompleted,
    IncidentTriaged,
    JobDispatched,
    JobExpired,
    JobUnassigned,
    LateLossRejected,
    PaymentFailed,
    PaymentSucceeded,
)

STATUS_ORDER = [
    "reported", "triaged", "response_in_progress", "response_completed",
    "claim_pending_approval", "claim_approved", "claim_denied", "closed_without_payment",
    "payment_failed", "paid",
]
CLAIM_DECIDED = frozenset(STATUS_ORDER[STATUS_ORDER.index("claim_approved"):])
"""An incident whose claim was decided takes no more losses (`service.submit_loss`)."""


def _advance(incident: Incident, status: str | None) -> None:
    if status and STATUS_ORDER.index(status) > STATUS_ORDER.index(incident.status):
        incident.status = status


def _describe(event: Event) -> tuple[str, str | None, datetime, str]:
    """(timeline type, new status, time, summary) of a downstream event."""
    match event:
        case IncidentTriaged():
            deadline = (f"; report to the regulator by {event.regulatory_deadline.isoformat()}"
                        if event.regulatory_deadline else "")
            return ("incident.triaged", "triaged", event.triaged_at,
                    f"Triaged {event.priority.value}, grade {event.regulatory_grade.value}, "
                    f"{len(event.jobs)} response job(s){deadline}")
        case JobDispatched():
            return ("job.dispatched", "response_in_progress", event.at,
                    f"{event.job_type.value} dispatched to {event.vendor_id}, "
                    f"accept by {event.accept_by.isoformat()}")
        case JobExpired():
            return ("job.expired", None, event.at,
                    f"{event.job_type.value}: {event.vendor_id} did not accept in time")
        case JobUnassigned():
            return ("job.unassigned", None, event.at,
                    f"{event.job_type.value}: waiting for a free vendor")
        case IncidentResponseCompleted():
            return ("response.completed", "response_completed", event.completed_at,
                    f"Incident response completed by {len(event.findings)} job(s)")
        case ClaimPendingApproval():
            return ("claim.pending_approval", "claim_pending_approval", event.at,
                    f"Claim assessed at {event.payable}, awaiting adjuster approval")
        case ClaimApproved():
            return ("claim.approved", "claim_approved", event.at, f"Claim approved: {event.amount}")
        case ClaimDenied():
            return ("claim.denied", "claim_denied", event.at, f"Claim denied: {event.reason}")
        case ClaimClosedWithoutPayment():
            return ("claim.closed_without_payment", "closed_without_payment", event.at,
                    f"Claim closed without payment: {event.reason}")
        case LateLossRejected():
            return ("claim.late_loss_rejected", None, event.at,
                    f"Loss {event.loss_id} rejected: {event.reason}")
        case PaymentSucceeded():
            return ("payment.succeeded", "paid", event.at,
                    f"Paid {event.amount} {event.currency}")
        case PaymentFailed():
            return ("payment.failed", "payment_failed", event.at,
                    "Payment failed; the insurer's operators were alerted")
    raise TypeError(type(event).__name__)


async def record_on_timeline(uow: UnitOfWork, event: Event, envelope: Envelope) -> None:
    """Without autoflush: nothing here reads a timeline entry, so the entries of a whole batch
    of events go in as one INSERT when the consumer commits."""
    entry_type, status, at, summary = _describe(event)
    incident_id = event.incident_id  # type: ignore[attr-defined]
    with uow.session.no_autoflush:
        incident = await _locked_incident(uow.session, incident_id)
        if incident is None:
            return  # not an incident of this intake (e.g. created elsewhere); nothing to show
        _advance(incident, status)
        if isinstance(event, IncidentTriaged):
            incident.priority = event.priority.value
            incident.regulatory_deadline = event.regulatory_deadline
        append_row(uow.session, TimelineEntry, incident_id=incident.id, event_id=envelope.id,
                   at=at, type=entry_type, summary=summary)


async def load_batch(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    """The incidents a batch of events names, locked FOR UPDATE in one statement (in id order):
    a fetch often carries several events of one incident (triaged, then each job dispatched)
    and events of many, and the lock lasts until the consumer commits, so each event then
    takes its incident without a round trip."""
    await TransactionRows.of(uow.session).load(uow.session, Incident,
                                               ids_in(envelopes, "incident_id"), for_update=True)


async def _locked_incident(session: AsyncSession, incident_id: uuid.UUID) -> Incident | None:
    """The incident, locked FOR UPDATE once per transaction."""
    return await TransactionRows.of(session).get(session, Incident, incident_id,
                                                 for_update=True)


TIMELINE_EVENTS: tuple[type[Event], ...] = (
    IncidentTriaged, JobDispatched, JobExpired, JobUnassigned, IncidentResponseCompleted,
    ClaimPendingApproval, ClaimApproved, ClaimDenied, ClaimClosedWithoutPayment,
    LateLossRejected, PaymentSucceeded, PaymentFailed,
)


def handlers() -> Mapping[type[Event], Handler]:
    return {event_type: record_on_timeline for event_type in TIMELINE_EVENTS}
