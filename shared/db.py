"""Database plumbing: engines created at start-up, column types, and the unit of work.

Money is stored as integer minor units (fen), exact and cheap to sum; timestamps are stored
in UTC and always come back time-zone aware.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Self, TypeVar

from sqlalchemy import BigInteger, DateTime, Executable, Row
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from shared.jsoncodec import dumps_text, loads
from shared.money import CENT, round_money


class MoneyColumn(TypeDecorator[Decimal]):
    """A Decimal amount stored as a BIGINT count of cents."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(round_money(Decimal(value)) / CENT)

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(value) * CENT).quantize(CENT)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSON_CODEC: dict[str, Any] = {"json_serializer": dumps_text, "json_deserializer": loads}
"""How every engine reads and writes JSON columns (`shared.jsoncodec`)."""


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """One engine per process, built at start-up.

    Statement parameters are left out of errors (`hide_parameters`): a failed INSERT would
    otherwise log contacts, descriptions and webhook secrets, other tenants' among them.

    The PostgreSQL pool has a fixed size: overflow connections are closed as soon as they are
    returned, so under a burst each would be a new server process started and stopped again."""
    # No pre-ping (a round trip per checkout): stale connections are recycled instead, and a
    # request that meets a dropped connection fails once and is retried by its client.
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_recycle=1800,
                               hide_parameters=True, **JSON_CODEC)


State = TypeVar("State")


def transaction_state(session: AsyncSession, kind: Callable[[], State]) -> State:
    """The transaction's one `kind()`, made on first use: what handlers applied together in one
    transaction (a consumer's fetch) have read, locked or staged, so that each row is read
    once per transaction instead of once per event. It ends with the transaction (the unit of
    work drops it at commit): locks it remembers are held until then."""
    state: State | None = session.info.get(kind)
    if state is None:
        state = session.info[kind] = kind()
    return state


_EVENTS_STAGED = "events_staged"


def note_events_staged(session: AsyncSession) -> None:
    """Record that this transaction wrote outbox rows (the outbox does, for every event)."""
    session.info[_EVENTS_STAGED] = True


class UnitOfWork:
    """Owns one transaction. The only place that commits.

    `on_events_committed` (the outbox relay's wake-up) runs once a transaction that staged
    events (`note_events_staged`) is durable. Never for a rolled-back unit of work, nor for one
    that staged none: a consumer's fetch that only changed state would send the relay on an
    empty pass, two round trips to the database for nothing.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 on_events_committed: Callable[[], None] | None = None) -> None:
        self._sessions = sessions
        self._on_events_committed = on_events_committed
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work not started")
        return self._session

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._session is not None
        try:
            # Loaded objects outlive the unit of work (views render them after it ends), so
            # detach them rather than let the rollback expire them.
            self._session.expunge_all()
            await self._session.rollback()
        finally:
            await self._session.close()
            self._session = None

    async def commit(self) -> None:
        staged_events = self.session.info.get(_EVENTS_STAGED, False)
        await self.session.commit()
        self.session.info.clear()  # the transaction's state (`transaction_state`) ends with it
        if staged_events and self._on_events_committed is not None:
            self._on_events_committed()


class UnitOfWorkFactory:
    """Builds units of work on the process's session factory."""

    def __init__(self, engine: AsyncEngine,
                 on_events_committed: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.on_events_committed = on_events_committed
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.on_events_committed)

    async def commit_statement(self, statement: Executable, parameters: Mapping[str, Any], *,
                               stages_events: bool) -> Sequence[Row[Any]]:
        """Run one statement as a whole transaction and return its rows; if it wrote outbox
        rows (`stages_events`), the relay is woken as after a unit of work that staged events.

        PostgreSQL applies a single statement, data-modifying CTEs included, all or nothing,
        so a change that fits in one statement needs no BEGIN and COMMIT round trips: the
        hot path of a service (intake's report) is one round trip instead of three or more.
        """
        async with self._autocommit.connect() as connection:
            rows = (await connection.execute(statement, parameters)).all()
        if stages_events and self.on_events_committed is not None:
            self.on_events_committed()
        return rows


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Every service's metadata uses these names, so migrations name constraints and indexes
the same on every database."""
