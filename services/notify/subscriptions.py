"""Webhook subscriptions: who subscribes for whom, the cap per owner, and deactivating one."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import Subscription
from services.notify.schemas import SubscriptionIn
from services.notify.targets import BusyOwner, RefusedTarget, TargetPolicy, UnresolvedTarget
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.db import UnitOfWork
from shared.problems import Conflict, NotFound, TooManyRequests, Unprocessable


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
            await targets.check(url, owner)
    except BusyOwner as exc:
        raise TooManyRequests(f"{exc}: subscribe again shortly") from exc
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
