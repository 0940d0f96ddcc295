"""The delivery worker: sends due deliveries and keeps the durable retry schedule.

A pass claims due rows (FOR UPDATE SKIP LOCKED, so replicas share the work), counts the try
and pushes `next_attempt_at` forward by a lease before anything is sent: if the process dies
mid-send, the row is simply due again once the lease runs out.

One slow target never holds up the others. Every send runs in its own task and has a total
deadline (`delivery_deadline_seconds`), however slowly the other side trickles its answer.
Sends are grouped in lanes, one per webhook host and one for email, each with its own limit
(`webhook_connections_per_host`; twice `smtp_connections`): a pass claims a row only when its
lane has room, and the deadline counts any wait, so a try always ends within its lease; a host
that is full leaves the rows of every other host and the email to go out. A pass never waits
for a send: it records the tries that ended since the last pass (fenced by the try number so a
late answer never overwrites a newer try) and starts the next ones, in one transaction; a try
that ends wakes the next pass a moment later, so the tries that end together share it.
Failures are retried after `base * 2^(tries-1)` seconds with full jitter, capped; after the
last try the delivery is dead until an operator redelivers it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.channels import (
    EmailSender,
    RefusedSend,
    SendFailed,
    WebhookSender,
    email_message,
)
from services.notify.models import Delivery, DeliveryState, Subscription
from services.notify.settings import NotifySettings
from shared.clock import Clock
from shared.db import UnitOfWorkFactory, any_of
from shared.events import Channel, NotificationDead, NotificationDelivered
from shared.outbox import Outbox
from shared.polling import PollingLoop

log = logging.getLogger(__name__)

_random = secrets.SystemRandom()

EMAIL_LANE = "email"
ENDED_SETTLE_SECONDS = 0.01
"""How long a pass waits after a try ends for the others that end about then (a lane's tries
start together): a pass per try cost a transaction per try."""


def backoff_seconds(tries: int, *, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^(tries-1))]."""
    ceiling = min(cap, base * 2 ** min(max(tries - 1, 0), 40))
    return _random.uniform(0, ceiling)


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
    lane: str


def webhook_lane(url: str | None) -> str:
    """The lane of a webhook: its host (every subscription to one host shares it)."""
    return f"webhook:{(urlsplit(url).hostname or '') if url else ''}"


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
        self._sending: set[asyncio.Task[None]] = set()
        self._in_lane: Counter[str] = Counter()
        self._ended: list[tuple[Claimed, SendFailed | None]] = []
        # subscriptions seen due while their host's lane was full: the claim skips their rows
        self._waiting_for_full_lane: dict[uuid.UUID, str] = {}
        self._settling: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        self._loop.wake()

    async def run(self) -> None:
        try:
            await self._loop.run()
        finally:  # stopping: the leases bring unfinished tries back
            if self._settling is not None:
                self._settling.cancel()
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def run_once(self) -> int:
        """One pass, one transaction: record the tries that ended, then start the due ones
        that have room."""
        ended, self._ended = self._ended, []
        try:
            async with self._uows() as uow:
                if ended:
                    await self._record(uow.session, ended)
                claimed = await self._claim(uow.session)
                await uow.commit()
        except BaseException:
            self._ended[:0] = ended  # for the next pass (a success is not sent again)
            raise
        for item in claimed:
            self._in_lane[item.lane] += 1
            task = asyncio.create_task(self._attempt(item), name=f"delivery {item.id}")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return len(claimed)

    def _settle_then_wake(self) -> None:
        """Wake the loop `ENDED_SETTLE_SECONDS` after a try ends, once for all that end
        meanwhile: tries started together end together, and one pass records them all."""
        if self._settling is None:
            self._settling = asyncio.get_running_loop().call_later(ENDED_SETTLE_SECONDS,
                                                                   self._settled)

    def _settled(self) -> None:
        self._settling = None
        self._loop.wake()

    def _capacity(self, lane: str) -> int:
        """Tries at once in `lane`. Email may have one more waiting per SMTP connection, so a
        connection never idles until the next pass (the deadline counts the wait too)."""
        return 2 * self._settings.smtp_connections if lane == EMAIL_LANE \
            else self._settings.webhook_connections_per_host

    async def _claim(self, session: AsyncSession) -> list[Claimed]:
        room = min(self._settings.worker_batch_size,
                   self._settings.sends_in_flight - len(self._sending))
        if room <= 0:
            return []
        full = {lane for lane, sending in self._in_lane.items()
                if sending >= self._capacity(lane)}
        self._waiting_for_full_lane = {subscription: lane for subscription, lane
                                       in self._waiting_for_full_lane.items() if lane in full}
        now = self._clock.now()
        query = (select(Delivery.id, Delivery.channel, Delivery.subscription_id, Subscription.url,
                        Subscription.secret, Subscription.active)
                 .outerjoin(Subscription, Subscription.id == Delivery.subscription_id)
                 .where(Delivery.state == DeliveryState.pending, Delivery.next_attempt_at <= now))
        if EMAIL_LANE in full:
            query = query.where(Delivery.channel != Channel.email.value)
        if self._waiting_for_full_lane:
            query = query.where(or_(Delivery.subscription_id.is_(None),
                                    Delivery.subscription_id.not_in(
                                        list(self._waiting_for_full_lane))))
        due = (await session.execute(
            query.order_by(Delivery.next_attempt_at, Delivery.id).limit(room)
            .with_for_update(of=Delivery, skip_locked=True)
        )).all()
        taking: Counter[str] = Counter()
        taken: dict[uuid.UUID, tuple[str, Any]] = {}
        for row in due:
            lane = EMAIL_LANE if row.channel == Channel.email else webhook_lane(row.url)
            if self._in_lane[lane] + taking[lane] >= self._capacity(lane):
                if row.subscription_id is not None:
                    self._waiting_for_full_lane[row.subscription_id] = lane
                continue  # stays due, for a pass that finds room in its lane
            taking[lane] += 1
            taken[row.id] = (lane, row)
        claimed = []
        if taken:
            # One statement counts the tries, pushes the rows past their lease and reads
            # the payloads of the rows taken (only theirs).
            tried = {row.id: row for row in await session.execute(
                update(Delivery).where(any_of(Delivery.id, taken))
                .values(attempts=Delivery.attempts + 1, next_attempt_at=now + timedelta(
                    seconds=self._settings.send_lease_seconds))
                .returning(Delivery.id, Delivery.attempts, Delivery.event_type,
                           Delivery.payload)
                .execution_options(synchronize_session=False))}
            for delivery_id, (lane, due_row) in taken.items():  # in the order they were due
                row = tried[delivery_id]
                claimed.append(Claimed(
                    id=delivery_id, tries=row.attempts, channel=due_row.channel,
                    event_type=row.event_type, payload=row.payload, url=due_row.url,
                    secret=due_row.secret, subscription_active=bool(due_row.active),
                    lane=lane,
                ))
        return claimed

    async def _attempt(self, item: Claimed) -> None:
        """Send one delivery within the deadline; its result is recorded by the next pass."""
        error: SendFailed | None = None
        deadline = self._settings.delivery_deadline_seconds
        try:
            async with asyncio.timeout(deadline):
                await self._send(item)
        except SendFailed as exc:
            error = exc
        except TimeoutError:
            error = SendFailed(f"not done within the {deadline:g} s deadline")
        except Exception as exc:  # a bug in one send must not stop the others
            log.exception("delivery %s failed unexpectedly", item.id)
            error = SendFailed(repr(exc)[:500])
        finally:
            self._in_lane[item.lane] -= 1
            if not self._in_lane[item.lane]:
                del self._in_lane[item.lane]
        if error is not None:
            log.warning("delivery %s try %d failed: %s", item.id, item.tries, error)
        self._ended.append((item, error))
        self._settle_then_wake()

    async def _send(self, item: Claimed) -> None:
        if item.channel == Channel.webhook:
            if not item.subscription_active or item.url is None or item.secret is None:
                raise RefusedSend("the subscription was deleted")
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
            raise RefusedSend(f"nothing to send over {item.channel}")

    async def _record(self, session: AsyncSession,
                      results: list[tuple[Claimed, SendFailed | None]]) -> None:
        """Successes are marked in one statement per try number (the fence: a row redelivered
        or claimed again meanwhile belongs to that try now), which returns what their
        `NotificationDelivered` says; failures, rare, row by row."""
        delivered: dict[int, list[uuid.UUID]] = {}
        failed: dict[uuid.UUID, tuple[Claimed, SendFailed]] = {}
        for item, error in results:
            if error is None:
                delivered.setdefault(item.tries, []).append(item.id)
            else:
                failed[item.id] = (item, error)
        now = self._clock.now()
        for tries, ids in sorted(delivered.items()):
            for row in await session.execute(
                    update(Delivery)
                    .where(any_of(Delivery.id, sorted(ids)), Delivery.attempts == tries,
                           Delivery.state == DeliveryState.pending)
                    .values(state=DeliveryState.delivered, delivered_at=now, last_error=None)
                    .returning(Delivery.id, Delivery.source_event_id, Delivery.event_type,
                               Delivery.incident_id, Delivery.recipient, Delivery.channel,
                               Delivery.correlation_id, Delivery.attempts)
                    .execution_options(synchronize_session=False)):
                self._outbox.add(session, NotificationDelivered(
                    **_facts(row, now), attempts=row.attempts),
                    correlation_id=row.correlation_id)
        if failed:
            for failing in await session.scalars(
                    select(Delivery).where(any_of(Delivery.id, failed))
                    .order_by(Delivery.id).with_for_update()):
                item, error = failed[failing.id]
                if failing.state != DeliveryState.pending or failing.attempts != item.tries:
                    continue  # redelivered or re-claimed meanwhile: that try owns the row
                self._apply_failure(session, failing, error, now)

    def _apply_failure(self, session: AsyncSession, row: Delivery, error: SendFailed,
                       now: datetime) -> None:
        row.last_error = str(error)
        if isinstance(error, RefusedSend) or row.attempts >= self._settings.max_attempts:
            row.state = DeliveryState.dead
            self._outbox.add(session, NotificationDead(
                **_facts(row, now), attempts=row.attempts, last_error=str(error)),
                correlation_id=row.correlation_id)
        else:
            row.next_attempt_at = now + timedelta(seconds=backoff_seconds(
                row.attempts, base=self._settings.backoff_base_seconds,
                cap=self._settings.backoff_cap_seconds))


def _facts(row: Any, now: datetime) -> dict[str, Any]:
    """What a delivery's outcome event says of it (`row`: a Delivery, or a row of its columns)."""
    return {"delivery_id": row.id, "source_event_id": row.source_event_id,
            "source_event_type": row.event_type, "incident_id": row.incident_id,
            "recipient": row.recipient, "channel": Channel(row.channel), "at": now}
