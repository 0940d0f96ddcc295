"""The rulebook's triage rules (section 5), table-driven with their boundaries. No I/O."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from services.triage import rules
from services.triage.rules import IncidentFacts, VendorLoad
from services.triage.settings import TriageSettings
from shared.controls import AttackVector
from shared.events import (
    Attribution,
    Category,
    CompletionReport,
    JobType,
    Priority,
    RegulatoryGrade,
)

DISCOVERED = datetime(2025, 11, 3, 9, 30, tzinfo=UTC)
TIMES = TriageSettings().response_times()


def facts(category: Category = Category.malware, **overrides: Any) -> IncidentFacts:
    base = IncidentFacts(category=category, systems_down=False, critical_infrastructure=False,
                         discovered_at=DISCOVERED)
    return replace(base, **overrides)


C = Category
PRIORITY_CASES = [
    # P1
    (facts(C.ransomware, systems_down=True), Priority.P1),
    (facts(C.ddos, systems_down=True, critical_infrastructure=True), Priority.P1),
    (facts(records_exposed=1_000_000), Priority.P1),
    (facts(records_exposed=999_999), Priority.P2),
    # P2
    (facts(C.ransomware), Priority.P2),
    (facts(C.ransomware, critical_infrastructure=True), Priority.P2),
    (facts(systems_down=True), Priority.P2),
    (facts(records_exposed=100_000), Priority.P2),
    (facts(records_exposed=99_999), Priority.P3),
    (facts(funds_transferred=Decimal("1000000.00")), Priority.P2),
    (facts(funds_transferred=Decimal("999999.99")), Priority.P4),
    # P3
    (facts(C.data_breach), Priority.P3),
    (facts(C.business_email_compromise), Priority.P3),
    (facts(C.business_email_compromise, funds_transferred=Decimal("1000000")), Priority.P2),
    (facts(records_exposed=1_000), Priority.P3),
    (facts(records_exposed=999), Priority.P4),
    (facts(affected_hosts=10), Priority.P3),
    (facts(affected_hosts=9), Priority.P4),
    # P4
    (facts(), Priority.P4),
    (facts(C.ddos), Priority.P4),
    (facts(C.insider_misuse, critical_infrastructure=True), Priority.P4),
    (facts(C.other), Priority.P4),
]


@pytest.mark.parametrize(("incident", "expected"), PRIORITY_CASES)
def test_priority_first_match_wins(incident: IncidentFacts, expected: Priority) -> None:
    assert rules.priority(incident) is expected


GRADE_CASES = [
    (facts(records_exposed=100_000_000), RegulatoryGrade.particularly_serious),
    (facts(records_exposed=99_999_999), RegulatoryGrade.serious),
    (facts(records_exposed=10_000_000), RegulatoryGrade.serious),
    (facts(records_exposed=9_999_999), RegulatoryGrade.relatively_serious),
    (facts(records_exposed=1_000_000), RegulatoryGrade.relatively_serious),
    (facts(records_exposed=999_999), RegulatoryGrade.general),
    (facts(critical_infrastructure=True, systems_down=True), RegulatoryGrade.relatively_serious),
    (facts(critical_infrastructure=True), RegulatoryGrade.general),
    (facts(C.ransomware, systems_down=True), RegulatoryGrade.general),
    (facts(critical_infrastructure=True, systems_down=True, records_exposed=10_000_000),
     RegulatoryGrade.serious),
    (facts(), RegulatoryGrade.general),
]


@pytest.mark.parametrize(("incident", "expected"), GRADE_CASES)
def test_regulatory_grade_first_match_wins(incident: IncidentFacts,
                                           expected: RegulatoryGrade) -> None:
    assert rules.regulatory_grade(incident) is expected


DEADLINE_CASES = [
    (facts(), None),
    (facts(critical_infrastructure=True), None),
    (facts(records_exposed=1_000_000), DISCOVERED + timedelta(hours=4)),
    (facts(records_exposed=100_000_000), DISCOVERED + timedelta(hours=4)),
    (facts(records_exposed=1_000_000, critical_infrastructure=True), DISCOVERED + timedelta(hours=1)),
    (facts(critical_infrastructure=True, systems_down=True), DISCOVERED + timedelta(hours=1)),
]


@pytest.mark.parametrize(("incident", "expected"), DEADLINE_CASES)
def test_regulatory_deadline_from_discovery(incident: IncidentFacts,
                                            expected: datetime | None) -> None:
    grade = rules.regulatory_grade(incident)
    assert rules.regulatory_deadline(incident, grade, TIMES) == expected


J = JobType
PLAYBOOK_CASES = [
    (facts(C.ransomware), [J.forensics, J.ransomware_negotiation, J.data_recovery]),
    (facts(C.data_breach), [J.forensics, J.legal_counsel]),
    (facts(C.data_breach, records_exposed=0), [J.forensics, J.legal_counsel]),
    (facts(C.data_breach, records_exposed=1),
     [J.forensics, J.legal_counsel, J.notification_services]),
    (facts(C.business_email_compromise), [J.forensics, J.funds_recovery]),
    (facts(C.ddos), [J.ddos_mitigation]),
    (facts(C.malware), [J.forensics]),
    (facts(C.unauthorized_access), [J.forensics]),
    (facts(C.other), [J.forensics]),
    (facts(C.insider_misuse), [J.forensics, J.legal_counsel]),
    # a P1 incident also opens crisis communications
    (facts(C.ransomware, systems_down=True),
     [J.forensics, J.ransomware_negotiation, J.data_recovery, J.crisis_communications]),
    (facts(C.data_breach, records_exposed=1_000_000),
     [J.forensics, J.legal_counsel, J.notification_services, J.crisis_communications]),
    (facts(C.ddos, systems_down=True, critical_infrastructure=True),
     [J.ddos_mitigation, J.crisis_communications]),
    (facts(C.ddos, systems_down=True), [J.ddos_mitigation]),
]


@pytest.mark.parametrize(("incident", "expected"), PLAYBOOK_CASES)
def test_playbook_per_category(incident: IncidentFacts, expected: list[JobType]) -> None:
    assert rules.playbook(incident, rules.priority(incident)) == expected


def test_every_category_has_a_playbook() -> None:
    assert set(rules.PLAYBOOK) == set(Category)


@pytest.mark.parametrize(("priority", "minutes"),
                         [(Priority.P1, 15), (Priority.P2, 60), (Priority.P3, 240),
                          (Priority.P4, 1440)])
def test_acceptance_deadline_per_priority(priority: Priority, minutes: int) -> None:
    assert rules.acceptance_deadline(DISCOVERED, priority, TIMES) == DISCOVERED + timedelta(
        minutes=minutes)


# --- vendor selection ----------------------------------------------------------------------------


def vendor(vendor_id: str, *, open_jobs: int = 0, capacity: int = 5, rating: float = 4.0,
           capabilities: tuple[JobType, ...] = (J.forensics,), regions: tuple[str, ...] = ("CN-GD",),
           active: bool = True) -> VendorLoad:
    return VendorLoad(vendor_id=vendor_id, capabilities=frozenset(capabilities),
                      regions=frozenset(regions), capacity=capacity, open_jobs=open_jobs,
                      rating=rating, active=active)


ORDER_CASES = [
    # lowest open_jobs/capacity first
    ([vendor("a", open_jobs=2, capacity=4), vendor("b", open_jobs=1, capacity=4)], ["b", "a"]),
    ([vendor("a", open_jobs=1, capacity=2), vendor("b", open_jobs=2, capacity=10)], ["b", "a"]),
    # equal ratios (1/3 and 2/6) tie exactly: then the highest rating
    ([vendor("a", open_jobs=1, capacity=3, rating=4.0),
      vendor("b", open_jobs=2, capacity=6, rating=4.5)], ["b", "a"]),
    # equal ratio and rating: vendor_id ascending
    ([vendor("b", open_jobs=1, capacity=3), vendor("a", open_jobs=2, capacity=6)], ["a", "b"]),
    ([vendor("v10"), vendor("v2"), vendor("v1")], ["v1", "v10", "v2"]),
    # load beats rating
    ([vendor("a", open_jobs=0, rating=1.0), vendor("b", open_jobs=1, rating=5.0)], ["a", "b"]),
]


@pytest.mark.parametrize(("vendors", "expected"), ORDER_CASES)
def test_vendor_order(vendors: list[VendorLoad], expected: list[str]) -> None:
    ranked = rules.rank_vendors(vendors, J.forensics, "CN-GD")
    assert [v.vendor_id for v in ranked] == expected


@pytest.mark.parametrize("seed", range(20))
def test_vendor_order_compares_exact_ratios(seed: int) -> None:
    """Whatever the capacities (ratios a float would round together included), the order is
    that of the exact fractions, then rating, then vendor_id."""
    rng = random.Random(seed)
    capacities = [rng.choice([3, 6, 7, 10_000, 9_999, 2**31 - 1, 2**31 - 2]) for _ in range(12)]
    vendors = [vendor(f"v{i:02d}", capacity=capacity, open_jobs=rng.randrange(capacity),
                      rating=rng.choice([3.0, 4.5])) for i, capacity in enumerate(capacities)]
    ranked = rules.rank_vendors(vendors, J.forensics, "CN-GD")
    assert ranked == sorted(vendors, key=lambda v: (Fraction(v.open_jobs, v.capacity),
                                                    -v.rating, v.vendor_id))


ELIGIBILITY_CASES = [
    (vendor("ok"), True),
    (vendor("everywhere", regions=("*",)), True),
    (vendor("several", regions=("CN-BJ", "CN-GD")), True),
    (vendor("elsewhere", regions=("CN-BJ",)), False),
    (vendor("incapable", capabilities=(J.legal_counsel,)), False),
    (vendor("inactive", active=False), False),
    (vendor("full", open_jobs=5, capacity=5), False),
    (vendor("one-left", open_jobs=4, capacity=5), True),
    (vendor("no-capacity", capacity=0), False),
    (vendor("refused"), False),
]


@pytest.mark.parametrize(("candidate", "eligible"), ELIGIBILITY_CASES)
def test_vendor_eligibility(candidate: VendorLoad, eligible: bool) -> None:
    ranked = rules.rank_vendors([candidate], J.forensics, "CN-GD", refused=["refused"])
    assert bool(ranked) is eligible


# --- the response's outcome ----------------------------------------------------------------------

A = Attribution


@pytest.mark.parametrize(("said", "expected"), [
    ([], A.unknown),
    ([A.unknown, A.unknown], A.unknown),
    ([A.unknown, A.criminal, A.insider], A.criminal),
    ([A.insider, A.criminal], A.insider),
    ([A.criminal, A.unknown, A.state_actor], A.state_actor),
])
def test_overall_attribution(said: list[Attribution], expected: Attribution) -> None:
    assert rules.overall_attribution(said) is expected


def report(started: datetime | None = None, ended: datetime | None = None) -> CompletionReport:
    return CompletionReport(root_cause="phishing", attack_vector=AttackVector.email_phishing,
                            attribution=A.criminal, contained_at=DISCOVERED,
                            outage_started_at=started, outage_ended_at=ended)


def test_verified_outage_spans_earliest_start_to_latest_end() -> None:
    hour = timedelta(hours=1)
    outage = rules.verified_outage([
        report(DISCOVERED, DISCOVERED + 5 * hour), report(),
        report(DISCOVERED - hour, DISCOVERED + 2 * hour),
    ])
    assert outage is not None
    assert (outage.started_at, outage.ended_at) == (DISCOVERED - hour, DISCOVERED + 5 * hour)
    assert rules.verified_outage([report(), report()]) is None
