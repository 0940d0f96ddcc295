"""The delivery log operators watch: deliveries listed and read, and a dead one given a fresh
set of tries. The worker that sends them (and keeps their retry schedule) is `delivery`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from services.notify.models import Delivery, DeliveryState, Subscription
from shared.clock import Clock
from shared.db import UnitOfWork
from shared.problems import Conflict, NotFound


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


def next_attempt(delivery: Delivery) -> datetime | None:
    return delivery.next_attempt_at if delivery.state == DeliveryState.pending else None
