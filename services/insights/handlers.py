"""Insights' event handlers: every topic's events into the read model. The consumer commits
(with the inbox row), so each event is applied once.

Adding a topic is one entry here: its events' handlers (the consumer subscribes to the topics
of the events it handles)."""

from __future__ import annotations

from collections.abc import Mapping

from services.insights import service
from services.insights.service import MovementKind
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import (
    ClaimApproved,
    ClaimAssessed,
    ClaimClosedWithoutPayment,
    ClaimDenied,
    ClaimOpened,
    Envelope,
    Event,
    IncidentReported,
    IncidentResponseCompleted,
    JobDispatched,
    PaymentSucceeded,
    PolicyRegistered,
    PolicyUpdated,
)
from shared.money import ZERO


async def on_policy_registered(uow: UnitOfWork, event: PolicyRegistered, envelope: Envelope) -> None:
    await service.apply_policy(uow, event.policy, version=1)


async def on_policy_updated(uow: UnitOfWork, event: PolicyUpdated, envelope: Envelope) -> None:
    await service.apply_policy(uow, event.policy, version=event.version)


async def on_reported(uow: UnitOfWork, event: IncidentReported, envelope: Envelope) -> None:
    record = await service.incident(uow, event.incident_id, event.org_id)
    record.policy_number = event.policy_number
    record.category = event.category.value
    record.occurred_at = event.occurred_at
    record.reported_at = event.reported_at


async def on_dispatched(uow: UnitOfWork, event: JobDispatched, envelope: Envelope) -> None:
    record = await service.incident(uow, event.incident_id, event.org_id)
    if record.first_dispatched_at is None or event.at < record.first_dispatched_at:
        record.first_dispatched_at = event.at


async def on_response_completed(uow: UnitOfWork, event: IncidentResponseCompleted,
                                envelope: Envelope) -> None:
    service.response_completed(await service.incident(uow, event.incident_id, event.org_id), event)


async def on_claim_opened(uow: UnitOfWork, event: ClaimOpened, envelope: Envelope) -> None:
    record = await service.claim(uow, event.claim_id, event.incident_id, event.org_id)
    record.policy_number = event.policy_number
    record.opened_at = event.at


async def on_assessed(uow: UnitOfWork, event: ClaimAssessed, envelope: Envelope) -> None:
    record = await service.claim(uow, event.claim_id, event.incident_id, event.org_id)
    service.move(uow, envelope.id, record, MovementKind.reserve, event.payable, event.at)


async def on_approved(uow: UnitOfWork, event: ClaimApproved, envelope: Envelope) -> None:
    record = await service.claim(uow, event.claim_id, event.incident_id, event.org_id)
    service.move(uow, envelope.id, record, MovementKind.reserve, event.amount, event.at)


async def on_closed(uow: UnitOfWork, event: ClaimDenied | ClaimClosedWithoutPayment,
                    envelope: Envelope) -> None:
    record = await service.claim(uow, event.claim_id, event.incident_id, event.org_id)
    service.move(uow, envelope.id, record, MovementKind.closed, ZERO, event.at)


async def on_paid(uow: UnitOfWork, event: PaymentSucceeded, envelope: Envelope) -> None:
    record = await service.claim(uow, event.claim_id, event.incident_id, event.org_id)
    service.move(uow, envelope.id, record, MovementKind.paid, event.amount, event.at)


def handlers() -> Mapping[type[Event], Handler]:
    table: dict[type[Event], Handler] = {
        # cyberclaims.policies
        PolicyRegistered: on_policy_registered,
        PolicyUpdated: on_policy_updated,
        # cyberclaims.incidents
        IncidentReported: on_reported,
        # cyberclaims.response
        JobDispatched: on_dispatched,
        IncidentResponseCompleted: on_response_completed,
        # cyberclaims.claims
        ClaimOpened: on_claim_opened,
        ClaimAssessed: on_assessed,
        ClaimApproved: on_approved,
        ClaimDenied: on_closed,
        ClaimClosedWithoutPayment: on_closed,
        PaymentSucceeded: on_paid,
    }
    return {event_type: _counted(handler) for event_type, handler in table.items()}


def _counted(handler: Handler) -> Handler:
    async def run(uow: UnitOfWork, event: Event, envelope: Envelope) -> None:
        await service.count_change(uow)
        await handler(uow, event, envelope)

    return run
