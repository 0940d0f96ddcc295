"""Payout's API bodies. Unknown fields are rejected (422), every amount is a decimal string."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from shared.auth import SUBJECT_MAX_LENGTH, Role
from shared.dead_letters import DeadLetterOut
from shared.events import (
    Attribution,
    CoverageQuestion,
    Finding,
    PolicyTerms,
    Section,
    SectionBreakdown,
    VerifiedOutage,
)
from shared.inputs import NUL_FREE, RequestBody
from shared.money import Money

Reason = Annotated[str, Field(min_length=1, max_length=2000)]


class VerifyLossIn(RequestBody):
    """Verify a loss item, optionally at a different (lower) amount than claimed."""

    amount: Money | None = None
    note: Reason


class RejectLossIn(RequestBody):
    reason: Reason


class OutageIn(RequestBody):
    """The adjuster's outage figure, used only when no vendor verified an outage."""

    outage_hours: Annotated[Decimal, Field(ge=0, le=100_000)]
    note: Reason

    @field_validator("outage_hours")
    @classmethod
    def _whole_minutes(cls, value: Decimal) -> Decimal:
        if (value * 60) % 1 != 0:
            raise ValueError("outage_hours must be a whole number of minutes (e.g. 10.25)")
        return value


class ApproveIn(RequestBody):
    """Approve the latest assessment; `amount` below payable needs a `reason`."""

    amount: Money | None = None
    reason: Reason | None = None


class DenyIn(RequestBody):
    reason: Reason


class LossOut(BaseModel):
    id: uuid.UUID
    source: str
    state: str
    section: Section
    amount: Money | None
    hourly_loss: Money | None
    verified_amount: Money | None
    description: str
    vendor_id: str | None
    submitted_at: AwareDatetime
    note: str | None
    decided_by: str | None
    decided_at: AwareDatetime | None


class ApprovalOut(BaseModel):
    adjuster: str
    amount: Money
    reason: str | None
    at: AwareDatetime


class PaymentOut(BaseModel):
    id: uuid.UUID
    amount: Money
    currency: str
    state: str
    attempts: int
    last_error: str | None
    provider_reference: str | None
    created_at: AwareDatetime
    completed_at: AwareDatetime | None


class PaymentItem(PaymentOut):
    """A payment in the operators' list, with the claim and incident it pays."""

    claim_id: uuid.UUID
    incident_id: uuid.UUID
    org_id: str
    next_attempt_at: AwareDatetime


class PaymentPage(BaseModel):
    items: list[PaymentItem]
    total: int
    limit: int
    offset: int


class OutageOut(BaseModel):
    minutes: int
    hours: Decimal
    source: str


class ClaimSummary(BaseModel):
    id: uuid.UUID
    incident_id: uuid.UUID
    policy_number: str
    org_id: str
    status: str
    payable: Money | None
    opened_at: AwareDatetime
    updated_at: AwareDatetime


class ClaimOut(ClaimSummary):
    sections: list[SectionBreakdown]
    coverage_questions: list[CoverageQuestion]
    approvals_required: int | None
    approvals: list[ApprovalOut]
    approved_amount: Money | None
    closed_remainder: Money | None
    """What an approval below payable left unpaid (closed, with `decision_reason`)."""
    decision_reason: str | None
    data_issue: str | None
    """Facts payout cannot assess (e.g. a timestamp out of range) for the adjuster to resolve."""
    remediation_note: str | None
    """Risk's news that arrived after the claim was decided and changes REMEDIATION_OVERDUE's
    answer: for the adjuster to review (a decided claim is never changed silently)."""
    decided_by: str | None
    assessment_id: uuid.UUID | None
    response_completed: bool
    outage: OutageOut | None
    losses: list[LossOut]
    payment: PaymentOut | None
    dead_letters: list[DeadLetterOut]
    """Events about this claim that failed and were dead-lettered: the claim is frozen until
    an operator fixes the cause and replays them."""


class ClaimPage(BaseModel):
    items: list[ClaimSummary]
    total: int
    limit: int
    offset: int


class AssessmentOut(BaseModel):
    """One assessment as stored: its inputs, its breakdown and the decision it led to."""

    id: uuid.UUID
    claim_id: uuid.UUID
    at: AwareDatetime
    requested_by: str
    inputs: dict[str, Any]
    sections: list[SectionBreakdown]
    coverage_questions: list[CoverageQuestion]
    payable: Money
    decision: str


class SignedInOut(BaseModel):
    """Who the console is signed in as, and what they may decide on."""

    sub: str
    role: Role
    authority_limit: Money | None
    two_approver_threshold: Money


class QueueItem(ClaimSummary):
    holder_name: str | None
    data_issue: str | None
    decided_at: AwareDatetime | None
    mine: bool
    """Approval queue: the caller can approve it now (within their authority, not yet approved
    by them)."""
    needs: list[Literal["verify_losses", "set_outage", "data_issue"]]
    """What an open claim waits for from an adjuster before it can be assessed."""


class QueuePage(BaseModel):
    items: list[QueueItem]
    total: int
    limit: int
    offset: int


class IncidentOut(BaseModel):
    """The incident as reported, with triage's grading once it has arrived."""

    category: str
    title: str | None
    description: str | None
    occurred_at: AwareDatetime
    discovered_at: AwareDatetime
    reported_at: AwareDatetime
    priority: str | None
    regulatory_grade: str | None
    regulatory_deadline: AwareDatetime | None
    triaged_at: AwareDatetime | None


class QuestionOut(BaseModel):
    code: CoverageQuestion
    explanation: str


class ClaimFileOut(BaseModel):
    """What an adjuster decides from beyond the claim: the policy, the incident, the vendors'
    findings and why each coverage question was raised. A part not received yet is null."""

    policy: PolicyTerms | None
    incident: IncidentOut | None
    attribution: Attribution | None
    findings: list[Finding]
    verified_outage: VerifiedOutage | None
    adjuster_outage_note: str | None
    coverage_questions: list[QuestionOut]


Subject = Annotated[str, Field(min_length=1, max_length=SUBJECT_MAX_LENGTH, pattern=NUL_FREE)]


class AdjusterIn(RequestBody):
    """An operator's entry for one adjuster: the most they may decide on, whether they may
    decide at all, and why the entry changes (kept in the audit)."""

    authority_limit: Money
    active: bool = True
    reason: Reason


class AdjusterOut(BaseModel):
    subject: str
    authority_limit: Money
    active: bool
    updated_by: str
    updated_at: AwareDatetime


class AdjusterPage(BaseModel):
    items: list[AdjusterOut]
    total: int
    limit: int
    offset: int


class AdjusterChangeOut(BaseModel):
    changed_by: str
    at: AwareDatetime
    old_authority_limit: Money | None
    new_authority_limit: Money
    old_active: bool | None
    new_active: bool
    reason: str


class AdjusterHistory(BaseModel):
    subject: str
    changes: list[AdjusterChangeOut]
