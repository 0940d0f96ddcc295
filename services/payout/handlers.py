"""Payout's event handlers: its copy of policies, one claim per incident, loss items from
policyholders and vendors, triage's grading (shown to the adjuster), remediation items from
risk. Assessment runs as soon as a claim is ready (see `assessing`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import select

from services.payout import assessing, claims, losses
from services.payout.context import Context
from services.payout.models import Claim
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import (
    Envelope,
    Event,
    ExposureAlerted,
    IncidentReported,
    IncidentResponseCompleted,
    IncidentTriaged,
    LossSubmitted,
    PolicyRegistered,
    PolicyUpdated,
    RemediationDone,
    RemediationSuperseded,
    RiskAssessed,
)


async def claim_of_incident(uow: UnitOfWork, incident_id: uuid.UUID) -> list[str]:
    """What a dead-lettered event about `incident_id` freezes here: its claim, if opened."""
    claim_id = await uow.session.scalar(select(Claim.id).where(Claim.incident_id == incident_id))
    return [f"claim {claim_id}"] if claim_id is not None else []


def handlers(ctx: Context) -> Mapping[type[Event], Handler]:
    async def policy_registered(uow: UnitOfWork, event: PolicyRegistered, envelope: Envelope) -> None:
        await claims.record_policy(uow, ctx, event.policy, 1, envelope)

    async def policy_updated(uow: UnitOfWork, event: PolicyUpdated, envelope: Envelope) -> None:
        await claims.record_policy(uow, ctx, event.policy, event.version, envelope)

    async def incident_reported(uow: UnitOfWork, event: IncidentReported, envelope: Envelope) -> None:
        await claims.record_incident(uow, ctx, event, envelope)

    async def incident_triaged(uow: UnitOfWork, event: IncidentTriaged, envelope: Envelope) -> None:
        await claims.record_triage(uow, event)

    async def loss_submitted(uow: UnitOfWork, event: LossSubmitted, envelope: Envelope) -> None:
        await losses.record_submitted_loss(uow, ctx, event, envelope)

    async def response_completed(uow: UnitOfWork, event: IncidentResponseCompleted,
                                 envelope: Envelope) -> None:
        await claims.record_response(uow, ctx, event, envelope)

    async def remediation(uow: UnitOfWork,
                          event: RiskAssessed | ExposureAlerted | RemediationDone
                          | RemediationSuperseded, envelope: Envelope) -> None:
        items = event.items if isinstance(event, RiskAssessed) else [event.item]
        await assessing.record_remediation(uow, ctx, event.policy_number, items, envelope)

    return {
        RiskAssessed: remediation,
        ExposureAlerted: remediation,
        RemediationDone: remediation,
        RemediationSuperseded: remediation,
        PolicyRegistered: policy_registered,
        PolicyUpdated: policy_updated,
        IncidentReported: incident_reported,
        IncidentTriaged: incident_triaged,
        LossSubmitted: loss_submitted,
        IncidentResponseCompleted: response_completed,
    }
