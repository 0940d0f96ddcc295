"""The pure engine, table-driven (no I/O): every step of the payable amount (rulebook section 8),
every coverage question with its boundaries (section 7) and the decision (section 9)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.payout.assessment import (
    AssessmentInputs,
    IncidentFacts,
    LossLine,
    LossSource,
    LossState,
    MissingOutage,
    OtherIncident,
    OutOfRange,
    allocate,
    approvals_required,
    assess,
    decide,
    in_range,
    interruption_amount,
    outage_minutes,
)
from shared.events import (
    Attribution,
    Category,
    CoverageQuestion,
    Decision,
    PolicyTerms,
    Section,
    SectionTerms,
)

D = Decimal
START = datetime(2025, 1, 1, tzinfo=UTC)
IR, LEGAL, RESTORE, BI = (Section.incident_response, Section.legal_and_notification,
                          Section.data_restoration, Section.business_interruption)
EXTORTION, FINES = Section.cyber_extortion, Section.regulatory_fines


def policy(**overrides: Any) -> PolicyTerms:
    terms: dict[str, Any] = {
        "policy_number": "POL-1", "org_id": "org-1", "holder_name": "Widget Co.",
        "industry": "manufacturing", "region": "CN-GD", "critical_infrastructure": False,
        "currency": "CNY", "period_start": START, "period_end": START + timedelta(days=365),
        "retroactive_date": None, "aggregate_limit": D("5000000"), "retention": D("50000"),
        "bi_waiting_period_hours": 8, "notice_period_hours": 72, "war_exclusion": True,
        "sections": {IR: SectionTerms(sublimit=D("200000")), BI: SectionTerms(sublimit=D("300000"))},
    }
    terms.update(overrides)
    return PolicyTerms(**terms)


def loss(section: Section, amount: str | None = None, *, hourly: str | None = None,
         state: LossState = LossState.verified, verified: str | None = None) -> LossLine:
    return LossLine(id=uuid.uuid4(), section=section, source=LossSource.policyholder, state=state,
                    amount=D(amount) if amount else None, hourly_loss=D(hourly) if hourly else None,
                    verified_amount=D(verified) if verified else None)


def inputs(losses: list[LossLine], *, terms: PolicyTerms | None = None,
           occurred: datetime = START + timedelta(days=100), discovered: timedelta = timedelta(hours=1),
           reported: timedelta = timedelta(hours=2), attribution: Attribution | None = None,
           paid: dict[Section, str] | None = None, outage: int | None = None,
           others: list[OtherIncident] | None = None,
           category: Category = Category.ransomware) -> AssessmentInputs:
    paid_by_section = {s: D(v) for s, v in (paid or {}).items()}
    return AssessmentInputs(
        policy=terms or policy(),
        incident=IncidentFacts(category=category, occurred_at=occurred,
                               discovered_at=occurred + discovered, reported_at=occurred + reported),
        attribution=attribution, losses=losses, outage_minutes=outage,
        paid_by_section=paid_by_section, paid_total=sum(paid_by_section.values(), D(0)),
        other_incidents=others or [],
    )


def by_section(result: Any) -> dict[Section, tuple[str, ...]]:
    return {line.section: (str(line.eligible), str(line.retention_absorbed), str(line.net),
                           str(line.sublimit_remaining), str(line.payable))
            for line in result.sections}


# --- section 8: the payable amount, step by step ------------------------------------------------


def test_the_rulebooks_worked_example() -> None:
    result = assess(inputs([loss(IR, "30000"), loss(BI, "400000")]))
    assert by_section(result) == {
        IR: ("30000.00", "30000.00", "0.00", "200000.00", "0.00"),
        BI: ("400000.00", "20000.00", "380000.00", "300000.00", "300000.00"),
    }
    assert result.payable == D("300000.00")
    assert result.coverage_questions == []


PAYABLE_TABLE = [
    pytest.param(
        "retention spans three sections in canonical order",
        dict(terms=policy(retention=D("100000"), sections={
            IR: SectionTerms(sublimit=D("500000")), LEGAL: SectionTerms(sublimit=D("500000")),
            RESTORE: SectionTerms(sublimit=D("500000"))})),
        [loss(RESTORE, "90000"), loss(IR, "40000"), loss(LEGAL, "35000")],
        {IR: ("40000.00", "40000.00", "0.00", "500000.00", "0.00"),
         LEGAL: ("35000.00", "35000.00", "0.00", "500000.00", "0.00"),
         RESTORE: ("90000.00", "25000.00", "65000.00", "500000.00", "65000.00")},
        "65000.00", id="retention-spanning-sections"),
    pytest.param(
        "several items of one section are summed; rejected and unverified ones do not count",
        {}, [loss(IR, "60000"), loss(IR, "15000.50"), loss(IR, "99999", state=LossState.rejected),
             loss(IR, "88888", state=LossState.unverified)],
        {IR: ("75000.50", "50000.00", "25000.50", "200000.00", "25000.50"),
         BI: ("0.00", "0.00", "0.00", "300000.00", "0.00")},
        "25000.50", id="sum-of-verified-items"),
    pytest.param(
        "a sublimit partly used by an earlier claim",
        dict(paid={BI: "250000"}), [loss(IR, "50000"), loss(BI, "120000")],
        {IR: ("50000.00", "50000.00", "0.00", "200000.00", "0.00"),
         BI: ("120000.00", "0.00", "120000.00", "50000.00", "50000.00")},
        "50000.00", id="sublimit-partly-used"),
    pytest.param(
        "a sublimit used up entirely",
        dict(paid={BI: "300000"}), [loss(BI, "500000")],
        {IR: ("0.00", "0.00", "0.00", "200000.00", "0.00"),
         BI: ("500000.00", "50000.00", "450000.00", "0.00", "0.00")},
        "0.00", id="sublimit-used-up"),
    pytest.param(
        "the aggregate limit runs out",
        dict(terms=policy(aggregate_limit=D("400000")), paid={IR: "150000", BI: "100000"}),
        [loss(IR, "100000"), loss(BI, "200000")],
        {IR: ("100000.00", "50000.00", "50000.00", "50000.00", "50000.00"),
         BI: ("200000.00", "0.00", "200000.00", "200000.00", "200000.00")},
        "150000.00", id="aggregate-runs-out"),
    pytest.param(
        "the aggregate limit is already spent",
        dict(terms=policy(aggregate_limit=D("250000")), paid={IR: "150000", BI: "100000"}),
        [loss(IR, "100000")],
        {IR: ("100000.00", "50000.00", "50000.00", "50000.00", "50000.00"),
         BI: ("0.00", "0.00", "0.00", "200000.00", "0.00")},
        "0.00", id="aggregate-spent"),
    pytest.param(
        "an uncovered section pays nothing and takes none of the retention",
        {}, [loss(EXTORTION, "80000"), loss(IR, "70000")],
        {IR: ("70000.00", "50000.00", "20000.00", "200000.00", "20000.00"),
         BI: ("0.00", "0.00", "0.00", "300000.00", "0.00"),
         EXTORTION: ("0.00", "0.00", "0.00", "0.00", "0.00")},
        "20000.00", id="uncovered-section"),
    pytest.param(
        "business interruption: hourly loss x (outage - waiting hours), outage to the minute",
        dict(outage=10 * 60 + 30),  # 10 h 30 min; 8 h waiting -> 2.5 h
        [loss(BI, hourly="40000")],
        {IR: ("0.00", "0.00", "0.00", "200000.00", "0.00"),
         BI: ("100000.00", "50000.00", "50000.00", "300000.00", "50000.00")},
        "50000.00", id="interruption-with-minutes"),
    pytest.param(
        "business interruption within the waiting period pays nothing",
        dict(outage=8 * 60), [loss(BI, hourly="40000"), loss(IR, "60000")],
        {IR: ("60000.00", "50000.00", "10000.00", "200000.00", "10000.00"),
         BI: ("0.00", "0.00", "0.00", "300000.00", "0.00")},
        "10000.00", id="interruption-within-waiting"),
    pytest.param(
        "the adjuster's verified amount wins over the claimed one",
        {}, [loss(IR, "90000", verified="70000")],
        {IR: ("70000.00", "50000.00", "20000.00", "200000.00", "20000.00"),
         BI: ("0.00", "0.00", "0.00", "300000.00", "0.00")},
        "20000.00", id="verified-lower"),
    pytest.param(
        "rounding half-up: 1 minute at 0.30 per hour is 0.005 -> 0.01 (not banker's 0.00)",
        dict(terms=policy(retention=D("0"), bi_waiting_period_hours=0), outage=1),
        [loss(BI, hourly="0.30")],
        {IR: ("0.00", "0.00", "0.00", "200000.00", "0.00"),
         BI: ("0.01", "0.00", "0.01", "300000.00", "0.01")},
        "0.01", id="rounding-half-up"),
    pytest.param(
        "rounding: 7 minutes at 100.03 per hour is 11.670166.. -> 11.67, then the retention",
        dict(terms=policy(retention=D("10.10"), bi_waiting_period_hours=0), outage=7),
        [loss(BI, hourly="100.03"), loss(IR, "0.01")],
        {IR: ("0.01", "0.01", "0.00", "200000.00", "0.00"),
         BI: ("11.67", "10.09", "1.58", "300000.00", "1.58")},
        "1.58", id="rounding-then-retention"),
]


@pytest.mark.parametrize(("story", "options", "losses", "expected", "payable"), PAYABLE_TABLE)
def test_payable_table(story: str, options: dict[str, Any], losses: list[LossLine],
                       expected: dict[Section, tuple[str, ...]], payable: str) -> None:
    result = assess(inputs(losses, **options))
    assert by_section(result) == expected, story
    assert result.payable == D(payable), story


def test_uncovered_section_raises_its_question() -> None:
    result = assess(inputs([loss(EXTORTION, "80000")]))
    assert result.coverage_questions == [CoverageQuestion.SECTION_NOT_COVERED]
    assert result.payable == D("0.00")


def test_hourly_interruption_without_an_outage_cannot_be_assessed() -> None:
    with pytest.raises(MissingOutage):
        assess(inputs([loss(BI, hourly="1000")]))


@pytest.mark.parametrize(("started", "ended", "minutes"), [
    ("08:00:00", "18:30:59", 630), ("08:00:30", "08:01:29", 0), ("08:00:00", "07:00:00", 0),
])
def test_outage_is_measured_to_the_minute(started: str, ended: str, minutes: int) -> None:
    day = "2025-03-01T{}+00:00"
    assert outage_minutes(datetime.fromisoformat(day.format(started)),
                          datetime.fromisoformat(day.format(ended))) == minutes


def test_dates_the_arithmetic_cannot_handle_are_a_data_error() -> None:
    assert not in_range(datetime.fromisoformat("0001-01-01T00:00:00+14:00"))
    assert in_range(datetime.fromisoformat("0001-01-01T00:00:00-14:00"))
    end_of_time = datetime(9999, 12, 31, 20, 0, tzinfo=UTC)
    terms = policy(period_start=end_of_time, period_end=end_of_time + timedelta(hours=3))
    with pytest.raises(OutOfRange):
        assess(inputs([loss(IR, "1000")], terms=terms, occurred=end_of_time + timedelta(minutes=5),
                      discovered=timedelta(minutes=1), reported=timedelta(minutes=2)))


def test_interruption_amount() -> None:
    assert interruption_amount(D("1200"), 8 * 60 + 1, 8) == D("20.00")
    assert interruption_amount(D("1200"), 7 * 60, 8) == D("0.00")


# --- section 7: coverage questions and their boundaries -----------------------------------------

Q = CoverageQuestion
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
END = START + timedelta(days=365)
MID = START + timedelta(days=100)


def other(category: Category, occurred: datetime) -> OtherIncident:
    return OtherIncident(incident_id=uuid.uuid4(), category=category, occurred_at=occurred)


QUESTION_TABLE = [
    pytest.param(dict(occurred=START - SECOND), {Q.OUTSIDE_POLICY_PERIOD}, id="just-before-start"),
    pytest.param(dict(occurred=START), {Q.EARLY_CLAIM}, id="at-start-in-period"),
    pytest.param(dict(occurred=END - SECOND), set(), id="last-second-in-period"),
    pytest.param(dict(occurred=END), {Q.OUTSIDE_POLICY_PERIOD}, id="at-end-out-of-period"),
    pytest.param(dict(terms=policy(retroactive_date=MID)), set(), id="on-retroactive-date"),
    pytest.param(dict(terms=policy(retroactive_date=MID + SECOND)), {Q.BEFORE_RETROACTIVE_DATE},
                 id="before-retroactive-date"),
    pytest.param(dict(reported=timedelta(hours=1 + 72)), set(), id="notice-exactly-72h"),
    pytest.param(dict(reported=timedelta(hours=1 + 72, seconds=1)), {Q.LATE_NOTICE},
                 id="notice-72h-and-a-second"),
    pytest.param(dict(attribution=Attribution.state_actor), {Q.WAR_EXCLUSION}, id="state-actor"),
    pytest.param(dict(attribution=Attribution.state_actor, terms=policy(war_exclusion=False)), set(),
                 id="state-actor-without-war-exclusion"),
    pytest.param(dict(attribution=Attribution.criminal), set(), id="criminal"),
    pytest.param(dict(occurred=START + 30 * DAY), {Q.EARLY_CLAIM}, id="day-30-early"),
    pytest.param(dict(occurred=START + 30 * DAY + SECOND), set(), id="after-day-30"),
    pytest.param(dict(others=[other(Category.ransomware, MID - 7 * DAY)]), {Q.REPEAT_INCIDENT},
                 id="repeat-7-days-before"),
    pytest.param(dict(others=[other(Category.ransomware, MID + 7 * DAY)]), {Q.REPEAT_INCIDENT},
                 id="repeat-7-days-after"),
    pytest.param(dict(others=[other(Category.ransomware, MID - 7 * DAY - SECOND)]), set(),
                 id="repeat-beyond-7-days"),
    pytest.param(dict(others=[other(Category.ddos, MID - DAY)]), set(), id="other-category"),
]


@pytest.mark.parametrize(("options", "expected"), QUESTION_TABLE)
def test_coverage_questions(options: dict[str, Any], expected: set[CoverageQuestion]) -> None:
    result = assess(inputs([loss(IR, "60000")], **options))
    assert set(result.coverage_questions) == expected


def test_questions_come_in_the_rulebooks_order() -> None:
    result = assess(inputs(
        [loss(FINES, "1000"), loss(IR, "60000")], occurred=START - DAY,
        terms=policy(retroactive_date=START), reported=timedelta(days=10),
        attribution=Attribution.state_actor, others=[other(Category.ransomware, START)],
    ))
    assert result.coverage_questions == [Q.OUTSIDE_POLICY_PERIOD, Q.BEFORE_RETROACTIVE_DATE,
                                         Q.LATE_NOTICE, Q.SECTION_NOT_COVERED, Q.WAR_EXCLUSION,
                                         Q.REPEAT_INCIDENT]


# --- section 9: the decision ---------------------------------------------------------------------

LIMIT = D("50000")


@pytest.mark.parametrize(("payable", "questions", "decision"), [
    ("0.00", [], Decision.closed_without_payment),
    ("0.00", [Q.LATE_NOTICE], Decision.pending_approval),
    ("0.01", [], Decision.approved),
    ("50000.00", [], Decision.approved),
    ("50000.01", [], Decision.pending_approval),
    ("100.00", [Q.EARLY_CLAIM], Decision.pending_approval),
])
def test_decision(payable: str, questions: list[CoverageQuestion], decision: Decision) -> None:
    result = assess(inputs([loss(IR, str(D(payable) + D("50000")))],
                           **({"reported": timedelta(days=10)} if questions == [Q.LATE_NOTICE] else {}),
                           **({"occurred": START + DAY} if questions == [Q.EARLY_CLAIM] else {})))
    assert result.payable == D(payable)
    assert result.coverage_questions == questions
    assert decide(result, LIMIT) is decision


@pytest.mark.parametrize(("amount", "required"), [("1000000.00", 1), ("1000000.01", 2)])
def test_two_approvers_above_the_threshold(amount: str, required: int) -> None:
    assert approvals_required(D(amount), D("1000000")) == required


def test_an_approved_amount_is_drawn_in_canonical_order() -> None:
    result = assess(inputs([loss(IR, "150000"), loss(BI, "200000")]))
    assert allocate(D("250000"), result.sections) == {IR: D("100000.00"), BI: D("150000")}
    with pytest.raises(ValueError):
        allocate(result.payable + D("0.01"), result.sections)
