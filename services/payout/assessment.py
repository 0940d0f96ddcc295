"""The pure assessment engine: coverage questions (rulebook section 7), the payable amount of a
claim (section 8) and the decision (section 9). No I/O: everything it needs is in its inputs,
which are stored with each assessment so an auditor can recompute it.

Money is `Decimal`, rounded half-up to 0.01 at the end of each numbered step.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from shared.controls import GUARDING_CONTROLS, AttackVector, Control
from shared.events import (
    Attribution,
    Category,
    CoverageQuestion,
    Decision,
    PolicyTerms,
    Section,
    SectionBreakdown,
)
from shared.money import ZERO, round_money

EARLY_CLAIM_WINDOW = timedelta(days=30)
REPEAT_INCIDENT_WINDOW = timedelta(days=7)
MINUTES_PER_HOUR = 60


class LossSource(StrEnum):
    vendor = "vendor"
    policyholder = "policyholder"


class LossState(StrEnum):
    unverified = "unverified"
    verified = "verified"
    rejected = "rejected"


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossLine(Frozen):
    """One loss item as the engine sees it."""

    id: uuid.UUID
    section: Section
    source: LossSource
    state: LossState
    amount: Decimal | None = None
    hourly_loss: Decimal | None = None
    verified_amount: Decimal | None = None
    """The adjuster's figure when verifying at a different amount; wins over the claimed one."""


class IncidentFacts(Frozen):
    category: Category
    occurred_at: AwareDatetime
    discovered_at: AwareDatetime
    reported_at: AwareDatetime


class OtherIncident(Frozen):
    """Another incident on the same policy (for REPEAT_INCIDENT)."""

    incident_id: uuid.UUID
    category: Category
    occurred_at: AwareDatetime


class RemediationFact(Frozen):
    """A remediation item of the policy (risk service): fix `control` by `due_at`. It is closed
    from when it was done or superseded by a later assessment, whichever came first."""

    control: Control
    due_at: AwareDatetime
    done_at: AwareDatetime | None
    superseded_at: AwareDatetime | None = None

    def closed_at(self) -> datetime | None:
        return min((t for t in (self.done_at, self.superseded_at) if t is not None),
                   default=None)


class AssessmentInputs(Frozen):
    """Everything an assessment depends on; stored verbatim as its audit record."""

    policy: PolicyTerms
    incident: IncidentFacts
    attribution: Attribution | None
    losses: list[LossLine]
    outage_minutes: int | None
    """Vendor-verified outage (to the minute), or the adjuster's figure when there is none."""
    paid_by_section: dict[Section, Decimal]
    """What earlier claims under the policy paid (or have approved) from each section."""
    paid_total: Decimal
    other_incidents: list[OtherIncident]
    attack_vectors: list[AttackVector] = []
    """How the attacker got in, by the vendors' completion reports."""
    remediation: list[RemediationFact] = []


class AssessmentResult(Frozen):
    sections: list[SectionBreakdown]
    coverage_questions: list[CoverageQuestion]
    payable: Decimal


class MissingOutage(ValueError):
    """A verified business-interruption item is claimed per hour but no outage figure exists."""


class OutOfRange(ValueError):
    """The facts hold a date or duration the arithmetic cannot represent (a year-0001 outage,
    a policy ending in 9999): a data error for the adjuster to resolve, not a crash."""


def in_range(moment: datetime) -> bool:
    """Whether `moment` can be stored and compared in UTC (year 0001 at +14:00 cannot)."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


# --- section 6: losses ---------------------------------------------------------------------------


def outage_minutes(started_at: datetime, ended_at: datetime) -> int:
    """Whole minutes of outage (seconds are dropped: the outage is measured to the minute)."""
    return max(0, int((ended_at - started_at).total_seconds() // 60))


def interruption_amount(hourly_loss: Decimal, minutes: int, waiting_hours: int) -> Decimal:
    """`hourly_loss * max(0, outage_hours - waiting_hours)`, outage to the minute."""
    billable_minutes = max(0, minutes - waiting_hours * MINUTES_PER_HOUR)
    return round_money(hourly_loss * billable_minutes / MINUTES_PER_HOUR)


def verified_amount(line: LossLine, minutes: int | None, waiting_hours: int) -> Decimal:
    """What a verified item is worth; raises `MissingOutage` for an hourly item without one."""
    if line.verified_amount is not None:
        return line.verified_amount
    if line.hourly_loss is not None:
        if minutes is None:
            raise MissingOutage(f"loss item {line.id} is claimed per hour and no outage is known")
        return interruption_amount(line.hourly_loss, minutes, waiting_hours)
    return line.amount or ZERO


# --- section 7: coverage questions ---------------------------------------------------------------


def coverage_questions(inputs: AssessmentInputs) -> list[CoverageQuestion]:
    """Every question the facts raise, in the rulebook's order. Boundaries:
    the policy period is half-open [start, end); LATE_NOTICE is strictly more than the notice
    period; EARLY_CLAIM is start ≤ occurred_at ≤ start + 30 days; REPEAT_INCIDENT is another
    incident of the same category whose occurred_at is at most 7 days away, either side."""
    policy, incident = inputs.policy, inputs.incident
    occurred = incident.occurred_at
    raised: set[CoverageQuestion] = set()
    if not policy.period_start <= occurred < policy.period_end:
        raised.add(CoverageQuestion.OUTSIDE_POLICY_PERIOD)
    if policy.retroactive_date is not None and occurred < policy.retroactive_date:
        raised.add(CoverageQuestion.BEFORE_RETROACTIVE_DATE)
    if incident.reported_at - incident.discovered_at > timedelta(hours=policy.notice_period_hours):
        raised.add(CoverageQuestion.LATE_NOTICE)
    if any(line.section not in policy.sections for line in inputs.losses
           if line.state is not LossState.rejected):
        raised.add(CoverageQuestion.SECTION_NOT_COVERED)
    if inputs.attribution is Attribution.state_actor and policy.war_exclusion:
        raised.add(CoverageQuestion.WAR_EXCLUSION)
    if policy.period_start <= occurred <= policy.period_start + EARLY_CLAIM_WINDOW:
        raised.add(CoverageQuestion.EARLY_CLAIM)
    if any(other.category == incident.category
           and abs(other.occurred_at - occurred) <= REPEAT_INCIDENT_WINDOW
           for other in inputs.other_incidents):
        raised.add(CoverageQuestion.REPEAT_INCIDENT)
    if overdue_guarding_controls(inputs):
        raised.add(CoverageQuestion.REMEDIATION_OVERDUE)
    return [question for question in CoverageQuestion if question in raised]


def overdue_guarding_controls(inputs: AssessmentInputs) -> set[Control]:
    """REMEDIATION_OVERDUE: controls guarding against the incident's attack vectors whose
    remediation item was overdue when the incident occurred (due strictly before occurred_at,
    and not done nor superseded by then). It asks the adjuster; it denies nothing by itself."""
    occurred = inputs.incident.occurred_at
    guarding = {control for vector in inputs.attack_vectors
                for control in GUARDING_CONTROLS[vector]}
    return {item.control for item in inputs.remediation
            if item.control in guarding and item.due_at < occurred
            and ((closed := item.closed_at()) is None or closed > occurred)}


# --- section 8: the payable amount ---------------------------------------------------------------


def assess(inputs: AssessmentInputs) -> AssessmentResult:
    """The payable and the coverage questions; raises `OutOfRange` for dates it cannot handle."""
    try:
        return _assess(inputs)
    except OverflowError as exc:
        raise OutOfRange(f"a date or duration in the claim's facts is out of range: {exc}") from exc


def _assess(inputs: AssessmentInputs) -> AssessmentResult:
    policy = inputs.policy
    verified = [line for line in inputs.losses if line.state is LossState.verified]
    # 1. eligible_s: verified amounts per covered section (uncovered sections pay 0).
    eligible: dict[Section, Decimal] = {}
    for line in verified:
        amount = verified_amount(line, inputs.outage_minutes, policy.bi_waiting_period_hours)
        if line.section in policy.sections:
            eligible[line.section] = eligible.get(line.section, ZERO) + amount
    eligible = {section: round_money(amount) for section, amount in eligible.items()}
    # 2. the retention, once per claim, from the sections in canonical order.
    retention_left = policy.retention
    absorbed: dict[Section, Decimal] = {}
    for section in Section:
        taken = min(eligible.get(section, ZERO), retention_left)
        absorbed[section] = round_money(taken)
        retention_left -= taken
    net = {section: round_money(eligible.get(section, ZERO) - absorbed[section]) for section in Section}
    # 3. each section's sublimit less what earlier claims took from it.
    remaining: dict[Section, Decimal] = {}
    payable_by_section: dict[Section, Decimal] = {}
    for section in Section:
        terms = policy.sections.get(section)
        sublimit = terms.sublimit if terms is not None else ZERO
        remaining[section] = round_money(max(ZERO, sublimit - inputs.paid_by_section.get(section, ZERO)))
        payable_by_section[section] = round_money(min(net[section], remaining[section]))
    # 4. the aggregate limit less what the policy paid so far.
    aggregate_left = max(ZERO, policy.aggregate_limit - inputs.paid_total)
    payable = round_money(min(sum(payable_by_section.values(), ZERO), aggregate_left))
    shown = {line.section for line in inputs.losses} | set(policy.sections)
    sections = [
        SectionBreakdown(section=section, eligible=eligible.get(section, ZERO),
                         retention_absorbed=absorbed[section], net=net[section],
                         sublimit_remaining=remaining[section], payable=payable_by_section[section])
        for section in Section if section in shown
    ]
    return AssessmentResult(sections=sections, coverage_questions=coverage_questions(inputs),
                            payable=payable)


def allocate(amount: Decimal, sections: Iterable[SectionBreakdown]) -> dict[Section, Decimal]:
    """Which sections an approved amount is drawn from: each up to its payable, in canonical
    order (so an aggregate cut or an approval below payable comes off the later sections)."""
    left = amount
    drawn: dict[Section, Decimal] = {}
    for line in sorted(sections, key=lambda s: list(Section).index(s.section)):
        take = min(left, line.payable)
        if take > ZERO:
            drawn[line.section] = take
            left -= take
    if left > ZERO:
        raise ValueError(f"{amount} exceeds what the sections can pay")
    return drawn


# --- section 9: the decision ---------------------------------------------------------------------


def decide(result: AssessmentResult, auto_approval_limit: Decimal) -> Decision:
    if result.coverage_questions:
        return Decision.pending_approval
    if result.payable == ZERO:
        return Decision.closed_without_payment
    if result.payable <= auto_approval_limit:
        return Decision.approved
    return Decision.pending_approval


def approvals_required(amount: Decimal, two_approver_threshold: Decimal) -> int:
    """Above the threshold (strictly), two different adjusters must approve."""
    return 2 if amount > two_approver_threshold else 1


def paid_from(commitments: Iterable[tuple[str, Decimal]]) -> tuple[dict[Section, Decimal], Decimal]:
    """(paid per section, paid in total) from ledger rows (section, amount)."""
    by_section: dict[Section, Decimal] = {}
    for section, amount in commitments:
        by_section[Section(section)] = by_section.get(Section(section), ZERO) + amount
    return by_section, sum(by_section.values(), ZERO)

