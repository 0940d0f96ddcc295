"""Transactional outbox: events are rows written in the business transaction, and a relay
publishes them to Kafka.

The relay publishes pending rows in id order, which keeps per-key order; a row that fails
holds back every later row of its key until it is sent (`attempts` counts the tries of each
row, so a stuck row shows how often it failed). Rows stay `pending` until Kafka
acknowledged them, so rows left by a crash are simply published on the next pass
(at-least-once; consumers de-duplicate by event id). On PostgreSQL an advisory lock lets one
replica relay at a time, so two replicas never interleave one key.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import zlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    Row,
    String,
    Text,
    delete,
    func,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.types import JSON, Uuid

from shared.clock import Clock
from shared.db import UTCDateTime, is_postgres
from shared.events import Envelope, Event, kafka_headers, kafka_value
from shared.kafka import Publisher
from shared.logs import correlation_id as ambient_correlation_id
from shared.polling import PollingLoop

log = logging.getLogger(__name__)

OUTBOX_PUBLISHED = Counter("cyberclaims_outbox_published_total", "Events published", ["service"])
OUTBOX_FAILURES = Counter("cyberclaims_outbox_failures_total", "Failed publish tries", ["service"])
OUTBOX_PENDING = Gauge("cyberclaims_outbox_pending", "Rows waiting to be published", ["service"])


class OutboxState(StrEnum):
    pending = "pending"
    sent = "sent"


class OutboxColumns:
    """Mixin for a service's `outbox` table (each service declares it on its own metadata)."""

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    event_type: Mapped[str] = mapped_column(String(200))
    topic: Mapped[str] = mapped_column(String(200))
    partition_key: Mapped[str] = mapped_column(String(200))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (Index("ix_outbox_state_due", "state", "next_attempt_at", "id"),)


class Outbox:
    """Writes events into the current transaction's outbox table."""

    def __init__(self, model: type[OutboxColumns], *, source: str, clock: Clock) -> None:
        self.model = model
        self.source = source
        self.clock = clock

    def add(self, session: AsyncSession, event: Event, *, cause: Envelope | None = None,
            correlation_id: str | None = None) -> Envelope:
        """Stage `event` in `session`; it is published only if the transaction commits."""
        envelope, values = self.stage(event, cause=cause, correlation_id=correlation_id)
        session.add(self.model(**values))
        return envelope

    def stage(self, event: Event, *, cause: Envelope | None = None,
              correlation_id: str | None = None) -> tuple[Envelope, dict[str, Any]]:
        """The envelope of `event` and the column values of its outbox row, for a caller that
        writes the row with its own statement (in the same transaction as its state change).

        Its correlation id is the cause's, else `correlation_id`, else the one of the request
        being served (X-Correlation-Id), so a report can be traced through every service."""
        now = self.clock.now()
        if cause is not None:
            correlation_id = cause.correlationid
        elif correlation_id is None:
            correlation_id = ambient_correlation_id.get()
        envelope = Envelope.wrap(event, source=self.source, time=now, correlation_id=correlation_id,
                                 causation_id=str(cause.id) if cause is not None else None)
        return envelope, {
            "event_id": envelope.id, "event_type": envelope.type, "topic": event.topic.name,
            "partition_key": event.partition_key(), "envelope": envelope.model_dump(mode="json"),
            "state": OutboxState.pending, "attempts": 0, "next_attempt_at": now, "created_at": now,
        }


class OutboxRelay:
    """Publishes pending outbox rows; woken right after a commit, and polls as a safety net."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        model: type[OutboxColumns],
        publisher: Publisher,
        *,
        service: str,
        clock: Clock,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        max_backoff_seconds: float = 60.0,
        keep_sent_for: timedelta = timedelta(days=7),
    ) -> None:
        self._sessions = sessions
        self._model = model
        self._publisher = publisher
        self._service = service
        self._clock = clock
        self._batch_size = batch_size
        self._max_backoff = max_backoff_seconds
        self._keep_sent_for = keep_sent_for
        self._lock_key = zlib.crc32(f"outbox:{service}".encode())
        self._last_purge = clock.now()
        self._loop = PollingLoop(f"{service} outbox relay", self._pass,
                                 interval_seconds=poll_seconds, again_at=batch_size)

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows (safe from any coroutine)."""
        self._loop.wake()

    async def run(self) -> None:
        await self._loop.run()

    async def _pass(self) -> int:
        published = await self.publish_pending()
        if self._clock.now() - self._last_purge > timedelta(hours=1):
            await self.purge_sent()
            self._last_purge = self._clock.now()
        return published

    async def publish_pending(self) -> int:
        """One pass: publish due rows in order; returns how many were sent.

        Reads plain columns and publishes each stored envelope as it is (it was validated when
        it was written), and on PostgreSQL takes the advisory lock in the same statement: the
        relay's cost per event is a small part of the business transaction that wrote it."""
        table = self._model.__table__  # type: ignore[attr-defined]
        async with self._sessions() as session, session.begin():
            now = self._clock.now()
            query = (
                select(table.c.id, table.c.event_id, table.c.topic, table.c.partition_key,
                       table.c.envelope, table.c.attempts)
                .where(table.c.state == OutboxState.pending, table.c.next_attempt_at <= now)
                .order_by(table.c.id)
                .limit(self._batch_size)
            )
            if is_postgres(session):  # no rows unless this replica holds the relay's lock
                lock = select(func.pg_try_advisory_xact_lock(self._lock_key).label("held")).cte()
                query = query.select_from(table.join(lock, true())).where(lock.c.held)
            rows = (await session.execute(query)).all()
            if not rows:
                OUTBOX_PENDING.labels(self._service).set(0)
                return 0
            deliveries = []
            for row in rows:
                try:
                    future = await self._publisher.send(
                        row.topic, kafka_value(row.envelope["data"]),
                        key=row.partition_key.encode(), headers=kafka_headers(row.envelope),
                    )
                except Exception as exc:  # buffer full or producer closed: retry the row later
                    future = _failed(exc)
                deliveries.append((row, future))
            held_back: set[str] = set()
            sent: list[int] = []
            for row, future in deliveries:
                if row.partition_key in held_back:
                    continue
                try:
                    await future
                except Exception as exc:
                    held_back.add(row.partition_key)
                    await self._hold_back_key(session, row, exc, now)
                    continue
                sent.append(row.id)
            if sent:  # one statement for the whole pass, not one per row
                await session.execute(
                    update(table).where(table.c.id.in_(sent))
                    .values(state=OutboxState.sent, sent_at=self._clock.now(),
                            attempts=table.c.attempts + 1)
                )
            OUTBOX_PUBLISHED.labels(self._service).inc(len(sent))
            return len(sent)

    async def _hold_back_key(self, session: AsyncSession, row: Row[*tuple[Any, ...]],
                             exc: BaseException, now: datetime) -> None:
        OUTBOX_FAILURES.labels(self._service).inc()
        attempts = row.attempts + 1
        backoff = min(self._max_backoff, 0.5 * 2 ** min(attempts, 10))
        log.warning("outbox publish of %s failed (try %d): %r", row.event_id, attempts, exc)
        table = self._model.__table__  # type: ignore[attr-defined]
        await session.execute(update(table).where(table.c.id == row.id)
                              .values(attempts=attempts, last_error=repr(exc)[:2000]))
        await session.execute(
            update(table)
            .where(table.c.state == OutboxState.pending, table.c.partition_key == row.partition_key)
            .values(next_attempt_at=now + timedelta(seconds=backoff))
        )

    async def purge_sent(self) -> None:
        cutoff = self._clock.now() - self._keep_sent_for
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(self._model).where(self._model.state == OutboxState.sent,
                                          self._model.sent_at < cutoff)
            )


def _failed(exc: BaseException) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future
