"""Intake's API bodies. Unknown fields are rejected (422), every amount is a decimal string."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.networks import validate_email

from shared.events import Category, Contact, DataType, Industry, Section, SectionTerms
from shared.inputs import Count, RequestBody, Timestamp
from shared.money import Money
from shared.regions import Region

POLICY_NUMBER = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
PolicyNumber = Annotated[str, Field(min_length=1, max_length=64, pattern=POLICY_NUMBER)]
Text = Annotated[str, Field(min_length=1, max_length=10_000)]
ShortText = Annotated[str, Field(min_length=1, max_length=300)]


@functools.lru_cache(maxsize=4096)
def _normalised_email(value: str) -> str:
    """pydantic's EmailStr check, memoised: it costs about 70 µs a call on the busiest path,
    and an insured reports with the same few contact addresses again and again."""
    return validate_email(value)[1]


Email = Annotated[str, AfterValidator(_normalised_email),
                  WithJsonSchema({"type": "string", "format": "email"})]


class PolicyBody(RequestBody):
    org_id: Annotated[str, Field(min_length=1, max_length=128)]
    holder_name: ShortText
    industry: Industry
    region: Region
    critical_infrastructure: bool = False
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "CNY"
    period_start: Timestamp
    period_end: Timestamp
    retroactive_date: Timestamp | None = None

    @field_validator("retroactive_date")
    @classmethod
    def _retroactive_not_after_start(cls, value: datetime | None,
                                     info: ValidationInfo) -> datetime | None:
        start = info.data.get("period_start")
        if value is not None and start is not None and value > start:
            raise ValueError("retroactive_date must not be after period_start")
        return value

    aggregate_limit: Money
    retention: Money
    bi_waiting_period_hours: Annotated[int, Field(ge=0, le=720)] = 8
    notice_period_hours: Annotated[int, Field(ge=0, le=8760)] = 72
    war_exclusion: bool = True
    sections: dict[Section, SectionTerms]
    # Pricing data for the loss experience (insights): optional so existing clients still
    # register policies; when given, a premium and a head count must be positive.
    annual_premium: Annotated[Money, Field(gt=0)] | None = None
    employees: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    annual_revenue: Money | None = None
    # Where risk's notifications about the policy (exposure alerts, remediation reminders)
    # are emailed; optional: without it they go to webhooks and the feed only.
    contact_email: Annotated[Email, Field(max_length=320)] | None = None

    @field_validator("period_end")
    @classmethod
    def _end_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("period_start")
        if start is not None and value <= start:
            raise ValueError("period_end must be after period_start")
        return value


class PolicyIn(PolicyBody):
    policy_number: PolicyNumber


class PolicyOut(PolicyIn):
    version: int


class ContactIn(RequestBody):
    name: ShortText
    email: Email
    phone: Annotated[str, Field(min_length=3, max_length=40, pattern=r"^[0-9+() .-]+$")]

    def contract(self) -> Contact:
        return Contact(name=self.name, email=str(self.email), phone=self.phone)


class IncidentReportIn(RequestBody):
    """First notice of loss (rulebook section 4)."""

    policy_number: PolicyNumber
    category: Category
    title: ShortText
    description: Text
    occurred_at: Timestamp
    discovered_at: Timestamp
    contact: ContactIn
    systems_down: bool = False
    outage_started_at: Timestamp | None = None
    affected_hosts: Count | None = None
    records_exposed: Count | None = None
    data_types: list[DataType] = Field(default_factory=list)
    ransom_demanded: Money | None = None
    funds_transferred: Money | None = None

    @field_validator("discovered_at")
    @classmethod
    def _discovered_after_occurred(cls, value: datetime, info: ValidationInfo) -> datetime:
        occurred = info.data.get("occurred_at")
        if occurred is not None and value < occurred:
            raise ValueError("discovered_at must not be before occurred_at")
        return value


class TimelineItem(BaseModel):
    at: AwareDatetime
    type: str
    summary: str


class IncidentOut(BaseModel):
    id: uuid.UUID
    status: str
    policy_number: str
    org_id: str
    category: Category
    title: str
    description: str
    occurred_at: AwareDatetime
    discovered_at: AwareDatetime
    reported_at: AwareDatetime
    contact: Contact
    systems_down: bool
    outage_started_at: AwareDatetime | None
    affected_hosts: int | None
    records_exposed: int | None
    data_types: list[DataType]
    ransom_demanded: Money | None
    funds_transferred: Money | None
    priority: str | None
    regulatory_deadline: AwareDatetime | None
    regulator_reported_at: AwareDatetime | None
    regulator_reference: str | None
    timeline: list[TimelineItem]


class IncidentSummary(BaseModel):
    id: uuid.UUID
    status: str
    policy_number: str
    category: Category
    title: str
    reported_at: AwareDatetime
    priority: str | None


class IncidentPage(BaseModel):
    items: list[IncidentSummary]
    total: int
    limit: int
    offset: int


class LossIn(RequestBody):
    """A loss item; business interruption is claimed as `hourly_loss`, anything else as `amount`."""

    section: Section
    amount: Money | None = Field(default=None, validate_default=True)
    hourly_loss: Money | None = Field(default=None, validate_default=True)
    description: Text

    @field_validator("amount")
    @classmethod
    def _amount_unless_interruption(cls, value: Decimal | None,
                                    info: ValidationInfo) -> Decimal | None:
        interruption = info.data.get("section") is Section.business_interruption
        if interruption and value is not None:
            raise ValueError("business_interruption is claimed as hourly_loss, not amount")
        if not interruption and value is None:
            raise ValueError("amount is required")
        return value

    @field_validator("hourly_loss")
    @classmethod
    def _hourly_only_for_interruption(cls, value: Decimal | None,
                                      info: ValidationInfo) -> Decimal | None:
        interruption = info.data.get("section") is Section.business_interruption
        if interruption and value is None:
            raise ValueError("hourly_loss is required for business_interruption")
        if not interruption and value is not None:
            raise ValueError("hourly_loss is only for business_interruption")
        return value


class LossOut(LossIn):
    id: uuid.UUID
    incident_id: uuid.UUID
    submitted_at: AwareDatetime


class RegulatorReportIn(RequestBody):
    reported_at: Timestamp
    reference: Annotated[str, Field(min_length=1, max_length=200)]  # the column's length
