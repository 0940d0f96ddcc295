"""Risk's API bodies. Unknown fields are rejected (422): a finding's CVSS score in particular is
never accepted from the client, only its vector."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BaseModel, Field

from shared.controls import Control
from shared.events import ExposureKind, RemediationSource, RiskTier
from shared.inputs import RequestBody

NO_NUL = r"^[^\x00]*$"
POLICY_NUMBER = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
PolicyNumber = Annotated[str, Field(min_length=1, max_length=64, pattern=POLICY_NUMBER)]
PolicyNumberPath = Annotated[str, Path(min_length=1, max_length=64, pattern=POLICY_NUMBER)]
ShortText = Annotated[str, Field(min_length=1, max_length=300, pattern=NO_NUL)]
Text = Annotated[str, Field(min_length=1, max_length=10_000, pattern=NO_NUL)]
CvssVector = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL,
                                  examples=["CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"])]


def _unique(controls: list[Control]) -> list[Control]:
    if len(set(controls)) != len(controls):
        raise ValueError("each control may be listed once")
    return controls


class FindingIn(RequestBody):
    title: ShortText
    control: Control = Field(description="The control the finding weakens.")
    cvss_vector: CvssVector = Field(description="CVSS v3.1 or v4.0 base vector; risk scores it.")
    open: bool = Field(default=True, description="false: found and already fixed")


class AssessmentReportIn(RequestBody):
    """The vendor's checklist: the controls verified as in place, and the findings."""

    controls_in_place: Annotated[list[Control], AfterValidator(_unique),
                                 Field(max_length=len(Control))]
    findings: list[FindingIn] = Field(default_factory=list, max_length=200)


class ExposureIn(RequestBody):
    policy_number: PolicyNumber
    kind: ExposureKind
    control: Control = Field(description="The control that would have prevented the exposure.")
    title: ShortText
    description: Text


class RemediationItemOut(BaseModel):
    id: uuid.UUID
    control: Control
    source: RemediationSource
    title: str
    detail: str | None
    cvss_score: float | None
    due_at: datetime
    done_at: datetime | None
    superseded_at: datetime | None = Field(
        description="when a later assessment no longer listed it (control in place, finding "
                    "gone): closed, like an item done")
    state: str = Field(description="open, done, overdue or superseded")


class AssessmentOut(BaseModel):
    id: uuid.UUID
    policy_number: str
    reason: str
    status: str
    vendor_id: str | None
    requested_at: datetime
    completed_at: datetime | None
    score: int | None
    tier: RiskTier | None
    premium_modifier_percent: int | None


class RiskOut(BaseModel):
    policy_number: str
    org_id: str
    industry: str
    region: str
    score: int | None
    tier: RiskTier | None
    premium_modifier_percent: int | None
    referred_to_underwriter: bool
    assessed_at: datetime | None
    assessments: list[AssessmentOut]
    items: list[RemediationItemOut]


class PortfolioSegment(BaseModel):
    industry: str
    region: str
    policies: int
    tiers: dict[str, int] = Field(description="policies per tier; `unassessed` for none yet")
    overdue_items: int
    policies_with_overdue: int


class PortfolioOut(BaseModel):
    segments: list[PortfolioSegment]
    policies: int
    overdue_items: int
