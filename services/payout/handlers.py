"""Payout's event handlers: its copy of policies, one claim per incident, loss items from
policyholders and vendors. Assessment runs as soon as a claim is ready (see `service`)."""

from __future__ import annotations

from collections.abc import Mapping

from services.payout import service
from services.payout.service import Context
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import (
    Envelope,
    Event,
    IncidentReported,
    IncidentResponseCompleted,
    LossSubmitted,
    PolicyRegistered,
    PolicyUpdated,
)


def handlers(ctx: Context) -> Mapping[type[Event], Handler]:
    async def policy_registered(uow: UnitOfWork, event: PolicyRegistered, envelope: Envelope) -> None:
        await service.record_policy(uow, ctx, event.policy, 1, envelope)

    async def policy_updated(uow: UnitOfWork, event: PolicyUpdated, envelope: Envelope) -> None:
        await service.record_policy(uow, ctx, event.policy, event.version, envelope)

    async def incident_reported(uow: UnitOfWork, event: IncidentReported, envelope: Envelope) -> None:
        await service.record_incident(uow, ctx, event, envelope)

    async def loss_submitted(uow: UnitOfWork, event: LossSubmitted, envelope: Envelope) -> None:
        await service.record_submitted_loss(uow, ctx, event, envelope)

    async def response_completed(uow: UnitOfWork, event: IncidentResponseCompleted,
                                 envelope: Envelope) -> None:
        await service.record_response(uow, ctx, event, envelope)

    return {
        PolicyRegistered: policy_registered,
        PolicyUpdated: policy_updated,
        IncidentReported: incident_reported,
        LossSubmitted: loss_submitted,
        IncidentResponseCompleted: response_completed,
    }
