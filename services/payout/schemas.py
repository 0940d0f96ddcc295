"""Payout's API bodies. Unknown fields are rejected (422), every amount is a decimal string."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from shared.events import CoverageQuestion, Section, SectionBreakdown
from shared.inputs import RequestBody
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
    decided_by: str | None
    assessment_id: uuid.UUID | None
    response_completed: bool
    outage: OutageOut | None
    losses: list[LossOut]
    payment: PaymentOut | None


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
