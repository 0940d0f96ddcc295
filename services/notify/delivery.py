"""The delivery worker: sends due deliveries and keeps the durable retry schedule.

A pass claims due rows (FOR UPDATE SKIP LOCKED, so replicas share the work), counts the try
and pushes `next_attempt_at` forward by a lease before anything is sent: if the process dies
mid-send, the row is simply due again once the lease runs out. The pass sends concurrently and
records every result in a second transaction, fenced by the try number so a late answer never
overwrites a newer try.
Failures are retried after `base * 2^(tries-1)` seconds with full jitter, capped; after the
last try the delivery is dead until an operator redelivers it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.channels import EmailSender, SendFailed, WebhookSender, email_message
from services.notify.models import Delivery, DeliveryState, Subscription
from services.notify.settings import NotifySettings
from shared.clock import Clock
from shared.db import UnitOfWorkFactory
from shared.events import Channel, NotificationDead, NotificationDelivered
from shared.outbox import Outbox
from shared.polling import PollingLoop

log = logging.getLogger(__name__)

_random = secrets.SystemRandom()


def backoff_seconds(tries: int, *, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^(tries-1))]."""
    ceiling = min(cap, base * 2 ** min(max(tries - 1, 0), 40))
    return _random.uniform(0, ceiling)


class Permanent(SendFailed):
    """A failure no retry can fix (the subscription was deleted)."""


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    tries: int
    channel: str
    event_type: str
    payload: dict[str, Any]
    url: str | None
    secret: str | None
    subscription_active: bool


class DeliveryWorker:
    def __init__(self, uows: UnitOfWorkFactory, settings: NotifySettings, clock: Clock,
                 outbox: Outbox, webhooks: WebhookSender, email: EmailSender) -> None:
        self._uows = uows
        self._settings = settings
        self._clock = clock
        self._outbox = outbox
        self._webhooks = webhooks
        self._email = email
        self._loop = PollingLoop("delivery", self.run_once,
                                 interval_seconds=settings.worker_poll_seconds,
                                 again_at=settings.worker_batch_size)

    def wake(self) -> None:
        self._loop.wake()

    async def run(self) -> None:
        await self._loop.run()

    async def run_once(self) -> int:
        """One pass: claim what is due, send it concurrently, record the results together."""
        claimed = await self._claim()
        if claimed:
            errors = await asyncio.gather(*(self._attempt(item) for item in claimed))
            await self._record(list(zip(claimed, errors, strict=True)))
        return len(claimed)

    async def _claim(self) -> list[Claimed]:
        now = self._clock.now()
        lease = timedelta(seconds=self._settings.send_lease_seconds)
        async with self._uows() as uow:
            rows = (await uow.session.scalars(
                select(Delivery)
                .where(Delivery.state == DeliveryState.pending, Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(self._settings.worker_batch_size)
                .with_for_update(skip_locked=True)
            )).all()
            wanted = {row.subscription_id for row in rows if row.subscription_id}
            subscriptions = {s.id: s for s in await uow.session.scalars(
                select(Subscription).where(Subscription.id.in_(wanted)))} if wanted else {}
            claimed = []
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + lease
                subscription = subscriptions.get(row.subscription_id) if row.subscription_id \
                    else None
                claimed.append(Claimed(
                    id=row.id, tries=row.attempts, channel=row.channel, event_type=row.event_type,
                    payload=row.payload, url=subscription.url if subscription else None,
                    secret=subscription.secret if subscription else None,
                    subscription_active=bool(subscription and subscription.active),
                ))
            await uow.commit()
        return claimed

    async def _attempt(self, item: Claimed) -> SendFailed | None:
        """Send one delivery; its failure, or None."""
        error: SendFailed | None = None
        try:
            await self._send(item)
        except SendFailed as exc:
            error = exc
        except Exception as exc:  # a bug in one send must not stop the others
            log.exception("delivery %s failed unexpectedly", item.id)
            error = SendFailed(repr(exc)[:500])
        if error is not None:
            log.warning("delivery %s try %d failed: %s", item.id, item.tries, error)
        return error

    async def _send(self, item: Claimed) -> None:
        if item.channel == Channel.webhook:
            if not item.subscription_active or item.url is None or item.secret is None:
                raise Permanent("the subscription was deleted")
            await self._webhooks.send(url=item.url, secret=item.secret, delivery_id=str(item.id),
                                      event_type=item.event_type, payload=item.payload,
                                      timestamp=int(self._clock.now().timestamp()))
        elif item.channel == Channel.email:
            payload = item.payload
            await self._email.send(email_message(
                sender=self._settings.sender, to=payload["to"], subject=payload["subject"],
                text=payload["text"], html=payload["html"], delivery_id=str(item.id),
            ))
        else:
            raise Permanent(f"nothing to send over {item.channel}")

    async def _record(self, results: list[tuple[Claimed, SendFailed | None]]) -> None:
        async with self._uows() as uow:
            rows = {row.id: row for row in await uow.session.scalars(
                select(Delivery).where(Delivery.id.in_([item.id for item, _ in results]))
                .order_by(Delivery.id).with_for_update()
            )}
            now = self._clock.now()
            for item, error in results:
                row = rows.get(item.id)
                if row is None or row.state != DeliveryState.pending or row.attempts != item.tries:
                    continue  # redelivered or re-claimed meanwhile: that try owns the row now
                self._apply_result(uow.session, row, error, now)
            await uow.commit()

    def _apply_result(self, session: AsyncSession, row: Delivery, error: SendFailed | None,
                      now: datetime) -> None:
        if error is None:
            row.state = DeliveryState.delivered
            row.delivered_at = now
            row.last_error = None
            self._outbox.add(session, NotificationDelivered(
                **_facts(row, now), attempts=row.attempts), correlation_id=row.correlation_id)
        elif isinstance(error, Permanent) or row.attempts >= self._settings.max_attempts:
            row.state = DeliveryState.dead
            row.last_error = str(error)
            self._outbox.add(session, NotificationDead(
                **_facts(row, now), attempts=row.attempts, last_error=str(error)),
                correlation_id=row.correlation_id)
        else:
            row.last_error = str(error)
            row.next_attempt_at = now + timedelta(seconds=backoff_seconds(
                row.attempts, base=self._settings.backoff_base_seconds,
                cap=self._settings.backoff_cap_seconds))


def _facts(row: Delivery, now: datetime) -> dict[str, Any]:
    return {"delivery_id": row.id, "source_event_id": row.source_event_id,
            "source_event_type": row.event_type, "incident_id": row.incident_id,
            "recipient": row.recipient, "channel": Channel(row.channel), "at": now}
