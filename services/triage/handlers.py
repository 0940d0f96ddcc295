"""Triage's event handlers: its copy of policies, each reported incident, and risk's
assessment requests (jobs of kind assessment)."""

from __future__ import annotations

from collections.abc import Mapping

from services.triage import assessments, incidents
from services.triage.context import TriageContext
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import (
    Envelope,
    Event,
    IncidentReported,
    PolicyRegistered,
    PolicyUpdated,
    RiskAssessed,
    RiskAssessmentRequested,
)


def handlers(ctx: TriageContext) -> Mapping[type[Event], Handler]:
    async def policy_registered(uow: UnitOfWork, event: PolicyRegistered, _: Envelope) -> None:
        await incidents.record_policy(uow.session, ctx, event.policy, version=1)

    async def policy_updated(uow: UnitOfWork, event: PolicyUpdated, _: Envelope) -> None:
        await incidents.record_policy(uow.session, ctx, event.policy, version=event.version)

    async def incident_reported(uow: UnitOfWork, event: IncidentReported,
                                envelope: Envelope) -> None:
        await incidents.receive_incident(uow.session, ctx, event, envelope)

    async def assessment_requested(uow: UnitOfWork, event: RiskAssessmentRequested,
                                   envelope: Envelope) -> None:
        await assessments.open_assessment_job(uow.session, ctx, event, envelope)

    async def assessed(uow: UnitOfWork, event: RiskAssessed, _: Envelope) -> None:
        await assessments.complete_assessment_job(uow.session, ctx, event)

    return {PolicyRegistered: policy_registered, PolicyUpdated: policy_updated,
            IncidentReported: incident_reported,
            RiskAssessmentRequested: assessment_requested, RiskAssessed: assessed}
