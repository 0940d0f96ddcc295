"""Transactional outbox: events are rows written in the business transaction, and a relay
publishes them to Kafka.

The relay publishes pending rows in id order, which keeps per-key order; a row that fails
holds back every later row of its key until it is sent (`attempts` counts the tries of each
row, so a stuck row shows how often it failed). Rows stay `pending` until Kafka
acknowledged them, so rows left by a crash are simply published on the next pass
(at-least-once; consumers de-duplicate by event id). An advisory lock lets one
replica relay at a time, so two replicas never interleave one key.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    Row,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    delete,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.types import JSON, Uuid

from shared.clock import Clock
from shared.db import UTCDateTime, append_row, note_events_staged
from shared.events import Envelope, Event, kafka_headers, kafka_value
from shared.kafka import OutgoingMessage, Publisher
from shared.logs import correlation_id as ambient_correlation_id
from shared.polling import PollingLoop
from shared.tracing import current_context

log = logging.getLogger(__name__)

OUTBOX_PUBLISHED = Counter("cyberclaims_outbox_published_total", "Events published", ["service"])
OUTBOX_FAILURES = Counter("cyberclaims_outbox_failures_total", "Failed publish tries", ["service"])
OUTBOX_PENDING = Gauge("cyberclaims_outbox_pending",
                       "Rows the relay has not published though due: held back by a failure "
                       "(until their retry), or left by its last pass", ["service"])


class OutboxState(StrEnum):
    pending = "pending"
    sent = "sent"


class OutboxColumns:
    """Mixin for a service's `outbox` table (each service declares it on its own metadata)."""

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=True
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
        append_row(session, self.model, **values)
        note_events_staged(session)
        return envelope

    def stage(self, event: Event, *, cause: Envelope | None = None,
              correlation_id: str | None = None) -> tuple[Envelope, dict[str, Any]]:
        """The envelope of `event` and the column values of its outbox row, for a caller that
        writes the row with its own statement (in the same transaction as its state change).

        Its correlation id is the cause's, else `correlation_id`, else the one of the request
        being served (X-Correlation-Id), so a report can be traced through every service; its
        trace context is the current span's (shared/tracing.py), stored so the relay sends it."""
        now = self.clock.now()
        if cause is not None:
            correlation_id = cause.correlationid
        elif correlation_id is None:
            correlation_id = ambient_correlation_id.get()
        trace = current_context()
        envelope = Envelope.wrap(event, source=self.source, time=now, correlation_id=correlation_id,
                                 causation_id=str(cause.id) if cause is not None else None,
                                 traceparent=trace.traceparent, tracestate=trace.tracestate)
        return envelope, {
            "event_id": envelope.id, "event_type": envelope.type, "topic": event.topic.name,
            "partition_key": event.partition_key(), "envelope": envelope.model_dump(mode="json"),
            "state": OutboxState.pending, "attempts": 0, "next_attempt_at": now, "created_at": now,
        }


class OutboxRelay:
    """Publishes pending outbox rows; woken right after a commit, and polls as a safety net.

    A pass is two statements in autocommit, not a transaction: one takes the relay's lock and
    reads the due rows, one marks what Kafka acknowledged and then releases the lock. On
    PostgreSQL the lock is a session advisory lock held for the pass, so replicas take turns
    and a key's rows reach Kafka in order. A pass that fails in any way drops its connection,
    which releases the lock with it (a pooled connection must never keep it). A replica that
    takes the lock in the instant between another's unlock and that statement's commit can
    publish the same rows again: a duplicate, which consumers skip, never a reordering (every
    row the first one sent was acknowledged before it unlocked).
    """

    def __init__(
        self,
        engine: AsyncEngine,
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
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._table: Table = model.__table__  # type: ignore[attr-defined]
        self._publisher = publisher
        self._service = service
        self._clock = clock
        self._batch_size = batch_size
        self._max_backoff = max_backoff_seconds
        self._keep_sent_for = keep_sent_for
        self._lock_key = literal(zlib.crc32(f"outbox:{service}".encode()), BigInteger())
        self._read_due = self._due_rows_statement()
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

        Each stored envelope is published as it is (it was validated when it was written)."""
        async with self._engine.connect() as connection:
            try:
                held, held_back, rows = await self._lock_and_read_due(connection)
                if not held:
                    return 0
                sent = await self._publish(connection, rows)
                await self._mark_sent_and_unlock(connection, sent)
            except BaseException:
                # Whether the lock is still held is unknown: closing the session releases it.
                await connection.invalidate()
                raise
        OUTBOX_PUBLISHED.labels(self._service).inc(len(sent))
        OUTBOX_PENDING.labels(self._service).set(held_back + len(rows) - len(sent))
        return len(sent)

    def _due_rows_statement(self) -> Select[Any]:
        """The due rows in id order (at `now`), built once; only while this relay holds the
        lock, taken in the same statement. A row waits while an earlier row of its
        key is held back, so a key's rows stay in order even when one was written after its
        key's failure."""
        table = self._table
        now = bindparam("now", type_=UTCDateTime())
        earlier = table.alias("earlier")
        held_back_before = (select(earlier.c.id)
                            .where(earlier.c.state == OutboxState.pending,
                                   earlier.c.partition_key == table.c.partition_key,
                                   earlier.c.id < table.c.id, earlier.c.next_attempt_at > now))
        due = (select(table.c.id, table.c.event_id, table.c.topic, table.c.partition_key,
                      table.c.envelope, table.c.attempts)
               .where(table.c.state == OutboxState.pending, table.c.next_attempt_at <= now,
                      ~held_back_before.exists())
               .order_by(table.c.id)
               .limit(self._batch_size))
        # The rows of keys waiting for a retry are not read, but counted (an index range that is
        # mostly empty): the gauge stays above 0 while any key is held back, not only in the
        # pass that retries it.
        waiting_keys = select(table.c.partition_key).where(
            table.c.state == OutboxState.pending, table.c.next_attempt_at > now)
        held_back = (select(func.count()).select_from(table)
                     .where(table.c.state == OutboxState.pending,
                            table.c.partition_key.in_(waiting_keys))
                     .scalar_subquery().label("held_back"))
        lock = select(func.pg_try_advisory_lock(self._lock_key).label("held")).cte("relay_lock")
        due_if_held = due.where(lock.c.held).lateral("due")
        return (select(lock.c.held, held_back, *due_if_held.c)
                .select_from(lock.outerjoin(due_if_held, true()))
                .order_by(due_if_held.c.id))

    async def _lock_and_read_due(self, connection: AsyncConnection
                                 ) -> tuple[bool, int, Sequence[Row[*tuple[Any, ...]]]]:
        """Whether this relay holds the lock, how many pending rows wait for their retry, and
        if it holds the lock the due rows in id order."""
        rows = (await connection.execute(self._read_due, {"now": self._clock.now()})).all()
        return (bool(rows[0].held), int(rows[0].held_back),
                [row for row in rows if row.id is not None])

    async def _publish(self, connection: AsyncConnection, rows: Sequence[Row[*tuple[Any, ...]]]
                       ) -> list[int]:
        """Send every row (one record batch per partition), then wait for the
        acknowledgements. A row that fails holds back its key: no later row of that key is
        marked sent in this pass (a later row on another topic, which Kafka does not order
        against it, may have gone out: it goes again after the failed one, and consumers skip
        the copy), nor sent before it on a later pass."""
        held_back: set[str] = set()
        futures = await self._publisher.send_many([OutgoingMessage(
            row.topic, row.partition_key.encode(), kafka_value(row.envelope["data"]),
            kafka_headers(row.envelope)) for row in rows])
        sent: list[int] = []
        for row, future in zip(rows, futures, strict=True):
            try:
                await future
            except Exception as exc:
                if row.partition_key not in held_back:
                    held_back.add(row.partition_key)
                    await self._hold_back_key(connection, row, exc)
                continue
            if row.partition_key not in held_back:  # else it goes again after the failed row
                sent.append(row.id)
        return sent

    async def _mark_sent_and_unlock(self, connection: AsyncConnection, sent: list[int]) -> None:
        """One statement: what was sent is marked (all of it at once) and the lock released."""
        table = self._table
        mark = (update(table)
                .values(state=OutboxState.sent, sent_at=self._clock.now(),
                        attempts=table.c.attempts + 1))
        unlock = select(func.pg_advisory_unlock(self._lock_key))
        if sent:  # the unlock reads the UPDATE's result, so it runs once every row is marked
            ids = bindparam("sent", sent, type_=postgresql.ARRAY(BigInteger()))
            marked = mark.where(table.c.id == any_(ids)).returning(table.c.id).cte("marked")
            unlock = unlock.select_from(select(func.count()).select_from(marked).subquery())
        await connection.execute(unlock)

    async def _hold_back_key(self, connection: AsyncConnection, row: Row[*tuple[Any, ...]],
                             exc: BaseException) -> None:
        OUTBOX_FAILURES.labels(self._service).inc()
        attempts = row.attempts + 1
        backoff = min(self._max_backoff, 0.5 * 2 ** min(attempts, 10))
        log.warning("outbox publish of %s failed (try %d): %r", row.event_id, attempts, exc)
        table = self._table
        await connection.execute(update(table).where(table.c.id == row.id)
                                 .values(attempts=attempts, last_error=repr(exc)[:2000]))
        await connection.execute(
            update(table)
            .where(table.c.state == OutboxState.pending, table.c.partition_key == row.partition_key)
            .values(next_attempt_at=self._clock.now() + timedelta(seconds=backoff))
        )

    async def purge_sent(self) -> None:
        cutoff = self._clock.now() - self._keep_sent_for
        async with self._engine.connect() as connection:
            await connection.execute(
                delete(self._table).where(self._table.c.state == OutboxState.sent,
                                          self._table.c.sent_at < cutoff)
            )
