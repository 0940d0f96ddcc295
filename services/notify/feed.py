"""Each caller's in-app feed: whose feed a caller reads, a page of it, and marking one read."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from services.notify.models import Notification
from services.notify.routing import ADJUSTERS, OPERATORS
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.db import UnitOfWork
from shared.problems import NotFound


def feed_address(principal: Principal) -> str:
    """The in-app address a caller reads: adjusters and operators share their team's feed."""
    if principal.role is Role.adjuster:
        return ADJUSTERS
    if principal.role is Role.operator:
        return OPERATORS
    return principal.recipient


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
