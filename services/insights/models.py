"""Insights' tables: a read model of every topic (policies and their exposure by quarter,
incidents, claims and each claim's reserve and payment movements), its inbox, and an outbox
that stays empty (insights publishes nothing; the shared relay expects one).

Policies, incidents and claims carry their `source`: `live` rows come from the topics (a
rebuild deletes and replays them), `history` rows from an imported loss bordereau (source data
of insights' own, which a rebuild keeps; `HistoryImport` records each import)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import Uuid

from shared.consumer import InboxColumns
from shared.db import NAMING_CONVENTION, MoneyColumn, UTCDateTime
from shared.outbox import OutboxColumns


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Server defaults (`source`, `changed_in`) are for rows written by SQL alone (a rebuild,
    # a migration); the ORM's rows take Python defaults, so an insert reads nothing back and a
    # fetch's rows go in as one executemany, whose text is the same for any number of rows.
    __mapper_args__ = {"eager_defaults": False}


class Source:
    """Where a read-model row comes from."""

    live = "live"  # the event stream
    history = "history"  # an imported loss bordereau (POST /v1/insights/history)


def _source_column() -> Mapped[str]:
    return mapped_column(String(8), default=Source.live, server_default=Source.live)


class Outbox(OutboxColumns, Base):
    __tablename__ = "outbox"


class Inbox(InboxColumns, Base):
    __tablename__ = "inbox"


class PolicyRecord(Base):
    """The latest version of a policy: the rating dimensions of its exposure and claims."""

    __tablename__ = "policies"

    policy_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    industry: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    size_band: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    annual_premium: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(BigInteger)
    changed_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0",
                                            index=True)
    source: Mapped[str] = _source_column()


class Exposure(Base):
    """The seconds a policy is in force within one calendar quarter: exposure and earned
    premium group by quarter without date arithmetic at query time."""

    __tablename__ = "exposures"
    __table_args__ = (Index("ix_exposures_quarter", "quarter"),)

    policy_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    quarter: Mapped[str] = mapped_column(String(6), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    seconds: Mapped[int] = mapped_column(BigInteger)


class IncidentRecord(Base):
    """What the statistics need of an incident: its category and vector, and its milestones."""

    __tablename__ = "incidents"

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    policy_number: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(40))
    attack_vector: Mapped[str | None] = mapped_column(String(300))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    contained_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outage_seconds: Mapped[int | None] = mapped_column(BigInteger)
    changed_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0",
                                            index=True)
    source: Mapped[str] = _source_column()


class ClaimRecord(Base):
    """A claim's current position: the amount reserved for it and what has been paid. The
    reserve basis is the latest movement's in event time (`reserve_basis_at`), whatever the
    order the movements are applied in (a rebuild and the live consumer interleave)."""

    __tablename__ = "claims"
    __table_args__ = (Index("ix_claims_incident_id", "incident_id"),
                      Index("ix_claims_policy_number", "policy_number"))

    claim_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    org_id: Mapped[str] = mapped_column(String(128))
    policy_number: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reserve_basis: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    reserve_basis_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid: Mapped[Decimal] = mapped_column(MoneyColumn)
    first_paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    changed_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0",
                                            index=True)
    source: Mapped[str] = _source_column()


class ClaimMovement(Base):
    """One dated change of a claim (reserve set, payment, closed): the loss development
    triangles are valued from these at every month end."""

    __tablename__ = "claim_movements"
    __table_args__ = (Index("ix_claim_movements_claim_id", "claim_id"),)

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    claim_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(MoneyColumn)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReadModelVersion(Base):
    """One row, counted up by every transaction that changes the read model; each policy,
    incident and claim row it touches is stamped with the new version (`changed_in`), so the
    statistics' in-memory aggregates re-read only the rows changed since they last looked.
    A rebuild deletes rows, which no stamp shows: it counts `rebuilds` up, and the aggregates
    start again from the whole read model."""

    __tablename__ = "read_model_version"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    rebuilds: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class HistoryImport(Base):
    """One imported loss bordereau, by the id its sender chose: the same import sent again is
    answered from here (nothing is written twice); different rows under the same id are a
    conflict. `digest` is the SHA-256 of the canonical JSON of its rows."""

    __tablename__ = "history_imports"

    import_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    exposures: Mapped[int] = mapped_column(Integer)
    claims: Mapped[int] = mapped_column(Integer)
    movements: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    imported_by: Mapped[str] = mapped_column(String(128))


READ_MODEL = (PolicyRecord, Exposure, IncidentRecord, ClaimRecord, ClaimMovement, Inbox)
"""What a rebuild empties of the rows the topics built before it replays every topic from the
beginning; imported history and `history_imports` are kept."""
