"""Idempotent event consumption: inbox, manual offset commits and dead letters.

For each message: the handler's effects and the inbox row (consumer, event id) commit in one
transaction, so an event delivered twice has one effect. The offset is committed only after
that commit (at most every `commit_interval_ms`, and whenever the consumer is idle or gives
up a partition: what a crash leaves uncommitted is delivered again and skipped). A handler
that fails `max_attempts` times, or a message that cannot be read, goes to the topic's
dead-letter topic with the error and its origin in headers, and the partition
keeps flowing. Losing the database (unreachable, restarting after a crash, out of connection
slots: `database_unavailable`; the service's own pool with no connection free) is not the
message's fault: that waits and retries, and so
do a deadlock and a serialization failure (another transaction's fault, not the message's).

Throughput: the messages of one fetch are applied in one transaction, in partition order (one
BEGIN, one inbox look-up and one COMMIT for up to `batch_size` events instead of one each). If
anything in that transaction fails, it is rolled back and the same messages are applied one
at a time, so a poison message only ever costs its own retries. A message whose `ce_type`
header names a type this consumer has no handler for is skipped without being decoded (a topic
carries many types; the consumer that handles it judges whether it is readable).

Dead letters are not silent: with `marks`, an event about an incident that is dead-lettered
marks the incident in the service's database and alerts operators (its own transaction, after
the message is on the dead-letter topic); the transaction that applies a replayed copy
(`REPLAYED_HEADER`, set by `cyberclaims dlq replay`) clears the mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import Tracer
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy import Insert, String, Table, bindparam, func, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from shared.clock import Clock
from shared.db import UnitOfWork, UnitOfWorkFactory, UTCDateTime
from shared.dead_letters import DeadLetterMarks
from shared.events import Envelope, Event, UnknownEventType
from shared.kafka import OutgoingMessage, Publisher, retry_until_connected
from shared.logs import correlation_scope
from shared.topics import topic_named
from shared.tracing import consuming

log = logging.getLogger(__name__)

EVENTS_HANDLED = Counter("cyberclaims_events_handled_total", "Events handled", ["consumer", "type"])
EVENTS_DUPLICATE = Counter("cyberclaims_events_duplicate_total", "Duplicates skipped", ["consumer"])
EVENTS_DEAD = Counter("cyberclaims_events_dead_lettered_total", "Dead-lettered", ["consumer"])

STOP_TIMEOUT_SECONDS = 10.0
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
"""The server shutting down, crashed, starting up (a crash's recovery included), or out of
connection slots: the database's fault, never the message's, however long it lasts."""


def database_unavailable(exc: DBAPIError) -> bool:
    """The database could not be reached or could not take the work (class 08: connection
    exceptions): retried until it can, never counted towards dead-lettering the message."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return (exc.connection_invalidated or isinstance(exc.orig, OSError)
            or sqlstate in UNAVAILABLE_SQLSTATES or sqlstate.startswith("08"))
REPLAYED_HEADER = "cc_replayed"
"""Set on a dead letter published back to its origin topic: applying it clears its mark."""

Handler = Callable[[UnitOfWork, Any, Envelope], Awaitable[None]]
"""`handler(uow, event, envelope)`: stage effects in `uow.session`; the consumer commits."""
BatchLoader = Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]
"""Reads, in the handlers' transaction and before they run, what a batch's handlers will
need (one statement per table, `shared.db.TransactionRows`), given the events to apply."""


def ids_in(envelopes: Iterable[Envelope], field: str) -> set[uuid.UUID]:
    """The ids the events name in `field` (`incident_id`, `claim_id`), for a `BatchLoader`. A
    malformed one is left out: its handler's validation dead-letters the event."""
    ids = set()
    for envelope in envelopes:
        value = envelope.data.get(field)
        if value is not None:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                ids.add(uuid.UUID(str(value)))
    return ids


class InboxColumns:
    """Mixin for a service's `inbox` table: the events it has already applied."""

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PoisonMessage(Exception):
    """A message no retry can fix (unreadable, or data that breaks its contract)."""


class EventConsumer:
    def __init__(
        self,
        *,
        name: str,
        group_id: str,
        bootstrap: str,
        handlers: Mapping[type[Event], Handler],
        uow: UnitOfWorkFactory,
        inbox_model: type[InboxColumns],
        dead_letters: Publisher,
        clock: Clock,
        max_attempts: int = 3,
        session_timeout_ms: int = 10_000,
        fetch_max_wait_ms: int = 20,
        retry_delay_seconds: float = 0.2,
        batch_size: int = 100,
        commit_interval_ms: int = 100,
        linger_ms: int = 0,
        tracer: Tracer | None = None,
        marks: DeadLetterMarks | None = None,
        load_batch: BatchLoader | None = None,
    ) -> None:
        """`tracer`: each handler run is a span of the trace the event was staged in (None:
        tracing off); `load_batch`: run before the handlers of each transaction; `linger_ms`:
        how long a fetch short of `batch_size` waits for more (`_linger`)."""
        self.name = name
        self._group_id = group_id
        self._bootstrap = bootstrap
        self._handlers = {event.event_type: handler for event, handler in handlers.items()}
        self.topics = sorted({event.topic.name for event in handlers})
        self._uow = uow
        self._inbox = inbox_model
        self._dead_letters = dead_letters
        self._clock = clock
        self._max_attempts = max_attempts
        self._session_timeout_ms = session_timeout_ms
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._retry_delay = retry_delay_seconds
        self._batch_size = batch_size
        self._commit_interval_ms = commit_interval_ms
        self._linger_seconds = linger_ms / 1000
        self._tracer = tracer
        self._claim_statement = self._build_claim_statement()
        self._marks = marks
        self._load_batch = load_batch
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=f"{self._group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=600_000,
            session_timeout_ms=self._session_timeout_ms,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            heartbeat_interval_ms=max(100, self._session_timeout_ms // 10),
        )
        offsets = _Offsets(consumer, self.name)
        consumer.subscribe(self.topics, listener=_CommitBeforeRevoke(offsets))
        try:
            # Inside the try: a service stopped while its consumer was starting still closes
            # it (left open, its connections kept the broker waiting at shutdown).
            await retry_until_connected(consumer.start, what=f"consumer {self.name}")
            self.ready.set()
            while True:
                batches = await consumer.getmany(
                    timeout_ms=self._commit_interval_ms if offsets.pending else 500,
                    max_records=self._batch_size)
                if batches and self._linger_seconds:
                    batches = await self._linger(consumer, batches)
                if batches:
                    await self.process_batch([r for records in batches.values() for r in records])
                    offsets.applied({partition: records[-1].offset + 1
                                     for partition, records in batches.items()})
                if offsets.pending and (not batches or offsets.age_ms() >= self._commit_interval_ms):
                    await offsets.commit()
        finally:
            # Leaving the group can hang if the broker is mid-rebalance; never block shutdown
            # on it (uncommitted offsets are re-delivered, and the inbox skips them).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(offsets.commit(), timeout=STOP_TIMEOUT_SECONDS)
            try:
                await asyncio.wait_for(consumer.stop(), timeout=STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("consumer %s did not leave its group in time", self.name)

    async def _linger(self, consumer: AIOKafkaConsumer,
                      batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
                      ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """A fetch short of a full batch waits `linger_ms` and takes what arrived meanwhile, so
        that under a moderate load one transaction (one BEGIN, inbox claim, batch load and
        COMMIT) applies several events instead of one each; a full fetch, as under a heavy
        load, goes at once. What a revoked partition's records do meanwhile is what they would
        do in `process_batch`: the new owner reads them again, and the inbox skips them."""
        fetched = sum(len(records) for records in batches.values())
        if fetched >= self._batch_size:
            return batches
        await asyncio.sleep(self._linger_seconds)
        more = await consumer.getmany(timeout_ms=0, max_records=self._batch_size - fetched)
        for partition, records in more.items():
            batches.setdefault(partition, []).extend(records)  # still in partition order
        return batches

    async def process_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply each message exactly once, or dead-letter it. Never raises for bad input.

        `records` keep each partition's order; they are applied in the order given."""
        wanted: list[tuple[ConsumerRecord[bytes, bytes], Envelope, Handler]] = []
        for record in records:
            declared = Envelope.type_in_kafka_headers(record.headers)
            if declared is not None and declared not in self._handlers:
                continue  # another consumer's event (a topic carries many types): not decoded
            try:
                envelope = Envelope.from_kafka(record.headers, record.value)
            except (ValueError, ValidationError) as exc:
                await self._dead_letter(record, exc, attempts=1)
                continue
            handler = self._handlers.get(envelope.type)
            if handler is not None:
                wanted.append((record, envelope, handler))
        if len(wanted) > 1 and await self._apply_together(wanted):
            return
        for record, envelope, handler in wanted:
            await self._process_one(record, envelope, handler)

    async def _apply_together(self, wanted: list[tuple[ConsumerRecord[bytes, bytes], Envelope,
                                                       Handler]]) -> bool:
        """All of `wanted` in one transaction; False (nothing applied) if any of it failed."""
        try:
            await self._apply([(envelope, handler) for _, envelope, handler in wanted],
                              _replayed(record for record, _, _ in wanted))
        except Exception:
            log.warning("%s: a batch of %d failed; applying them one at a time", self.name,
                        len(wanted), exc_info=True)
            return False
        return True

    async def _process_one(self, record: ConsumerRecord[bytes, bytes], envelope: Envelope,
                           handler: Handler) -> None:
        with correlation_scope(envelope.correlationid):
            attempts = 0
            while True:
                attempts += 1
                try:
                    await self._apply([(envelope, handler)], _replayed([record]))
                    return
                except (PoisonMessage, ValidationError, UnknownEventType) as exc:
                    await self._dead_letter(record, exc, attempts=attempts, envelope=envelope)
                    return
                except DBAPIError as exc:
                    if database_unavailable(exc):
                        log.warning("%s: database unavailable (%s), retrying %s", self.name,
                                    getattr(exc.orig, "sqlstate", None) or type(exc.orig).__name__,
                                    envelope.id)
                        attempts -= 1
                        await asyncio.sleep(1.0)
                        continue
                    if getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
                        log.info("%s: %s lost a lock conflict, retrying", self.name, envelope.id)
                        attempts -= 1
                        await asyncio.sleep(self._retry_delay)
                        continue
                    if attempts >= self._max_attempts:
                        await self._dead_letter(record, exc, attempts=attempts, envelope=envelope)
                        return
                except (OSError, PoolTimeout) as exc:  # no connection, or none free in the pool
                    log.warning("%s: database unavailable (%s), retrying %s", self.name,
                                type(exc).__name__, envelope.id)
                    attempts -= 1
                    await asyncio.sleep(1.0)
                except Exception as exc:
                    if attempts >= self._max_attempts:
                        await self._dead_letter(record, exc, attempts=attempts, envelope=envelope)
                        return
                    log.warning("handler %s failed on %s (try %d)", self.name, envelope.id, attempts,
                                exc_info=True)
                await asyncio.sleep(self._retry_delay * attempts)

    async def _apply(self, items: list[tuple[Envelope, Handler]], replayed: bool) -> None:
        """Apply `items` in order in one transaction, skipping events the inbox already holds
        (and clearing the dead-letter marks of those applied when some were `replayed`).
        Raises, with nothing applied, if any of them fails."""
        applied: list[Envelope] = []
        async with self._uow() as uow:
            new = await self._claim(uow, [envelope for envelope, _ in items])
            if self._load_batch is not None and new:
                await self._load_batch(uow, [envelope for envelope, _ in items
                                             if envelope.id in new])
            for envelope, handler in items:
                if envelope.id not in new:
                    continue  # applied before, or a second copy in this batch
                new.discard(envelope.id)
                with correlation_scope(envelope.correlationid), consuming(self._tracer, envelope):
                    await handler(uow, envelope.event(), envelope)
                applied.append(envelope)
            if replayed and self._marks is not None and applied:
                await self._marks.clear(uow, [envelope.id for envelope in applied])
            await uow.commit()
        EVENTS_DUPLICATE.labels(self.name).inc(len(items) - len(applied))
        for envelope in applied:
            EVENTS_HANDLED.labels(self.name, envelope.type).inc()

    def _build_claim_statement(self) -> Insert:
        """PostgreSQL's claim of a batch's inbox rows, built once: over `unnest` arrays, so one
        statement text serves any batch size (no re-prepare per size)."""
        inbox: Table = self._inbox.__table__  # type: ignore[attr-defined]
        rows = (func.unnest(bindparam("ids", type_=postgresql.ARRAY(Uuid())),
                            bindparam("types", type_=postgresql.ARRAY(String())))
                .table_valued("event_id", "event_type").render_derived())
        return (postgresql.insert(inbox).from_select(
            ["consumer", "event_id", "event_type", "received_at"],
            select(literal(self.name, String()), rows.c.event_id, rows.c.event_type,
                   bindparam("received_at", type_=UTCDateTime())))
                .on_conflict_do_nothing().returning(inbox.c.event_id))

    async def _claim(self, uow: UnitOfWork, envelopes: list[Envelope]) -> set[uuid.UUID]:
        """Insert the inbox rows first, in the handlers' transaction, and return the ids that
        were not there yet: one statement instead of a look-up and an insert. A concurrent
        copy of an event waits on its inbox row and then finds it taken: one effect."""
        now = self._clock.now()
        result = await uow.session.execute(self._claim_statement, {
            "ids": [envelope.id for envelope in envelopes],
            "types": [envelope.type for envelope in envelopes], "received_at": now})
        return set(result.scalars())

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], exc: BaseException, *,
                           attempts: int, envelope: Envelope | None = None) -> None:
        EVENTS_DEAD.labels(self.name).inc()
        log.error("dead-lettering %s[%d]@%d for %s: %r", record.topic, record.partition,
                  record.offset, self.name, exc)
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
        headers += [
            ("dlq_error", repr(exc)[:4000].encode()),
            ("dlq_error_type", type(exc).__name__.encode()),
            ("dlq_consumer", self.name.encode()),
            ("dlq_origin_topic", record.topic.encode()),
            ("dlq_origin_partition", str(record.partition).encode()),
            ("dlq_origin_offset", str(record.offset).encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_failed_at", self._clock.now().isoformat().encode()),
        ]
        target = topic_named(record.topic).dead_letter
        [future] = await self._dead_letters.send_many([OutgoingMessage(
            target, record.key or b"", record.value or b"", headers)])
        await future
        if envelope is not None and self._marks is not None:
            await self._mark(envelope, exc)

    async def _mark(self, envelope: Envelope, exc: BaseException) -> None:
        """Mark what the event was about and alert operators. A failure here is logged, never
        raised: the message is on the dead-letter topic already and the partition must flow."""
        assert self._marks is not None
        try:
            async with self._uow() as uow:
                if await self._marks.mark(uow, envelope, self.name, exc):
                    await uow.commit()
        except Exception:
            log.exception("%s: could not mark dead-lettered event %s", self.name, envelope.id)


class _Offsets:
    """Offsets of applied messages, committed to Kafka at most every `commit_interval_ms`
    (and as soon as the consumer is idle, before a rebalance and on the way out) instead of
    after every fetch: always after the database commit, never before it. What a crash leaves
    uncommitted is delivered again, and the inbox skips it."""

    def __init__(self, consumer: AIOKafkaConsumer, name: str) -> None:
        self._consumer = consumer
        self._name = name
        self.pending: dict[TopicPartition, int] = {}
        self._since = time.monotonic()

    def applied(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not self.pending:
            self._since = time.monotonic()
        self.pending.update(offsets)

    def age_ms(self) -> float:
        return (time.monotonic() - self._since) * 1000

    async def commit(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commit what is pending (of `partitions` only, if given)."""
        due = {tp: offset for tp, offset in self.pending.items()
               if partitions is None or tp in partitions}
        for tp in due:
            del self.pending[tp]
        # A partition given up meanwhile is another member's now: it re-reads what this one
        # did not commit (and skips it), and committing it would fail the whole request.
        assigned = self._consumer.assignment()
        due = {tp: offset for tp, offset in due.items() if tp in assigned}
        if not due:
            return
        try:
            await self._consumer.commit(due)
        except KafkaError as exc:  # e.g. the group moved on: the new owner re-reads, the inbox skips
            log.warning("consumer %s could not commit its offsets: %r", self._name, exc)


class _CommitBeforeRevoke(ConsumerRebalanceListener):
    """Before partitions move to another member, commit what was applied from them."""

    def __init__(self, offsets: _Offsets) -> None:
        self._offsets = offsets

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._offsets.commit(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        pass


def _replayed(records: Iterable[ConsumerRecord[bytes, bytes]]) -> bool:
    return any(key == REPLAYED_HEADER for record in records for key, _ in record.headers or ())
