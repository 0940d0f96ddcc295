"""Payout's event handlers: its copy of policies, one claim per incident, loss items from
policyholders and vendors, remediation items from risk. Assessment runs as soon as a claim is
ready (see `service`)."""

from __future__ import annotations

from collections.abc import Mapping

from services.payout import service
from services.payout.service import Context
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import (
    Envelope,
    Event,
    ExposureAlerted,
    IncidentReported,
    IncidentResponseCompleted,
    LossSubmitted,
    PolicyRegistered,
    PolicyUpdated,
    RemediationDone,
    RiskAssessed,
)


def handlers(ctx: Context) -> Mapping[type[Event], Handler]:
    async def policy_registered(uow: UnitOfWork, event: PolicyRegistered, envelope: Envelope) -> None:
        if await service.store_policy(uow, ctx, event.policy, version=1):
            await service.assess_open_claims_of(uow, ctx, event.policy.policy_number, envelope)

    async def policy_updated(uow: UnitOfWork, event: PolicyUpdated, envelope: Envelope) -> None:
        if await service.store_policy(uow, ctx, event.policy, version=event.version):
            await service.assess_open_claims_of(uow, ctx, event.policy.policy_number, envelope)

    async def incident_reported(uow: UnitOfWork, event: IncidentReported, envelope: Envelope) -> None:
        await service.record_incident(uow, ctx, event, envelope)

    async def loss_submitted(uow: UnitOfWork, event: LossSubmitted, envelope: Envelope) -> None:
        await service.record_submitted_loss(uow, ctx, event, envelope)

    async def response_completed(uow: UnitOfWork, event: IncidentResponseCompleted,
                                 envelope: Envelope) -> None:
        await service.record_response(uow, ctx, event, envelope)

    async def remediation(uow: UnitOfWork, event: RiskAssessed | ExposureAlerted | RemediationDone,
                          envelope: Envelope) -> None:
        items = event.items if isinstance(event, RiskAssessed) else [event.item]
        await service.record_remediation(uow, ctx, event.policy_number, items, envelope)

    return {
        RiskAssessed: remediation,
        ExposureAlerted: remediation,
        RemediationDone: remediation,
        PolicyRegistered: policy_registered,
        PolicyUpdated: policy_updated,
        IncidentReported: incident_reported,
        LossSubmitted: loss_submitted,
        IncidentResponseCompleted: response_completed,
    }
