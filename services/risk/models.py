"""Risk's tables: its copy of policies (with their current tier), assessments, remediation
items, outbox and inbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, MetaData, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import Uuid

from shared.consumer import InboxColumns
from shared.db import NAMING_CONVENTION, UTCDateTime
from shared.outbox import OutboxColumns


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Outbox(OutboxColumns, Base):
    __tablename__ = "outbox"


class Inbox(InboxColumns, Base):
    __tablename__ = "inbox"


class RiskProfile(Base):
    """A policy as risk knows it (from PolicyRegistered/PolicyUpdated, highest version wins),
    with the outcome of its last completed assessment and the vendor monitoring it."""

    __tablename__ = "risk_profiles"

    policy_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), index=True)
    industry: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)
    score: Mapped[int | None] = mapped_column(Integer)
    tier: Mapped[str | None] = mapped_column(String(1))
    premium_modifier_percent: Mapped[int | None] = mapped_column(Integer)
    referred_to_underwriter: Mapped[bool] = mapped_column(Boolean, default=False)
    assessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_assessment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    monitoring_vendor_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AssessmentStatus:
    requested = "requested"
    dispatched = "dispatched"
    accepted = "accepted"
    unassigned = "unassigned"
    cancelled = "cancelled"
    completed = "completed"


OPEN_ASSESSMENT = (AssessmentStatus.requested, AssessmentStatus.dispatched,
                   AssessmentStatus.accepted, AssessmentStatus.unassigned)


class Assessment(Base):
    __tablename__ = "assessments"
    __table_args__ = (Index("ix_assessments_policy_requested", "policy_number", "requested_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    policy_number: Mapped[str] = mapped_column(ForeignKey("risk_profiles.policy_number"))
    reason: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    vendor_id: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    score: Mapped[int | None] = mapped_column(Integer)
    tier: Mapped[str | None] = mapped_column(String(1))
    premium_modifier_percent: Mapped[int | None] = mapped_column(Integer)
    controls_in_place: Mapped[list[str] | None] = mapped_column(JSON)
    findings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class RemediationItemRow(Base):
    """One thing to fix by `due_at`. Its state is derived: done once confirmed, superseded once
    a later assessment no longer lists it, overdue while neither after `due_at`, open before.
    The reminder columns record what was sent."""

    __tablename__ = "remediation_items"
    __table_args__ = (
        Index("ix_remediation_items_open_due", "done_at", "due_at"),
        Index("ix_remediation_items_policy", "policy_number"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    policy_number: Mapped[str] = mapped_column(ForeignKey("risk_profiles.policy_number"))
    assessment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("assessments.id"))
    control: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(300))
    detail: Mapped[str | None] = mapped_column(Text)
    cvss_vector: Mapped[str | None] = mapped_column(String(200))
    cvss_score: Mapped[float | None] = mapped_column(Numeric(3, 1, asdecimal=False))
    reported_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by: Mapped[str | None] = mapped_column(String(200))
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    superseded_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The assessment that no longer listed the item."""
    due_soon_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overdue_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
