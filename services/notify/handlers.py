"""Notify's event handlers: keep the incident and policy copies and the reminders current, and
fan every routed event out to its deliveries. The consumer commits (with the inbox row).

They run without autoflush and look rows up through the transaction's cache
(`services.notify.transaction_cache`): the rows of a whole fetch are inserted at commit, one statement per
table."""

from __future__ import annotations

from collections.abc import Mapping

from services.notify import reminders
from services.notify.fanout import Notifier, incident_copy, record_policy_contact
from services.notify.models import IncidentCopy, PolicyContact, Reminder
from services.notify.routing import ROUTED_TYPES
from services.notify.transaction_cache import TransactionCache
from shared.consumer import Handler, ids_in
from shared.db import TransactionRows, UnitOfWork
from shared.events import (
    Envelope,
    Event,
    IncidentEvent,
    IncidentReported,
    IncidentTriaged,
    PolicyRegistered,
    PolicyUpdated,
    RegulatorReportFiled,
    RiskEvent,
)


def handlers(notifier: Notifier) -> Mapping[type[Event], Handler]:
    async def on_reported(uow: UnitOfWork, event: IncidentReported, envelope: Envelope) -> None:
        copy = await incident_copy(uow.session, event.incident_id, event.org_id)
        copy.contact_email = event.contact.email
        copy.title = event.title
        copy.policy_number = event.policy_number
        await notifier.notify(uow.session, envelope, copy)

    async def on_triaged(uow: UnitOfWork, event: IncidentTriaged, envelope: Envelope) -> None:
        copy = await incident_copy(uow.session, event.incident_id, event.org_id)
        copy.regulatory_deadline = event.regulatory_deadline
        copy.policy_number = copy.policy_number or event.policy_number
        if event.regulatory_deadline is not None:
            await reminders.schedule(uow.session, notifier, copy, event.regulatory_deadline,
                                     envelope.correlationid)
        await notifier.notify(uow.session, envelope, copy)

    async def on_regulator_report(uow: UnitOfWork, event: RegulatorReportFiled,
                                  envelope: Envelope) -> None:
        copy = await incident_copy(uow.session, event.incident_id, event.org_id)
        copy.regulator_reported_at = event.reported_at
        await reminders.cancel(uow.session, event.incident_id)

    async def on_event(uow: UnitOfWork, event: IncidentEvent, envelope: Envelope) -> None:
        copy = await TransactionRows.of(uow.session).get(uow.session, IncidentCopy,
                                                          event.incident_id)
        await notifier.notify(uow.session, envelope, copy)

    async def on_risk(uow: UnitOfWork, event: RiskEvent, envelope: Envelope) -> None:
        policy = await TransactionRows.of(uow.session).get(uow.session, PolicyContact,
                                                            event.policy_number)
        await notifier.notify(uow.session, envelope, None, policy=policy)  # of no incident

    async def on_policy_registered(uow: UnitOfWork, event: PolicyRegistered,
                                   _: Envelope) -> None:
        await record_policy_contact(uow.session, event.policy, version=1)

    async def on_policy_updated(uow: UnitOfWork, event: PolicyUpdated, _: Envelope) -> None:
        await record_policy_contact(uow.session, event.policy, version=event.version)

    table: dict[type[Event], Handler] = {
        event_type: on_risk if issubclass(event_type, RiskEvent) else on_event
        for name, event_type in Event.registry.items() if name in ROUTED_TYPES
    }
    table[IncidentReported] = on_reported
    table[IncidentTriaged] = on_triaged
    table[RegulatorReportFiled] = on_regulator_report
    table[PolicyRegistered] = on_policy_registered
    table[PolicyUpdated] = on_policy_updated
    return {event_type: _without_autoflush(handler) for event_type, handler in table.items()}


COPY_CHANGING = frozenset(event.event_type for event in (IncidentReported, IncidentTriaged,
                                                          RegulatorReportFiled))
"""The events whose handlers change (and so lock) the incident's copy."""


def _reminding(envelope: Envelope) -> bool:
    """Whether the event's handler schedules or cancels (and so locks) the incident's reminder:
    a confirmation to the regulator, or a triage with a regulatory deadline."""
    return envelope.type == RegulatorReportFiled.event_type or (
        envelope.type == IncidentTriaged.event_type
        and envelope.data.get("regulatory_deadline") is not None)


async def load_batch(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    """What a batch of events reads, one statement each instead of one per event: the
    incident copies, locked (in id order) where its events change them, then those incidents'
    reminders, locked (the lock order of `reminders`: the copy, then the reminder), and the
    delivery keys of every incident it names."""
    session = uow.session
    rows = TransactionRows.of(session)
    changing = ids_in((e for e in envelopes if e.type in COPY_CHANGING), "incident_id")
    mentioned = ids_in(envelopes, "incident_id")
    await rows.load(session, IncidentCopy, changing, for_update=True)
    await rows.load(session, IncidentCopy, mentioned - changing)
    await rows.load(session, Reminder, ids_in(filter(_reminding, envelopes), "incident_id"),
                    for_update=True)
    await TransactionCache.of(session).load_delivery_keys(session, mentioned)


def _without_autoflush(handler: Handler) -> Handler:
    async def run(uow: UnitOfWork, event: Event, envelope: Envelope) -> None:
        with uow.session.no_autoflush:
            await handler(uow, event, envelope)

    return run
