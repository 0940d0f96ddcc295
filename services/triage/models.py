"""Triage's tables: its copy of policies, triaged incidents, vendors, jobs and their history,
outbox and inbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import BigInteger, Uuid

from shared.consumer import InboxColumns
from shared.db import NAMING_CONVENTION, MoneyColumn, UTCDateTime
from shared.dead_letters import DeadLetterColumns
from shared.outbox import OutboxColumns


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Outbox(OutboxColumns, Base):
    __tablename__ = "outbox"


class Inbox(InboxColumns, Base):
    __tablename__ = "inbox"


class DeadLetter(DeadLetterColumns, Base):
    """Events this service gave up on, per incident: shown on what it serves about it."""

    __tablename__ = "dead_letters"


class Policy(Base):
    """Triage's copy of a policy, from PolicyRegistered and PolicyUpdated (highest version wins)."""

    __tablename__ = "policies"

    policy_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(16))
    critical_infrastructure: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(Integer)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IncidentStatus:
    awaiting_policy = "awaiting_policy"
    triaged = "triaged"
    response_completed = "response_completed"


class Incident(Base):
    """A reported incident and its triage (null until its policy is known)."""

    __tablename__ = "incidents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    policy_number: Mapped[str] = mapped_column(String(64), index=True)
    correlation_id: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40))
    systems_down: Mapped[bool] = mapped_column(Boolean)
    records_exposed: Mapped[int | None] = mapped_column(BigInteger)
    affected_hosts: Mapped[int | None] = mapped_column(BigInteger)
    funds_transferred: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    discovered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(40))
    region: Mapped[str | None] = mapped_column(String(16))
    critical_infrastructure: Mapped[bool | None] = mapped_column(Boolean)
    priority: Mapped[str | None] = mapped_column(String(4))
    regulatory_grade: Mapped[str | None] = mapped_column(String(40))
    regulatory_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    triaged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AssessmentRequest(Base):
    """A risk assessment asked for by risk (`RiskAssessmentRequested`): the subject of an
    assessment job, as an incident is of a response job."""

    __tablename__ = "assessment_requests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    policy_number: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(16))
    correlation_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Vendor(Base):
    """A panel vendor. `open_jobs` counts its dispatched and accepted jobs, never > capacity."""

    __tablename__ = "vendors"

    vendor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    capabilities: Mapped[list[str]] = mapped_column(JSON)
    regions: Mapped[list[str]] = mapped_column(JSON)
    capacity: Mapped[int] = mapped_column(Integer)
    rating: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean)
    open_jobs: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobStatus:
    """The states a job rests in; declined and expired are passages (recorded in history) on
    the way to the next vendor or to unassigned."""

    unassigned = "unassigned"
    dispatched = "dispatched"
    accepted = "accepted"
    completed = "completed"
    cancelled = "cancelled"
    declined = "declined"
    expired = "expired"


class JobKind:
    response = "response"
    assessment = "assessment"


OPEN_STATES = (JobStatus.unassigned, JobStatus.dispatched, JobStatus.accepted)
HOLDS_A_SLOT = (JobStatus.dispatched, JobStatus.accepted)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_accept_by", "status", "accept_by"),
        Index("ix_jobs_vendor_status", "vendor_id", "status"),
    )
    # Nothing to read back after an insert: `kind`'s server default is for the jobs from
    # before the column, and new ones take the Python default. Reading it back would make a
    # fetch's new jobs one multi-row INSERT whose text varies with their number.
    __mapper_args__ = {"eager_defaults": False}

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default=JobKind.response,
                                      server_default=JobKind.response)
    incident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    assessment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("assessment_requests.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    job_type: Mapped[str] = mapped_column(String(40))
    priority: Mapped[str] = mapped_column(String(4))
    region: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20))
    vendor_id: Mapped[str | None] = mapped_column(String(64))
    accept_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobHistory(Base):
    """One row per transition of a job."""

    __tablename__ = "job_history"

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))
    vendor_id: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)


class JobRefusal(Base):
    """A vendor that declined a job or let it expire: never offered that job again."""

    __tablename__ = "job_refusals"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    vendor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
