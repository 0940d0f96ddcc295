"""Database plumbing: engines created at start-up, column types, and the unit of work.

Money is stored as integer minor units (fen), exact and cheap to sum; timestamps are stored
in UTC and always come back time-zone aware.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple, Self, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Executable,
    Row,
    Table,
    any_,
    bindparam,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import QueryableAttribute
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
Model = TypeVar("Model")


def transaction_state(session: AsyncSession, kind: Callable[[], State]) -> State:
    """The transaction's one `kind()`, made on first use: what handlers applied together in one
    transaction (a consumer's fetch) have read, locked or staged, so that each row is read
    once per transaction instead of once per event. It ends with the transaction (the unit of
    work drops it at commit): locks it remembers are held until then."""
    state: State | None = session.info.get(kind)
    if state is None:
        state = session.info[kind] = kind()
    return state


def for_update_arg(for_update: bool) -> bool | None:
    """`Session.get`'s `with_for_update` for a lock or a plain read: None, not False, for a
    plain read, since only None lets `get` answer from the session's identity map instead of
    running a SELECT for a row the transaction already holds."""
    return True if for_update else None


def any_of(column: ColumnElement[Any] | QueryableAttribute[Any], values: Iterable[Any]
           ) -> ColumnElement[bool]:
    """`column = ANY(:values)`: one array parameter, so one statement text (and one prepared
    statement) serves any number of values, where `IN` would give each count its own."""
    return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))


class _Known(NamedTuple):
    """A row as the transaction read or added it (None: there is none), and whether the
    transaction holds its lock."""

    row: Any
    locked: bool


class TransactionRows:
    """Rows by primary key as this transaction has read, locked or added them, the rows it
    found missing too (`transaction_state`). A consumer's handlers, applied together, read
    each row at most once, and a batch's rows can be loaded up front in one statement per
    table (`load`): handlers that then ask for them run no SQL, so nothing is flushed before
    the commit and each table's new rows go in as one statement."""

    def __init__(self) -> None:
        self._known: dict[tuple[type[Any], Any], _Known] = {}

    @classmethod
    def of(cls, session: AsyncSession) -> TransactionRows:
        return transaction_state(session, cls)

    async def load(self, session: AsyncSession, model: type[Any], keys: Iterable[Any], *,
                   for_update: bool = False) -> None:
        """Read (and lock) the rows of `keys` not known yet, in one statement, in key order
        (concurrent transactions lock in the same order); a key without a row is known
        missing. `model` has a one-column primary key."""
        wanted = sorted({key for key in keys if self._needs(model, key, for_update)})
        if not wanted:
            return
        column = inspect(model).primary_key[0]
        query = select(model).where(any_of(column, wanted)).order_by(column)
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        found = {getattr(row, column.key): row for row in await session.scalars(query)}
        for key in wanted:
            self._known[(model, key)] = _Known(found.get(key), for_update)

    async def get(self, session: AsyncSession, model: type[Model], key: Any, *,
                  for_update: bool = False) -> Model | None:
        """The row (or None), read at most once, and again only to lock one read unlocked."""
        if self._needs(model, key, for_update):
            row = await session.get(model, key, with_for_update=for_update_arg(for_update),
                                    populate_existing=for_update)
            self._known[(model, key)] = _Known(row, for_update)
        known: Model | None = self._known[(model, key)].row
        return known

    def add(self, session: AsyncSession, row: Any, key: Any) -> None:
        """Stage a new row; `get` finds it before it is flushed."""
        session.add(row)
        self._known[(type(row), key)] = _Known(row, locked=True)

    def _needs(self, model: type[Any], key: Any, for_update: bool) -> bool:
        known = self._known.get((model, key))
        return known is None or (for_update and not known.locked)


_EVENTS_STAGED = "events_staged"
_APPENDED_ROWS = "appended_rows"


def append_row(session: AsyncSession, model: type[Any], **values: Any) -> None:
    """Stage a row the transaction only appends and never reads back (an outbox row, a history
    or timeline entry); the unit of work writes each table's rows at commit, in the order they
    were staged, with one executemany. Every row of a table must name the same columns.

    Added to the session instead, rows with a database-generated key would go in as one
    `INSERT ... VALUES (...), (...) RETURNING id` whose text differs with the number of rows,
    and each text is one more prepared statement cached on every pooled connection: memory
    that grew burst after burst. The executemany's text is the same for any number of rows.

    A query of the table in the same transaction sees the rows only after `write_appended`."""
    appended: dict[Table, list[dict[str, Any]]] = session.info.setdefault(_APPENDED_ROWS, {})
    appended.setdefault(model.__table__, []).append(values)


async def write_appended(session: AsyncSession) -> None:
    """Write the rows `append_row` staged so far, after the session's pending rows (which
    they may refer to): at commit, or for a reader of an appended table before it."""
    appended: dict[Table, list[dict[str, Any]]] = session.info.pop(_APPENDED_ROWS, {})
    if appended:
        await session.flush()
        connection = await session.connection()
        for table, rows in appended.items():
            await connection.execute(insert(table), rows)


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
        await write_appended(self.session)
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
