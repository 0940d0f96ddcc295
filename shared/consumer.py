"""Idempotent event consumption: inbox, manual offset commits and dead letters.

For each message: the handler's effects and the inbox row (consumer, event id) commit in one
transaction, so an event delivered twice has one effect. The offset is committed only after
that commit. A handler that fails `max_attempts` times, or a message that cannot be read, goes
to the topic's dead-letter topic with the error and its origin in headers, and the partition
keeps flowing. Losing the database is not the message's fault: that waits and retries.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy import String, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from shared.clock import Clock
from shared.db import UnitOfWork, UnitOfWorkFactory, UTCDateTime
from shared.events import Envelope, Event, UnknownEventType
from shared.kafka import Publisher, retry_until_connected
from shared.logs import correlation_scope
from shared.topics import topic_named

log = logging.getLogger(__name__)

EVENTS_HANDLED = Counter("cyberclaims_events_handled_total", "Events handled", ["consumer", "type"])
EVENTS_DUPLICATE = Counter("cyberclaims_events_duplicate_total", "Duplicates skipped", ["consumer"])
EVENTS_DEAD = Counter("cyberclaims_events_dead_lettered_total", "Dead-lettered", ["consumer"])

STOP_TIMEOUT_SECONDS = 10.0

Handler = Callable[[UnitOfWork, Any, Envelope], Awaitable[None]]
"""`handler(uow, event, envelope)`: stage effects in `uow.session`; the consumer commits."""


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
    ) -> None:
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
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
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
        await retry_until_connected(consumer.start, what=f"consumer {self.name}")
        self.ready.set()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for partition, records in batches.items():
                    for record in records:
                        await self.process(record)
                    await consumer.commit({partition: records[-1].offset + 1})
        finally:
            # Leaving the group can hang if the broker is mid-rebalance; never block shutdown
            # on it (uncommitted offsets are re-delivered, and the inbox skips them).
            try:
                await asyncio.wait_for(consumer.stop(), timeout=STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("consumer %s did not leave its group in time", self.name)

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Apply one message exactly once, or dead-letter it. Never raises for bad input."""
        try:
            envelope = Envelope.from_kafka(record.headers, record.value)
        except (ValueError, ValidationError) as exc:
            await self._dead_letter(record, exc, attempts=1)
            return
        handler = self._handlers.get(envelope.type)
        if handler is None:
            return  # a topic carries many event types; this consumer wants only some
        with correlation_scope(envelope.correlationid):
            attempts = 0
            while True:
                attempts += 1
                try:
                    await self._apply(handler, envelope)
                    return
                except (PoisonMessage, ValidationError, UnknownEventType) as exc:
                    await self._dead_letter(record, exc, attempts=attempts)
                    return
                except DBAPIError as exc:
                    if exc.connection_invalidated or isinstance(exc.orig, OSError):
                        log.warning("database unreachable, retrying %s", envelope.id)
                        attempts -= 1
                        await asyncio.sleep(1.0)
                        continue
                    if attempts >= self._max_attempts:
                        await self._dead_letter(record, exc, attempts=attempts)
                        return
                except OSError:
                    attempts -= 1
                    await asyncio.sleep(1.0)
                except Exception as exc:
                    if attempts >= self._max_attempts:
                        await self._dead_letter(record, exc, attempts=attempts)
                        return
                    log.warning("handler %s failed on %s (try %d)", self.name, envelope.id, attempts,
                                exc_info=True)
                await asyncio.sleep(self._retry_delay * attempts)

    async def _apply(self, handler: Handler, envelope: Envelope) -> None:
        event = envelope.event()
        async with self._uow() as uow:
            inbox = self._inbox
            seen = await uow.session.scalar(
                select(inbox.event_id).where(inbox.consumer == self.name,
                                             inbox.event_id == envelope.id)
            )
            if seen is not None:
                EVENTS_DUPLICATE.labels(self.name).inc()
                return
            row = inbox()
            row.consumer = self.name
            row.event_id = envelope.id
            row.event_type = envelope.type
            row.received_at = self._clock.now()
            uow.session.add(row)
            await handler(uow, event, envelope)
            try:
                await uow.commit()
            except IntegrityError:
                # A concurrent delivery of the same event won the inbox row: one effect.
                if await self._already_applied(envelope.id):
                    EVENTS_DUPLICATE.labels(self.name).inc()
                    return
                raise
        EVENTS_HANDLED.labels(self.name, envelope.type).inc()

    async def _already_applied(self, event_id: uuid.UUID) -> bool:
        async with self._uow() as uow:
            inbox = self._inbox
            found = await uow.session.scalar(
                select(inbox.event_id).where(inbox.consumer == self.name, inbox.event_id == event_id)
            )
            return found is not None

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], exc: BaseException, *,
                           attempts: int) -> None:
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
        future = await self._dead_letters.send(target, record.value or b"", key=record.key or b"",
                                               headers=headers)
        await future
