"""Notify's use cases: turning an event into deliveries (the fan-out), subscriptions, the
deliveries operators watch, and each caller's in-app feed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import (
    Delivery,
    DeliveryState,
    IncidentCopy,
    Notification,
    PolicyContact,
    Subscription,
)
from services.notify.rendering import Rendered, Templates
from services.notify.routing import ADJUSTERS, OPERATORS, ROUTES, Route
from services.notify.schemas import SubscriptionIn
from services.notify.settings import NotifySettings
from services.notify.targets import RefusedTarget, TargetPolicy, UnresolvedTarget
from services.notify.transaction_cache import ActiveSubscription, TransactionCache
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.db import UnitOfWork
from shared.events import Channel, Envelope, NotificationDelivered, PolicyTerms
from shared.outbox import Outbox
from shared.problems import Conflict, NotFound, Unprocessable

# --- fan-out -------------------------------------------------------------------------------------


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
        now = self.clock.now()
        delivery = Delivery(
            id=uuid.uuid4(), source_event_id=envelope.id, event_type=envelope.type,
            incident_id=incident_id, recipient=recipient, channel=channel.value, target=target,
            subscription_id=subscription.id if subscription else None, kind=route.template,
            correlation_id=envelope.correlationid, state=DeliveryState.pending, attempts=0,
            next_attempt_at=now, created_at=now, last_error=None, delivered_at=None,
        )
        if channel is Channel.webhook:
            delivery.payload = {
                **envelope.model_dump(mode="json"),
                "notification": {"delivery_id": str(delivery.id), "recipient": recipient,
                                 "kind": route.template, "title": rendered.subject,
                                 "summary": rendered.text},
            }
        elif channel is Channel.email:
            delivery.payload = {"to": target, "subject": rendered.subject, "text": rendered.text,
                                "html": rendered.html}
        else:
            notification = Notification(
                id=uuid.uuid4(), recipient=recipient, source_event_id=envelope.id,
                event_type=envelope.type, kind=route.template, incident_id=incident_id,
                title=rendered.subject[:300], body=rendered.text, data=envelope.data,
                created_at=now, read_at=None,
            )
            session.add(notification)
            delivery.payload = {"notification_id": str(notification.id)}
            delivery.state = DeliveryState.delivered
            delivery.attempts = 1
            delivery.delivered_at = now
            self.outbox.add(session, NotificationDelivered(
                delivery_id=delivery.id, source_event_id=envelope.id,
                source_event_type=envelope.type, incident_id=incident_id, recipient=recipient,
                channel=channel, at=now, attempts=1,
            ), correlation_id=envelope.correlationid)
        session.add(delivery)


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
    cache = TransactionCache.of(session)
    copy = await cache.get(session, IncidentCopy, incident_id, for_update=True)
    if copy is None:
        copy = IncidentCopy(incident_id=incident_id, org_id=org_id)
        cache.add(session, copy, incident_id)
    return copy


async def record_policy_contact(session: AsyncSession, terms: PolicyTerms, *,
                                version: int) -> None:
    """Keep the policy's contact email (highest version wins; an older one arriving late
    changes nothing)."""
    cache = TransactionCache.of(session)
    contact = await cache.get(session, PolicyContact, terms.policy_number, for_update=True)
    if contact is None:
        cache.add(session, PolicyContact(policy_number=terms.policy_number, org_id=terms.org_id,
                                         contact_email=terms.contact_email, version=version),
                  terms.policy_number)
    elif version > contact.version:
        contact.org_id, contact.contact_email = terms.org_id, terms.contact_email
        contact.version = version


# --- who is who ----------------------------------------------------------------------------------


def feed_address(principal: Principal) -> str:
    """The in-app address a caller reads: adjusters and operators share their team's feed."""
    if principal.role is Role.adjuster:
        return ADJUSTERS
    if principal.role is Role.operator:
        return OPERATORS
    return principal.recipient


# --- subscriptions -------------------------------------------------------------------------------


async def create_subscription(uow: UnitOfWork, clock: Clock, principal: Principal,
                              body: SubscriptionIn, *, targets: TargetPolicy,
                              lookup_seconds: float, max_per_owner: int) -> Subscription:
    """A new active subscription. Its URL's addresses are checked first (no database work for
    a refused one); the owner's subscriptions are counted under a lock per owner, so parallel
    requests cannot pass the cap together, and a second active subscription of an owner for
    one URL is refused by a unique index (409), however many requests race."""
    owner = _subscription_owner(principal, body)
    url = str(body.url)
    try:
        async with asyncio.timeout(lookup_seconds):
            await targets.resolve(url)
    except (RefusedTarget, UnresolvedTarget) as exc:
        raise Unprocessable(f"url refused: {exc}", field="url") from exc
    except TimeoutError as exc:
        raise Unprocessable("url refused: its host did not resolve in time", field="url") from exc
    session = uow.session
    await _take_turns_per_owner(session, owner)
    active = await session.scalar(select(func.count()).select_from(Subscription).where(
        Subscription.owner == owner, Subscription.active.is_(True))) or 0
    if active >= max_per_owner:
        raise Conflict(f"{owner} has {active} subscriptions, the most allowed; delete one first")
    subscription = Subscription(
        id=uuid.uuid4(), owner=owner, url=url, secret=body.secret, event_types=body.event_types,
        active=True, created_by=principal.sub, created_at=clock.now(), deleted_at=None,
    )
    session.add(subscription)
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict(f"{owner} already has a subscription for this url", field="url") from exc
    return subscription


async def _take_turns_per_owner(session: AsyncSession, owner: str) -> None:
    """Subscribing counts, then inserts: one owner's requests take turns, until commit (an
    advisory lock on the owner)."""
    await session.execute(select(func.pg_advisory_xact_lock(
        func.hashtext(f"notify.subscriptions:{owner}"))))


def _subscription_owner(principal: Principal, body: SubscriptionIn) -> str:
    if principal.role is Role.operator:
        if body.owner is None:
            raise Unprocessable("operators name the owner (vendor:…, org:… or team:…)",
                                field="owner")
        return body.owner
    if body.owner is not None and body.owner != principal.recipient:
        raise Unprocessable("only operators may subscribe for another owner", field="owner")
    return principal.recipient


async def list_subscriptions(uow: UnitOfWork, principal: Principal,
                             owner: str | None) -> list[Subscription]:
    query = select(Subscription).where(Subscription.active.is_(True))
    if principal.role is not Role.operator:
        query = query.where(Subscription.owner == principal.recipient)
    elif owner is not None:
        query = query.where(Subscription.owner == owner)
    return list(await uow.session.scalars(query.order_by(Subscription.created_at,
                                                         Subscription.id)))


async def visible_subscription(uow: UnitOfWork, principal: Principal,
                               subscription_id: uuid.UUID) -> Subscription:
    subscription = await uow.session.get(Subscription, subscription_id)
    if subscription is None or not subscription.active or (
            principal.role is not Role.operator and subscription.owner != principal.recipient):
        raise NotFound(f"subscription {subscription_id} not found")
    return subscription


async def delete_subscription(uow: UnitOfWork, clock: Clock, principal: Principal,
                              subscription_id: uuid.UUID) -> None:
    """Deactivate: nothing more is sent to it (its pending deliveries die on their next try)."""
    subscription = await visible_subscription(uow, principal, subscription_id)
    subscription.active = False
    subscription.deleted_at = clock.now()
    await uow.commit()


# --- deliveries ----------------------------------------------------------------------------------


async def list_deliveries(uow: UnitOfWork, filters: Mapping[str, Any], *, limit: int,
                          offset: int) -> tuple[list[Delivery], int]:
    query = select(Delivery)
    for name, value in filters.items():
        if value is not None:
            query = query.where(getattr(Delivery, name) == value)
    total = await uow.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await uow.session.scalars(
        query.order_by(Delivery.created_at.desc(), Delivery.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def get_delivery(uow: UnitOfWork, delivery_id: uuid.UUID) -> Delivery:
    delivery = await uow.session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} not found")
    return delivery


async def redeliver(uow: UnitOfWork, clock: Clock, delivery_id: uuid.UUID) -> Delivery:
    """A dead delivery gets a fresh set of tries, starting now. A delivered one is never sent
    again (at most one success), and a pending one is already scheduled."""
    delivery = await uow.session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} not found")
    if delivery.state != DeliveryState.dead:
        raise Conflict(f"delivery {delivery_id} is {delivery.state}; only dead deliveries "
                       "can be redelivered")
    if delivery.subscription_id is not None:
        subscription = await uow.session.get(Subscription, delivery.subscription_id)
        if subscription is None or not subscription.active:
            raise Conflict("its subscription was deleted; subscribe again and ask for a new event")
    delivery.state = DeliveryState.pending
    delivery.attempts = 0
    delivery.next_attempt_at = clock.now()
    await uow.commit()
    return delivery


# --- the in-app feed -----------------------------------------------------------------------------


async def feed(uow: UnitOfWork, recipient: str, *, unread_only: bool, limit: int,
               offset: int) -> tuple[list[Notification], int, int]:
    """(page, total matching, unread in the whole feed)."""
    mine = select(Notification).where(Notification.recipient == recipient)
    query = mine.where(Notification.read_at.is_(None)) if unread_only else mine
    total = await uow.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    unread = await uow.session.scalar(
        select(func.count()).select_from(mine.where(Notification.read_at.is_(None)).subquery())
    ) or 0
    rows = await uow.session.scalars(
        query.order_by(Notification.created_at.desc(), Notification.id).limit(limit).offset(offset)
    )
    return list(rows), total, unread


async def mark_read(uow: UnitOfWork, clock: Clock, recipient: str,
                    notification_id: uuid.UUID) -> Notification:
    notification = await uow.session.get(Notification, notification_id, with_for_update=True)
    if notification is None or notification.recipient != recipient:
        raise NotFound(f"notification {notification_id} not found")
    if notification.read_at is None:
        notification.read_at = clock.now()
        await uow.commit()
    return notification


def next_attempt(delivery: Delivery) -> datetime | None:
    return delivery.next_attempt_at if delivery.state == DeliveryState.pending else None
