"""Event contracts for the whole system, and the CloudEvents 1.0 envelope that carries them.

Every event is a pydantic model registered under its CloudEvents `type`
(`cyberclaims.<domain>.<name>.v<version>`). A breaking change is a new version, a new class
(`tests/shared/test_contract_evolution.py` compares the contracts with the last release's).
Producers are strict: an event is built from its fields, and an unknown one is an error.
Consumers are tolerant readers: unknown fields and CloudEvents attributes are ignored, so a
field added by a newer producer during a rolling update (or found on a replayed dead letter)
never makes an older consumer refuse the event. On Kafka, events travel in the CloudEvents
Kafka protocol binding, binary mode: attributes in `ce_*` headers, the data as the JSON value,
and the partition key as the message key.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared import jsoncodec
from shared.controls import AttackVector, Control
from shared.money import Money
from shared.topics import CLAIMS, INCIDENTS, NOTIFICATIONS, POLICIES, RESPONSE, RISK, Topic

CONTENT_TYPE = "application/json"


# --- vocabularies of the rulebook --------------------------------------------------------------


class Industry(StrEnum):
    telecom = "telecom"
    internet = "internet"
    manufacturing = "manufacturing"
    finance = "finance"
    energy = "energy"
    healthcare = "healthcare"
    government = "government"
    education = "education"
    retail = "retail"
    other = "other"


class Section(StrEnum):
    """Policy sections in canonical order (the order the retention is taken in)."""

    incident_response = "incident_response"
    legal_and_notification = "legal_and_notification"
    data_restoration = "data_restoration"
    business_interruption = "business_interruption"
    cyber_extortion = "cyber_extortion"
    funds_transfer_fraud = "funds_transfer_fraud"
    regulatory_fines = "regulatory_fines"
    third_party_liability = "third_party_liability"


class Category(StrEnum):
    ransomware = "ransomware"
    data_breach = "data_breach"
    business_email_compromise = "business_email_compromise"
    ddos = "ddos"
    malware = "malware"
    unauthorized_access = "unauthorized_access"
    insider_misuse = "insider_misuse"
    other = "other"


class DataType(StrEnum):
    pii = "pii"
    financial = "financial"
    health = "health"
    credentials = "credentials"
    trade_secret = "trade_secret"  # noqa: S105 - a data type, not a password


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class RegulatoryGrade(StrEnum):
    particularly_serious = "particularly_serious"
    serious = "serious"
    relatively_serious = "relatively_serious"
    general = "general"


class JobType(StrEnum):
    forensics = "forensics"
    ransomware_negotiation = "ransomware_negotiation"
    data_recovery = "data_recovery"
    legal_counsel = "legal_counsel"
    notification_services = "notification_services"
    funds_recovery = "funds_recovery"
    ddos_mitigation = "ddos_mitigation"
    crisis_communications = "crisis_communications"
    risk_assessment = "risk_assessment"


VENDOR_VERIFIABLE_SECTIONS: dict[JobType, frozenset[Section]] = {
    JobType.forensics: frozenset({Section.incident_response}),
    JobType.data_recovery: frozenset({Section.data_restoration}),
    JobType.ransomware_negotiation: frozenset({Section.cyber_extortion}),
    JobType.legal_counsel: frozenset({Section.legal_and_notification}),
    JobType.notification_services: frozenset({Section.legal_and_notification}),
    JobType.funds_recovery: frozenset({Section.funds_transfer_fraud}),
    JobType.ddos_mitigation: frozenset({Section.incident_response}),
    JobType.crisis_communications: frozenset({Section.legal_and_notification,
                                              Section.incident_response}),
    JobType.risk_assessment: frozenset(),  # an assessment before any incident: no loss
}
"""The loss sections a vendor's completion report may carry, by the job's type (triage
refuses others; docs/approvals.md). Business interruption is never vendor-verified: the
policyholder claims it per hour, the vendor verifies the outage it is computed from."""


class Attribution(StrEnum):
    criminal = "criminal"
    insider = "insider"
    state_actor = "state_actor"
    unknown = "unknown"


class CoverageQuestion(StrEnum):
    OUTSIDE_POLICY_PERIOD = "OUTSIDE_POLICY_PERIOD"
    BEFORE_RETROACTIVE_DATE = "BEFORE_RETROACTIVE_DATE"
    LATE_NOTICE = "LATE_NOTICE"
    SECTION_NOT_COVERED = "SECTION_NOT_COVERED"
    WAR_EXCLUSION = "WAR_EXCLUSION"
    EARLY_CLAIM = "EARLY_CLAIM"
    REPEAT_INCIDENT = "REPEAT_INCIDENT"
    REMEDIATION_OVERDUE = "REMEDIATION_OVERDUE"


class Channel(StrEnum):
    webhook = "webhook"
    email = "email"
    in_app = "in_app"


# --- base classes --------------------------------------------------------------------------------


class Contract(BaseModel):
    """An immutable part of an event, strict where it is built: an unknown field is an error,
    not silently lost. Read from the wire, unknown fields are ignored (`Envelope.event`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(Contract):
    """An event's data. Subclasses name their CloudEvents type, topic and partition key."""

    event_type: ClassVar[str]
    topic: ClassVar[Topic]
    registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            if cls.event_type in Event.registry:
                raise TypeError(f"duplicate event type {cls.event_type}")
            Event.registry[cls.event_type] = cls

    def partition_key(self) -> str:
        raise NotImplementedError

    def subject(self) -> str:
        return self.partition_key()


class IncidentEvent(Event):
    """Everything about an incident is keyed by its id and names the policyholder's org."""

    incident_id: uuid.UUID
    org_id: str

    def partition_key(self) -> str:
        return str(self.incident_id)


# --- policies ------------------------------------------------------------------------------------


class SectionTerms(Contract):
    sublimit: Money


class PolicyTerms(Contract):
    policy_number: str
    org_id: str
    holder_name: str
    industry: Industry
    region: str
    critical_infrastructure: bool
    currency: str
    period_start: AwareDatetime
    period_end: AwareDatetime
    retroactive_date: AwareDatetime | None
    aggregate_limit: Money
    retention: Money
    bi_waiting_period_hours: int
    notice_period_hours: int
    war_exclusion: bool
    sections: dict[Section, SectionTerms]
    # Pricing data (issue 26), optional so that policy events published before they existed
    # still parse: the premium per year of cover, head count (the size band) and turnover.
    annual_premium: Money | None = None
    employees: int | None = Field(default=None, ge=1)
    annual_revenue: Money | None = None
    # Where the policyholder hears of its policy's risk (exposure alerts, remediation
    # reminders) by email; optional like the pricing data, for the same reason.
    contact_email: str | None = None


class PolicyEvent(Event):
    topic = POLICIES
    policy: PolicyTerms

    def partition_key(self) -> str:
        return self.policy.policy_number


class PolicyRegistered(PolicyEvent):
    event_type = "cyberclaims.policy.registered.v1"


class PolicyUpdated(PolicyEvent):
    event_type = "cyberclaims.policy.updated.v1"
    version: int


# --- intake --------------------------------------------------------------------------------------


class Contact(Contract):
    name: str
    email: str
    phone: str


class IncidentReported(IncidentEvent):
    event_type = "cyberclaims.incident.reported.v1"
    topic = INCIDENTS
    policy_number: str
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


class LossSubmitted(IncidentEvent):
    """A policyholder's loss item. Business interruption comes as `hourly_loss`, not `amount`."""

    event_type = "cyberclaims.loss.submitted.v1"
    topic = INCIDENTS
    loss_id: uuid.UUID
    policy_number: str
    section: Section
    amount: Money | None
    hourly_loss: Money | None
    description: str
    submitted_at: AwareDatetime


class RegulatorReportFiled(IncidentEvent):
    """The policyholder confirmed it reported the incident to the regulator."""

    event_type = "cyberclaims.incident.regulator_report_filed.v1"
    topic = INCIDENTS
    reported_at: AwareDatetime
    reference: str


# --- triage --------------------------------------------------------------------------------------


class OpenedJob(Contract):
    job_id: uuid.UUID
    job_type: JobType


class IncidentTriaged(IncidentEvent):
    event_type = "cyberclaims.incident.triaged.v1"
    topic = RESPONSE
    policy_number: str
    priority: Priority
    regulatory_grade: RegulatoryGrade
    regulatory_deadline: AwareDatetime | None
    jobs: list[OpenedJob]
    triaged_at: AwareDatetime


class JobEvent(IncidentEvent):
    """A job's life cycle. A `risk_assessment` job has no incident: it names its assessment
    (`assessment_id`, also in `incident_id`, the key, so each assessment's events keep their
    order) and its policy."""

    topic = RESPONSE
    job_id: uuid.UUID
    job_type: JobType
    at: AwareDatetime
    assessment_id: uuid.UUID | None = None
    policy_number: str | None = None


class JobDispatched(JobEvent):
    event_type = "cyberclaims.job.dispatched.v1"
    vendor_id: str
    priority: Priority
    accept_by: AwareDatetime
    attempt: int = Field(ge=1, description="1 for the first vendor, 2 for the next, ...")


class JobAccepted(JobEvent):
    event_type = "cyberclaims.job.accepted.v1"
    vendor_id: str


class JobDeclined(JobEvent):
    event_type = "cyberclaims.job.declined.v1"
    vendor_id: str
    reason: str


class JobExpired(JobEvent):
    event_type = "cyberclaims.job.expired.v1"
    vendor_id: str
    accept_by: AwareDatetime


class JobUnassigned(JobEvent):
    """No eligible vendor: operators are alerted; the job is assigned when capacity frees."""

    event_type = "cyberclaims.job.unassigned.v1"
    reason: str


class JobCancelled(JobEvent):
    event_type = "cyberclaims.job.cancelled.v1"
    vendor_id: str | None
    cancelled_by: str


class VerifiedLoss(Contract):
    section: Section
    amount: Money
    description: str


class CompletionReport(Contract):
    root_cause: str
    attack_vector: AttackVector
    attack_vector_detail: str | None = None
    attribution: Attribution
    contained_at: AwareDatetime
    outage_started_at: AwareDatetime | None = None
    outage_ended_at: AwareDatetime | None = None
    records_confirmed: int | None = Field(default=None, ge=0)
    verified_losses: list[VerifiedLoss] = Field(default_factory=list)


class JobCompleted(JobEvent):
    event_type = "cyberclaims.job.completed.v1"
    vendor_id: str
    report: CompletionReport


class Finding(Contract):
    job_id: uuid.UUID
    job_type: JobType
    vendor_id: str
    root_cause: str
    attack_vector: AttackVector
    attribution: Attribution
    contained_at: AwareDatetime
    records_confirmed: int | None


class VendorVerifiedLoss(VerifiedLoss):
    vendor_id: str
    job_id: uuid.UUID


class VerifiedOutage(Contract):
    started_at: AwareDatetime
    ended_at: AwareDatetime


class IncidentResponseCompleted(IncidentEvent):
    """Every job is completed or cancelled: what payout needs to assess the claim."""

    event_type = "cyberclaims.incident.response_completed.v1"
    topic = RESPONSE
    policy_number: str
    completed_at: AwareDatetime
    findings: list[Finding]
    attribution: Attribution
    verified_outage: VerifiedOutage | None
    verified_losses: list[VendorVerifiedLoss]


# --- payout --------------------------------------------------------------------------------------


class SectionBreakdown(Contract):
    section: Section
    eligible: Money
    retention_absorbed: Money
    net: Money
    sublimit_remaining: Money
    payable: Money


class Decision(StrEnum):
    closed_without_payment = "closed_without_payment"
    approved = "approved"
    pending_approval = "pending_approval"


class ClaimEvent(IncidentEvent):
    topic = CLAIMS
    claim_id: uuid.UUID
    at: AwareDatetime


class ClaimOpened(ClaimEvent):
    event_type = "cyberclaims.claim.opened.v1"
    policy_number: str


class ClaimAssessed(ClaimEvent):
    event_type = "cyberclaims.claim.assessed.v1"
    assessment_id: uuid.UUID
    payable: Money
    sections: list[SectionBreakdown]
    coverage_questions: list[CoverageQuestion]
    decision: Decision


class ClaimPendingApproval(ClaimEvent):
    event_type = "cyberclaims.claim.pending_approval.v1"
    payable: Money
    coverage_questions: list[CoverageQuestion]
    approvals_required: int


class ClaimApproved(ClaimEvent):
    event_type = "cyberclaims.claim.approved.v1"
    amount: Money
    approvers: list[str]
    automatic: bool
    reason: str | None


class ClaimDenied(ClaimEvent):
    event_type = "cyberclaims.claim.denied.v1"
    adjuster: str
    reason: str


class ClaimClosedWithoutPayment(ClaimEvent):
    event_type = "cyberclaims.claim.closed_without_payment.v1"
    reason: str


class LateLossRejected(ClaimEvent):
    """A policyholder's loss that reached payout after the claim was decided: it crossed the
    decision on its way (intake refuses a loss once it knows of the decision). It is not part
    of the decision, and the policyholder, whose submission was accepted, is told why."""

    event_type = "cyberclaims.claim.late_loss_rejected.v1"
    loss_id: uuid.UUID
    section: Section
    amount: Money | None
    hourly_loss: Money | None
    claim_status: str
    reason: str


class PaymentEvent(ClaimEvent):
    payment_id: uuid.UUID
    amount: Money
    currency: str


class PaymentRequested(PaymentEvent):
    event_type = "cyberclaims.payment.requested.v1"


class PaymentSucceeded(PaymentEvent):
    event_type = "cyberclaims.payment.succeeded.v1"
    provider_reference: str


class PaymentFailed(PaymentEvent):
    event_type = "cyberclaims.payment.failed.v1"
    error: str
    attempts: int


# --- dead letters --------------------------------------------------------------------------------


class EventDeadLettered(IncidentEvent):
    """A consumer gave up on an event about this incident: what it marked (a claim, jobs) stays
    marked until a replay applies the event. Operators are alerted; each service publishes it
    on its own topic (a subclass per topic)."""

    consumer: str
    dead_event_id: uuid.UUID
    dead_event_type: str
    error: str
    marked: list[str]
    at: AwareDatetime


class ClaimEventDeadLettered(EventDeadLettered):
    event_type = "cyberclaims.claim.event_dead_lettered.v1"
    topic = CLAIMS


class ResponseEventDeadLettered(EventDeadLettered):
    event_type = "cyberclaims.response.event_dead_lettered.v1"
    topic = RESPONSE


# --- notify --------------------------------------------------------------------------------------


class NotificationEvent(Event):
    topic = NOTIFICATIONS
    delivery_id: uuid.UUID
    source_event_id: uuid.UUID
    source_event_type: str
    incident_id: uuid.UUID | None
    recipient: str
    channel: Channel
    at: AwareDatetime

    def partition_key(self) -> str:
        return str(self.incident_id or self.delivery_id)


class NotificationDelivered(NotificationEvent):
    event_type = "cyberclaims.notification.delivered.v1"
    attempts: int


class NotificationDead(NotificationEvent):
    event_type = "cyberclaims.notification.dead.v1"
    attempts: int
    last_error: str


# --- risk ----------------------------------------------------------------------------------------


class RiskTier(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"


class AssessmentReason(StrEnum):
    registered = "registered"
    renewed = "renewed"
    requested = "requested"


class RemediationSource(StrEnum):
    missing_control = "missing_control"
    finding = "finding"
    exposure = "exposure"


class ExposureKind(StrEnum):
    exposed_service = "exposed_service"
    leaked_credential = "leaked_credential"
    exploited_vulnerability = "exploited_vulnerability"


class RemediationItem(Contract):
    """Something the policyholder has to fix by `due_at`, against one control."""

    item_id: uuid.UUID
    control: Control
    source: RemediationSource
    title: str
    cvss_score: float | None
    due_at: AwareDatetime
    done_at: AwareDatetime | None
    superseded_at: AwareDatetime | None = None
    """When a later assessment no longer listed it (control in place, finding gone): closed
    from then on like an item done. Optional: events of earlier releases lack it."""


class RiskEvent(Event):
    """Everything about a policy's risk is keyed by its policy number."""

    topic = RISK
    policy_number: str
    org_id: str

    def partition_key(self) -> str:
        return self.policy_number


class RiskAssessmentRequested(RiskEvent):
    """Triage opens an assessment job for it (capability `risk_assessment`)."""

    event_type = "cyberclaims.risk.assessment_requested.v1"
    assessment_id: uuid.UUID
    region: str
    reason: AssessmentReason
    requested_at: AwareDatetime


class RiskAssessed(RiskEvent):
    event_type = "cyberclaims.risk.assessed.v1"
    assessment_id: uuid.UUID
    job_id: uuid.UUID | None
    vendor_id: str
    score: int = Field(ge=0, le=100)
    tier: RiskTier
    premium_modifier_percent: int
    referred_to_underwriter: bool
    items: list[RemediationItem]
    assessed_at: AwareDatetime


class ExposureAlerted(RiskEvent):
    event_type = "cyberclaims.risk.exposure_alerted.v1"
    vendor_id: str
    kind: ExposureKind
    description: str
    item: RemediationItem
    at: AwareDatetime


class RemediationItemEvent(RiskEvent):
    item: RemediationItem
    at: AwareDatetime


class RemediationDone(RemediationItemEvent):
    """Confirmed by the assessing vendor or an operator."""

    event_type = "cyberclaims.risk.remediation_done.v1"
    confirmed_by: str


class RemediationSuperseded(RemediationItemEvent):
    """A re-assessment of the policy no longer lists the item: it is closed (docs/risk.md)."""

    event_type = "cyberclaims.risk.remediation_superseded.v1"
    assessment_id: uuid.UUID
    """The assessment that superseded it."""


class RemediationDueSoon(RemediationItemEvent):
    event_type = "cyberclaims.risk.remediation_due_soon.v1"


class RemediationOverdue(RemediationItemEvent):
    event_type = "cyberclaims.risk.remediation_overdue.v1"
    tier: RiskTier | None


class RemediationEscalated(RemediationItemEvent):
    """A tier D policy has an overdue item: operators are told."""

    event_type = "cyberclaims.risk.remediation_escalated.v1"
    tier: RiskTier


# --- the envelope --------------------------------------------------------------------------------


class Envelope(BaseModel):
    """A CloudEvents 1.0 event with the `correlationid` and `causationid` extensions, and the
    W3C trace context of the span that staged it (`traceparent`, `tracestate`: the CloudEvents
    distributed-tracing extension; absent when tracing is off). Strict where it is built,
    tolerant of attributes it does not know when read (`from_kafka`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID
    source: str
    type: str
    specversion: Literal["1.0"] = "1.0"
    time: AwareDatetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    correlationid: str
    causationid: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    data: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        source: str,
        time: datetime,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: uuid.UUID | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> Envelope:
        """Wrap event data; without a correlation id the event starts a new conversation."""
        new_id = event_id or uuid.uuid4()
        return cls(
            id=new_id,
            source=source,
            type=event.event_type,
            time=time,
            subject=event.subject(),
            dataschema=f"urn:cyberclaims:schema:{event.event_type}",
            correlationid=correlation_id or str(new_id),
            causationid=causation_id,
            traceparent=traceparent,
            tracestate=tracestate,
            data=event.model_dump(mode="json"),
        )


    def event(self) -> Event:
        """The typed data, ignoring fields this version of the contract does not know (a
        newer producer's additions); raises `UnknownEventType` or a pydantic
        `ValidationError` (a known field that breaks the contract)."""
        model = Event.registry.get(self.type)
        if model is None:
            raise UnknownEventType(self.type)
        return model.model_validate(self.data, extra="ignore")

    # CloudEvents Kafka protocol binding, binary content mode.
    def to_kafka_headers(self) -> list[tuple[str, bytes]]:
        return kafka_headers(self.model_dump(mode="json"))

    def to_kafka_value(self) -> bytes:
        return kafka_value(self.data)

    @staticmethod
    def type_in_kafka_headers(headers: Any) -> str | None:
        """The event type a message declares, read without decoding the message."""
        for name, raw in headers or ():
            if name == "ce_type":  # a null value declares nothing: from_kafka refuses it
                return None if raw is None else bytes(raw).decode(errors="replace")
        return None

    @classmethod
    def from_kafka(cls, headers: Any, value: bytes | None) -> Envelope:
        """Rebuild the envelope from a binary-mode Kafka message, ignoring `ce_*` attributes
        this version does not know (a newer producer's extensions); raises on a malformed one."""
        attributes: dict[str, Any] = {}
        for name, raw in headers or ():
            if name.startswith("ce_"):
                if raw is None:
                    raise ValueError(f"header {name} has no value")
                attributes[name[3:]] = bytes(raw).decode()
        if value is None:
            raise ValueError("message has no value")
        return cls.model_validate({**attributes, "data": jsoncodec.loads(value)}, extra="ignore")


class UnknownEventType(ValueError):
    pass


def event_class(event_type: str) -> type[Event]:
    return Event.registry[event_type]


def kafka_headers(stored: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """The `ce_*` headers of an envelope in its JSON form (as the outbox stores it), so the
    relay can publish a stored envelope without rebuilding the model."""
    headers = [(f"ce_{name}", str(value).encode()) for name, value in stored.items()
               if value is not None and name not in ("data", "datacontenttype")]
    headers.append(("content-type", CONTENT_TYPE.encode()))
    return headers


def kafka_value(data: Mapping[str, Any]) -> bytes:
    """The message value: the event's data as compact JSON."""
    return jsoncodec.dumps(data)
