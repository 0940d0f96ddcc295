"""Intake's tables: policies, incidents, their losses and timeline, outbox and inbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import BigInteger, Uuid

from shared.consumer import InboxColumns
from shared.db import NAMING_CONVENTION, MoneyColumn, UTCDateTime
from shared.outbox import OutboxColumns


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Outbox(OutboxColumns, Base):
    __tablename__ = "outbox"


class Inbox(InboxColumns, Base):
    __tablename__ = "inbox"


class Policy(Base):
    __tablename__ = "policies"

    policy_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), index=True)
    holder_name: Mapped[str] = mapped_column(String(300))
    industry: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(16))
    critical_infrastructure: Mapped[bool] = mapped_column(Boolean)
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    retroactive_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    aggregate_limit: Mapped[Decimal] = mapped_column(MoneyColumn)
    retention: Mapped[Decimal] = mapped_column(MoneyColumn)
    bi_waiting_period_hours: Mapped[int] = mapped_column(Integer)
    notice_period_hours: Mapped[int] = mapped_column(Integer)
    war_exclusion: Mapped[bool] = mapped_column(Boolean)
    sections: Mapped[dict[str, Any]] = mapped_column(JSON)
    annual_premium: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    employees: Mapped[int | None] = mapped_column(Integer)
    annual_revenue: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    contact_email: Mapped[str | None] = mapped_column(String(320))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key", name="uq_incidents_org_idempotency_key"),
        Index("ix_incidents_org_reported", "org_id", "reported_at"),
        # The safety net's query: the few incidents triage has not answered yet.
        Index("ix_incidents_untriaged", "reported_at", postgresql_where=text("status = 'reported'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    policy_number: Mapped[str] = mapped_column(ForeignKey("policies.policy_number"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    discovered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    contact: Mapped[dict[str, Any]] = mapped_column(JSON)
    systems_down: Mapped[bool] = mapped_column(Boolean)
    outage_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    affected_hosts: Mapped[int | None] = mapped_column(BigInteger)
    records_exposed: Mapped[int | None] = mapped_column(BigInteger)
    data_types: Mapped[list[str]] = mapped_column(JSON)
    ransom_demanded: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    funds_transferred: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    status: Mapped[str] = mapped_column(String(40))
    priority: Mapped[str | None] = mapped_column(String(4))
    regulatory_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    regulator_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    regulator_reference: Mapped[str | None] = mapped_column(String(200))


class Loss(Base):
    __tablename__ = "losses"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id"), index=True)
    section: Mapped[str] = mapped_column(String(40))
    amount: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    hourly_loss: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    description: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TimelineEntry(Base):
    __tablename__ = "timeline"

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=True
    )
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id"), index=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(String(80))
    summary: Mapped[str] = mapped_column(Text)
