"""Triage's API bodies. Unknown fields are rejected (422), every amount is a decimal string."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
)

from shared.controls import AttackVector
from shared.dead_letters import DeadLetterOut
from shared.events import (
    VENDOR_VERIFIABLE_SECTIONS,
    Attribution,
    CompletionReport,
    JobType,
    Priority,
    RegulatoryGrade,
    Section,
)
from shared.inputs import Count, RequestBody, Timestamp
from shared.money import Money
from shared.problems import Unprocessable
from shared.regions import ServedRegion

VENDOR_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
VendorId = Annotated[str, Field(min_length=1, max_length=64, pattern=VENDOR_ID)]
ShortText = Annotated[str, Field(min_length=1, max_length=300)]
Text = Annotated[str, Field(min_length=1, max_length=10_000)]


# --- vendors -------------------------------------------------------------------------------------


class VendorBody(RequestBody):
    name: ShortText
    capabilities: Annotated[list[JobType], Field(min_length=1)]
    regions: Annotated[list[ServedRegion], Field(min_length=1, description='region codes, or "*" for all')]
    capacity: Annotated[int, Field(ge=0, le=10_000, description="most open jobs at once")]
    rating: Annotated[float, Field(ge=0, le=5)]
    active: bool = True

    @field_validator("capabilities", "regions")
    @classmethod
    def _no_repeats(cls, value: list[Any]) -> list[Any]:
        return list(dict.fromkeys(value))


class VendorIn(VendorBody):
    vendor_id: VendorId


class VendorOut(VendorIn):
    open_jobs: int


# --- jobs ----------------------------------------------------------------------------------------


class HistoryItem(BaseModel):
    at: AwareDatetime
    status: str
    vendor_id: str | None
    actor: str
    note: str | None


class JobOut(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="response (an incident's) or assessment (a policy's)")
    incident_id: uuid.UUID | None
    assessment_id: uuid.UUID | None
    job_type: JobType
    priority: Priority
    vendor_id: str | None
    status: str
    accept_by: AwareDatetime | None
    attempt: int
    created_at: AwareDatetime
    updated_at: AwareDatetime
    completed_at: AwareDatetime | None
    report: CompletionReport | None
    history: list[HistoryItem]
    dead_letters: list[DeadLetterOut]
    """Events about this job's incident that failed and were dead-lettered (operators and
    adjusters only): the job may be frozen until an operator replays them."""


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


JobStatusFilter = Literal["unassigned", "dispatched", "accepted", "completed", "cancelled"]


class DeclineIn(RequestBody):
    reason: ShortText


class AssignIn(RequestBody):
    vendor_id: VendorId


MAX_VERIFIED_LOSSES = 50
"""Items in one completion report: with each description bounded too, every job of an incident
together stays far below the broker's 1 MB message limit in `IncidentResponseCompleted` (which
carries them all, each with its vendor and job), which would otherwise hold the incident back
for good."""


class VerifiedLossIn(RequestBody):
    """The vendor's own invoice or a loss it verified; a section of the rulebook, amount >= 0."""

    section: Section
    amount: Money
    description: Annotated[str, Field(min_length=1, max_length=1_000)]


class CompletionReportIn(RequestBody):
    """A vendor's completion report (rulebook section 5)."""

    root_cause: Text
    attack_vector: AttackVector
    attack_vector_detail: ShortText | None = None
    attribution: Attribution
    contained_at: Timestamp
    outage_started_at: Timestamp | None = None
    outage_ended_at: Timestamp | None = Field(default=None, validate_default=True)
    records_confirmed: Count | None = None
    verified_losses: list[VerifiedLossIn] = Field(default_factory=list,
                                                  max_length=MAX_VERIFIED_LOSSES)

    @field_validator("outage_ended_at")
    @classmethod
    def _outage_is_a_span(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        started = info.data.get("outage_started_at")
        if "outage_started_at" in info.data and (value is None) != (started is None):
            raise ValueError("outage_started_at and outage_ended_at come together")
        if value is not None and started is not None and value < started:
            raise ValueError("outage_ended_at must not be before outage_started_at")
        return value

    def check_sections(self, job_type: JobType) -> None:
        """A vendor verifies only what its job covers (422 naming the item otherwise)."""
        allowed = VENDOR_VERIFIABLE_SECTIONS[job_type]
        for index, loss in enumerate(self.verified_losses):
            if loss.section not in allowed:
                raise Unprocessable(
                    f"a {job_type.value} job can verify only "
                    f"{', '.join(sorted(section.value for section in allowed))}, "
                    f"not {loss.section.value}", field=f"verified_losses.{index}.section")

    def contract(self) -> CompletionReport:
        return CompletionReport.model_validate(self.model_dump())


# --- incidents -----------------------------------------------------------------------------------


class IncidentTriageOut(BaseModel):
    incident_id: uuid.UUID
    policy_number: str
    status: str
    priority: Priority | None
    regulatory_grade: RegulatoryGrade | None
    regulatory_deadline: AwareDatetime | None
    triaged_at: AwareDatetime | None
    response_completed_at: AwareDatetime | None
    jobs: list[JobOut]
