"""Dead-lettered events made visible: the incident they were about is marked, operators are
alerted, and the mark goes when a replay (`cyberclaims dlq replay`) applies the event.

A service keeps the marks in its own `dead_letters` table (one row per event given up on,
keyed by event id) and shows them on what it serves about the incident (payout on the claim,
triage on its jobs). The consumer calls `mark` in a transaction of its own once the message is
on the dead-letter topic, and `clear` in the transaction that finally applies a replayed event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import String, Text, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from shared.db import UnitOfWork, UTCDateTime, any_of
from shared.events import Envelope, EventDeadLettered
from shared.outbox import Outbox

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


class DeadLetterColumns:
    """Mixin for a service's `dead_letters` table: the events it gave up on, per incident."""

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    consumer: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(200))
    error: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeadLetterOut(BaseModel):
    """A mark on a claim or job: an event about it failed and waits for an operator."""

    event_id: uuid.UUID
    event_type: str
    consumer: str
    error: str
    at: AwareDatetime


Describe = Callable[[UnitOfWork, uuid.UUID], Awaitable[list[str]]]
"""What a service holds about an incident, named for the operators ("claim <id>", ...)."""


@dataclass(frozen=True)
class DeadLetterMarks:
    model: type[DeadLetterColumns]
    outbox: Outbox
    alert: type[EventDeadLettered]
    describe: Describe

    async def mark(self, uow: UnitOfWork, envelope: Envelope, consumer: str,
                   error: BaseException) -> bool:
        """Mark the incident `envelope` is about and stage the operators' alert; False (and
        nothing staged) when the event names no incident."""
        incident_id, org_id = _incident_of(envelope)
        if incident_id is None or org_id is None:
            return False
        now = self.outbox.clock.now()
        reason = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        await uow.session.merge(self.model(**{
            "event_id": envelope.id, "incident_id": incident_id, "consumer": consumer,
            "event_type": envelope.type, "error": reason, "at": now}))
        self.outbox.add(uow.session, self.alert(
            incident_id=incident_id, org_id=org_id, consumer=consumer,
            dead_event_id=envelope.id, dead_event_type=envelope.type, error=reason,
            marked=await self.describe(uow, incident_id), at=now), cause=envelope)
        return True

    async def clear(self, uow: UnitOfWork, event_ids: list[uuid.UUID]) -> None:
        """Remove the marks of events applied at last (in the transaction that applied them)."""
        await uow.session.execute(delete(self.model).where(any_of(self.model.event_id, event_ids)))

    async def of_incident(self, uow: UnitOfWork, incident_id: uuid.UUID
                          ) -> list[DeadLetterColumns]:
        return list((await uow.session.scalars(
            select(self.model).where(self.model.incident_id == incident_id)
            .order_by(self.model.at))).all())

    async def page(self, uow: UnitOfWork, *, limit: int, offset: int
                   ) -> tuple[list[DeadLetterColumns], int]:
        """The service's marks, oldest first (the operators' list), and how many there are."""
        total = await uow.session.scalar(select(func.count()).select_from(self.model))
        rows = await uow.session.scalars(
            select(self.model).order_by(self.model.at, self.model.event_id)
            .limit(limit).offset(offset))
        return list(rows.all()), total or 0

    async def one(self, uow: UnitOfWork, event_id: uuid.UUID) -> DeadLetterColumns | None:
        return await uow.session.get(self.model, event_id)

    async def every(self, uow: UnitOfWork) -> list[DeadLetterColumns]:
        return list((await uow.session.scalars(select(self.model))).all())


def _incident_of(envelope: Envelope) -> tuple[uuid.UUID | None, str | None]:
    """The incident and org an event names in its data, read leniently: the data may be the
    very thing that broke its handler."""
    try:
        incident_id = uuid.UUID(str(envelope.data.get("incident_id")))
    except ValueError:
        return None, None
    org_id = envelope.data.get("org_id")
    return incident_id, org_id if isinstance(org_id, str) and org_id else None


def create_table() -> None:
    """The `dead_letters` table as its services' Alembic revisions create it (all the same)."""
    op.create_table(
        "dead_letters",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_dead_letters")),
    )
    op.create_index(op.f("ix_dead_letters_incident_id"), "dead_letters", ["incident_id"])


def drop_table() -> None:
    op.drop_index(op.f("ix_dead_letters_incident_id"), table_name="dead_letters")
    op.drop_table("dead_letters")
