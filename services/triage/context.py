"""What every triage use case shares: its context (outbox, clock, response times), how it
stages an event or a job's history, and the incident a job is for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.triage.models import AssessmentRequest, Incident, Job, JobHistory, JobKind
from services.triage.rules import ResponseTimes
from shared.clock import Clock
from shared.db import append_row, for_update_arg
from shared.events import Envelope, Event, JobEvent
from shared.outbox import Outbox

FUTURE_TOLERANCE = timedelta(minutes=5)
SYSTEM = "triage"
NO_VENDOR = "no eligible vendor has free capacity"


@dataclass(frozen=True)
class TriageContext:
    """What every use case needs: where events go, the time, and the response times."""

    outbox: Outbox
    clock: Clock
    times: ResponseTimes


JobSubject = Incident | AssessmentRequest
"""What a job is for: an incident (response jobs) or a policy's risk assessment."""


def emit(session: AsyncSession, ctx: TriageContext, event: Event, incident: JobSubject,
          cause: Envelope | None) -> None:
    """Stage an event; everything about an incident shares its report's correlation id. An
    assessment job's events name the assessment and its policy."""
    if isinstance(incident, AssessmentRequest) and isinstance(event, JobEvent):
        event = event.model_copy(update={"assessment_id": incident.id,
                                         "policy_number": incident.policy_number})
    if cause is not None:
        ctx.outbox.add(session, event, cause=cause)
    else:
        ctx.outbox.add(session, event, correlation_id=incident.correlation_id)


def add_history(session: AsyncSession, job: Job, status: str, at: datetime, actor: str,
             vendor_id: str | None = None, note: str | None = None) -> None:
    append_row(session, JobHistory, job_id=job.id, at=at, status=status, vendor_id=vendor_id,
               actor=actor, note=note)


async def incident_of(session: AsyncSession, job: Job, *, for_update: bool = False
                       ) -> JobSubject:
    """The job's subject: its incident, or for an assessment job the assessment request."""
    lock = for_update_arg(for_update)
    subject: JobSubject | None = (
        await session.get(AssessmentRequest, job.assessment_id, with_for_update=lock)
        if job.kind == JobKind.assessment
        else await session.get(Incident, job.incident_id, with_for_update=lock))
    assert subject is not None
    return subject
