"""Payout's tables: its copy of policies and incidents, claims with their loss items, the
assessments (audit), approvals, the per-policy ledger, payments, outbox and inbox."""

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
    """Payout's copy of a policy (from policy events); its row is the lock that serialises
    every decision drawing on the policy's sublimits and aggregate limit."""

    __tablename__ = "policies"

    policy_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Incident(Base):
    """What the coverage questions need from a first notice of loss."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_policy_category", "policy_number", "category"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    policy_number: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    discovered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    title: Mapped[str | None] = mapped_column(Text)
    """What was reported, for the adjuster (None on incidents stored before it was kept)."""
    description: Mapped[str | None] = mapped_column(Text)


class IncidentTriage(Base):
    """Triage's grading of an incident, for the adjuster. Its own row: the triage event and the
    report travel on different topics and arrive in either order."""

    __tablename__ = "incident_triage"

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    priority: Mapped[str] = mapped_column(String(8))
    regulatory_grade: Mapped[str] = mapped_column(String(40))
    regulatory_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    triaged_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RemediationItem(Base):
    """What risk told the policyholder to fix, per control, with its due and done times
    (from `cyberclaims.risk`): REMEDIATION_OVERDUE reads it as of an incident's occurred_at."""

    __tablename__ = "remediation_items"

    item_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    policy_number: Mapped[str] = mapped_column(String(64), index=True)
    control: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When a later assessment no longer listed it: closed from then on, like done."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Claim(Base):
    """One claim per incident. Its row is locked for every decision on it."""

    __tablename__ = "claims"
    __table_args__ = (Index("ix_claims_status_opened", "status", "opened_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    policy_number: Mapped[str] = mapped_column(String(64), index=True)
    org_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(40))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    response_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attribution: Mapped[str | None] = mapped_column(String(20))
    outage_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outage_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    adjuster_outage_minutes: Mapped[int | None] = mapped_column(Integer)
    adjuster_outage_note: Mapped[str | None] = mapped_column(Text)
    latest_assessment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    attack_vectors: Mapped[list[str] | None] = mapped_column(JSON)
    """The vendors' attack vectors (for REMEDIATION_OVERDUE), from the response's findings."""
    payable: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    approved_amount: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(Text)
    """Who decided: `system`, or the approvers, comma-separated (two above the threshold)."""
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    data_issue: Mapped[str | None] = mapped_column(Text)
    """Why the facts received cannot be assessed (e.g. a timestamp out of range): shown to the
    adjuster, who resolves it (for an outage, by setting the outage hours)."""
    findings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """The vendors' findings from the completed response (root cause, attack vector, ...)."""
    remediation_note: Mapped[str | None] = mapped_column(Text)
    """What risk reported after the claim was decided that changes REMEDIATION_OVERDUE's
    answer: shown to the adjuster, never applied silently to a decided claim."""


class LossItem(Base):
    __tablename__ = "loss_items"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    claim_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("claims.id"), index=True)
    source: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20))
    section: Mapped[str] = mapped_column(String(40))
    amount: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    hourly_loss: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    verified_amount: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    verified_within: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    """The authority limit the item's verified worth was accepted within (its verifier's, or
    the limit of whoever set the outage it is worth): a per-hour item's worth follows the
    outage, and an outage that makes it worth more sends it back for verification."""
    description: Mapped[str] = mapped_column(Text)
    vendor_id: Mapped[str | None] = mapped_column(String(128))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Assessment(Base):
    """The audit record of one assessment: its inputs, its result and who asked for it."""

    __tablename__ = "assessments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    claim_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("claims.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    requested_by: Mapped[str] = mapped_column(String(200))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    sections: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    coverage_questions: Mapped[list[str]] = mapped_column(JSON)
    payable: Mapped[Decimal] = mapped_column(MoneyColumn)
    decision: Mapped[str] = mapped_column(String(40))


class Approval(Base):
    """An adjuster's approval of one assessment (two distinct adjusters above the threshold)."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("assessment_id", "adjuster",
                                       name="uq_approvals_assessment_adjuster"),)

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=True
    )
    claim_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("claims.id"), index=True)
    assessment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("assessments.id"))
    adjuster: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(MoneyColumn)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Commitment(Base):
    """The per-policy ledger: what an approved claim draws from each section. Later claims of
    the policy see it as paid (rulebook section 8, steps 3 and 4)."""

    __tablename__ = "commitments"

    claim_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("claims.id"), primary_key=True)
    section: Mapped[str] = mapped_column(String(40), primary_key=True)
    policy_number: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal] = mapped_column(MoneyColumn)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Payment(Base):
    """One payment per claim; its id is the idempotency key sent to the provider."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_state_due", "state", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    claim_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("claims.id"), unique=True)
    amount: Mapped[Decimal] = mapped_column(MoneyColumn)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_reference: Mapped[str | None] = mapped_column(Text)  # the provider's, any length
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Adjuster(Base):
    """The registry of adjusters (kept by operators): what each may decide on. The one source
    of an adjuster's authority; a token only says who the caller is."""

    __tablename__ = "adjusters"

    subject: Mapped[str] = mapped_column(String(256), primary_key=True)
    """The token's `sub`."""
    authority_limit: Mapped[Decimal] = mapped_column(MoneyColumn)
    active: Mapped[bool] = mapped_column(Boolean)
    updated_by: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AdjusterChange(Base):
    """Every change to the registry: who, when, before and after, and why."""

    __tablename__ = "adjuster_changes"

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=True
    )
    subject: Mapped[str] = mapped_column(String(256), index=True)
    changed_by: Mapped[str] = mapped_column(String(256))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    old_authority_limit: Mapped[Decimal | None] = mapped_column(MoneyColumn)
    new_authority_limit: Mapped[Decimal] = mapped_column(MoneyColumn)
    old_active: Mapped[bool | None] = mapped_column(Boolean)
    new_active: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
