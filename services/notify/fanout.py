"""The fan-out: turning an event (or a reminder) into its deliveries, per the routing table,
and the copies of incidents and policies it draws on (titles, contact emails). The worker
that then sends the deliveries is `delivery`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import (
    Delivery,
    DeliveryState,
    IncidentCopy,
    Notification,
    PolicyContact,
)
from services.notify.rendering import Rendered, Templates
from services.notify.routing import ADJUSTERS, OPERATORS, ROUTES, Route
from services.notify.settings import NotifySettings
from services.notify.transaction_cache import ActiveSubscription, TransactionCache
from shared.clock import Clock
from shared.db import TransactionRows, append_row
from shared.events import Channel, Envelope, NotificationDelivered, PolicyTerms
from shared.outbox import Outbox


@dataclass(frozen=True)
class Notifier:
    """Turns one event (or reminder) into its deliveries, per the routing table."""

    settings: NotifySettings
    clock: Clock
    outbox: Outbox
    templates: Templates

    async def notify(self, session: AsyncSession, envelope: Envelope,
                     incident: IncidentCopy | None, *, policy: PolicyContact | None = None
                     ) -> int:
        """Stage the deliveries of `envelope`; returns how many are new. Keys that already
        have a delivery (a replay) are skipped: at most one per (event, recipient, channel,
        target). Reads nothing it adds, so it runs as well without autoflush. The
        policyholder's email is the incident's contact, or for an event about a policy (risk's)
        the policy's contact email."""
        rule = ROUTES.get(envelope.type)
        if rule is None:
            return 0
        cache = TransactionCache.of(session)
        context = _context(envelope, incident)
        # An event of no incident (risk's, about a policy) reaches this once per event id
        # (the consumer's inbox), so it has no earlier deliveries to skip.
        existing = (await cache.delivery_keys(session, context["incident_id"])
                    if context["incident_id"] is not None else set())
        created = 0
        for route in rule.routes:
            recipient = route.audience.address(envelope.data)
            rendered = self.templates.render(route.template, {**context, "recipient": recipient})
            for channel in route.channels:
                for target, subscription in await self._targets(session, cache, channel,
                                                                recipient, envelope.type,
                                                                incident, policy):
                    key = (envelope.id, recipient, channel.value, target)
                    if key in existing:
                        continue
                    existing.add(key)
                    self._stage(session, envelope, route, recipient, channel, target,
                                subscription, rendered, context["incident_id"])
                    created += 1
        return created

    async def _targets(self, session: AsyncSession, cache: TransactionCache, channel: Channel,
                       recipient: str, event_type: str, incident: IncidentCopy | None,
                       policy: PolicyContact | None) -> list[tuple[str, ActiveSubscription | None]]:
        if channel is Channel.in_app:
            return [(recipient, None)]
        if channel is Channel.email:
            address = self.email_address(recipient, incident, policy)
            return [(address, None)] if address else []
        return [(str(s.id), s) for s in await cache.subscriptions(session, recipient)
                if s.wants(event_type)]

    def email_address(self, recipient: str, incident: IncidentCopy | None,
                      policy: PolicyContact | None = None) -> str | None:
        if recipient == ADJUSTERS:
            return self.settings.adjusters_email or None
        if recipient == OPERATORS:
            return self.settings.operators_email or None
        if incident is not None and recipient == f"org:{incident.org_id}":
            return incident.contact_email
        if policy is not None and recipient == f"org:{policy.org_id}":
            return policy.contact_email
        return None  # vendors: webhook and feed only

    def _stage(self, session: AsyncSession, envelope: Envelope, route: Route, recipient: str,
               channel: Channel, target: str, subscription: ActiveSubscription | None,
               rendered: Rendered, incident_id: uuid.UUID | None) -> None:
        """Append the delivery (and an in-app notification, delivered at once): rows this
        transaction never reads back, so they go in at commit, one executemany per table."""
        now = self.clock.now()
        delivery_id = uuid.uuid4()
        state, attempts, delivered_at = DeliveryState.pending, 0, None
        payload: dict[str, Any]
        if channel is Channel.webhook:
            payload = {
                **envelope.model_dump(mode="json"),
                "notification": {"delivery_id": str(delivery_id), "recipient": recipient,
                                 "kind": route.template, "title": rendered.subject,
                                 "summary": rendered.text},
            }
        elif channel is Channel.email:
            payload = {"to": target, "subject": rendered.subject, "text": rendered.text,
                       "html": rendered.html}
        else:
            notification_id = uuid.uuid4()
            append_row(session, Notification,
                       id=notification_id, recipient=recipient, source_event_id=envelope.id,
                       event_type=envelope.type, kind=route.template, incident_id=incident_id,
                       title=rendered.subject[:300], body=rendered.text, data=envelope.data,
                       created_at=now, read_at=None)
            payload = {"notification_id": str(notification_id)}
            state, attempts, delivered_at = DeliveryState.delivered, 1, now
            self.outbox.add(session, NotificationDelivered(
                delivery_id=delivery_id, source_event_id=envelope.id,
                source_event_type=envelope.type, incident_id=incident_id, recipient=recipient,
                channel=channel, at=now, attempts=1,
            ), correlation_id=envelope.correlationid)
        append_row(session, Delivery,
                   id=delivery_id, source_event_id=envelope.id, event_type=envelope.type,
                   incident_id=incident_id, recipient=recipient, channel=channel.value,
                   target=target, subscription_id=subscription.id if subscription else None,
                   kind=route.template, correlation_id=envelope.correlationid, payload=payload,
                   state=state, attempts=attempts, next_attempt_at=now, created_at=now,
                   last_error=None, delivered_at=delivered_at)


def _context(envelope: Envelope, incident: IncidentCopy | None) -> dict[str, Any]:
    return {
        "data": envelope.data,
        "event_type": envelope.type,
        "event_id": str(envelope.id),
        "incident_id": (uuid.UUID(str(envelope.data["incident_id"]))
                        if "incident_id" in envelope.data else None),
        "incident": {"title": incident.title if incident else None,
                     "policy_number": incident.policy_number if incident else None},
    }


async def incident_copy(session: AsyncSession, incident_id: uuid.UUID,
                        org_id: str) -> IncidentCopy:
    """The incident's copy, locked, created (partly known) when this is the first word of it."""
    rows = TransactionRows.of(session)
    copy = await rows.get(session, IncidentCopy, incident_id, for_update=True)
    if copy is None:
        copy = IncidentCopy(incident_id=incident_id, org_id=org_id)
        rows.add(session, copy, incident_id)
    return copy


async def record_policy_contact(session: AsyncSession, terms: PolicyTerms, *,
                                version: int) -> None:
    """Keep the policy's contact email (highest version wins; an older one arriving late
    changes nothing)."""
    rows = TransactionRows.of(session)
    contact = await rows.get(session, PolicyContact, terms.policy_number, for_update=True)
    if contact is None:
        rows.add(session, PolicyContact(policy_number=terms.policy_number, org_id=terms.org_id,
                                         contact_email=terms.contact_email, version=version),
                  terms.policy_number)
    elif version > contact.version:
        contact.org_id, contact.contact_email = terms.org_id, terms.contact_email
        contact.version = version
