"""The risk rulebook as table-driven cases at every boundary (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.risk.rules import InvalidVector, ScoredFinding, cvss_base_score
from services.risk.settings import DEFAULT_WEIGHTS, RiskSettings
from shared.controls import GUARDING_CONTROLS, AttackVector, Control
from shared.events import RemediationSource, RiskTier

RULES = RiskSettings().rules()
AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

CVSS_AT = {
    "6.9": "CVSS:3.1/AV:N/AC:L/PR:H/UI:R/S:C/C:H/I:L/A:N",
    "7.0": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:L/A:L",
    "8.9": "CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:H/I:H/A:L",
    "9.0": "CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:H/I:H/A:H",
}
CVSS4_AT = {
    "6.9": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:L/VA:L/SC:N/SI:N/SA:N",
    "7.0": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:A/VC:H/VI:L/VA:L/SC:N/SI:N/SA:N",
    "9.3": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
}


def controls_worth(points: int) -> set[Control]:
    """Controls in place whose weights add up to exactly `points` (multiples of 5)."""
    chosen: set[Control] = set()
    for control, weight in sorted(DEFAULT_WEIGHTS.items(), key=lambda kv: -kv[1]):
        if sum(DEFAULT_WEIGHTS[c] for c in chosen) + weight <= points:
            chosen.add(control)
    assert sum(DEFAULT_WEIGHTS[c] for c in chosen) == points
    return chosen


def finding(score: str, *, open: bool = True) -> ScoredFinding:
    return ScoredFinding("finding", Control.critical_patches_within_14_days, CVSS_AT.get(score, ""),
                         Decimal(score), open)


def test_the_weights_add_up_to_100() -> None:
    assert sum(DEFAULT_WEIGHTS.values()) == 100
    assert set(DEFAULT_WEIGHTS) == set(Control)


@pytest.mark.parametrize(("vector", "score"), [
    *[(vector, Decimal(score)) for score, vector in CVSS_AT.items()],
    *[(vector, Decimal(score)) for score, vector in CVSS4_AT.items()],
])
def test_cvss_scores_are_computed_from_the_vector(vector: str, score: Decimal) -> None:
    assert cvss_base_score(vector) == score


@pytest.mark.parametrize("vector", [
    "", "9.8", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:4.0/AV:N", "CVSS:2.0/AV:N/AC:L/Au:N/C:C/I:C/A:C",
])
def test_invalid_vectors_are_refused(vector: str) -> None:
    with pytest.raises(InvalidVector):
        cvss_base_score(vector)


BASE_4 = CVSS4_AT["9.3"]
BASE_3 = CVSS_AT["9.0"]


@pytest.mark.parametrize(("vector", "named"), [
    (f"{BASE_4}/MVC:N/MVI:N/MVA:N", "MVC, MVI, MVA"),  # the package scores this 0.0
    (f"{BASE_4}/E:U", "E"),                             # threat: 8.1
    (f"{BASE_4}/CR:L/IR:L/AR:L", "CR, IR, AR"),         # environmental requirements: 8.9
    (f"{BASE_4}/S:P/AU:Y", "S, AU"),                    # supplemental
    (f"{BASE_4}/E:X", "E"),                             # even "not defined"
    (f"{BASE_3}/E:U/RL:O/RC:U", "E, RL, RC"),           # temporal
    (f"{BASE_3}/MAV:P/MC:N", "MAV, MC"),                # environmental
    (f"{BASE_3}/CR:X", "CR"),
])
def test_only_base_vectors_are_scored(vector: str, named: str) -> None:
    with pytest.raises(InvalidVector, match=rf"^{named}: not CVSS (3\.1|4\.0) base metrics"):
        cvss_base_score(vector)


@pytest.mark.parametrize(("score", "penalty", "due_days"), [
    ("6.9", 0, 90), ("7.0", 5, 30), ("8.9", 5, 30), ("9.0", 10, 7), ("10.0", 10, 7), ("0.0", 0, 90),
])
def test_cvss_boundaries(score: str, penalty: int, due_days: int) -> None:
    assert RULES.penalty(Decimal(score)) == penalty
    assert RULES.finding_due(Decimal(score)) == timedelta(days=due_days)


@pytest.mark.parametrize(("score", "tier", "modifier"), [
    (100, RiskTier.A, -15), (85, RiskTier.A, -15), (84, RiskTier.B, 0), (70, RiskTier.B, 0),
    (69, RiskTier.C, 20), (50, RiskTier.C, 20), (49, RiskTier.D, 50), (0, RiskTier.D, 50),
])
def test_tier_and_modifier_boundaries(score: int, tier: RiskTier, modifier: int) -> None:
    assert RULES.tier(score) is tier
    assert RULES.modifier(tier) == modifier


@pytest.mark.parametrize(("in_place", "findings", "score", "tier"), [
    (100, [], 100, RiskTier.A),
    (90, ["7.0"], 85, RiskTier.A),           # 90 - 5: exactly A
    (90, ["9.0"], 80, RiskTier.B),           # 90 - 10
    (85, ["6.9"], 85, RiskTier.A),           # below 7.0 costs nothing
    (90, ["6.9", "7.0"], 85, RiskTier.A),
    (85, ["7.0"], 80, RiskTier.B),
    (75, ["7.0"], 70, RiskTier.B),           # exactly B
    (75, ["8.9"], 70, RiskTier.B),
    (75, ["9.0"], 65, RiskTier.C),
    (70, ["7.0"], 65, RiskTier.C),
    (60, ["9.0"], 50, RiskTier.C),           # exactly C
    (55, ["7.0"], 50, RiskTier.C),
    (55, ["9.0"], 45, RiskTier.D),
    (50, ["7.0"], 45, RiskTier.D),
    (10, ["9.0", "9.0"], 0, RiskTier.D),     # floors at 0
    (0, [], 0, RiskTier.D),
])
def test_score_and_tier_of_an_assessment(in_place: int, findings: list[str], score: int,
                                         tier: RiskTier) -> None:
    outcome = RULES.assess(controls_worth(in_place), [finding(s) for s in findings], AT)
    assert (outcome.score, outcome.tier) == (score, tier)
    assert outcome.premium_modifier_percent == {RiskTier.A: -15, RiskTier.B: 0,
                                                RiskTier.C: 20, RiskTier.D: 50}[tier]
    assert outcome.referred_to_underwriter is (tier is RiskTier.D)


def test_closed_findings_cost_nothing_and_need_no_remediation() -> None:
    outcome = RULES.assess(set(Control), [finding("9.0", open=False)], AT)
    assert (outcome.score, outcome.items) == (100, [])


def test_the_plan_has_every_missing_control_and_every_open_finding_with_its_due_date() -> None:
    in_place = set(Control) - {Control.mfa_remote_access, Control.offline_backups_tested}
    outcome = RULES.assess(in_place, [finding("9.0"), finding("8.9"), finding("7.0"),
                                      finding("6.9")], AT)
    missing = {(i.control, i.due_at) for i in outcome.items
               if i.source is RemediationSource.missing_control}
    assert missing == {(Control.mfa_remote_access, AT + timedelta(days=90)),
                       (Control.offline_backups_tested, AT + timedelta(days=90))}
    dues = sorted((i.cvss_score, i.due_at - AT) for i in outcome.items
                  if i.source is RemediationSource.finding)
    assert dues == [(Decimal("6.9"), timedelta(days=90)), (Decimal("7.0"), timedelta(days=30)),
                    (Decimal("8.9"), timedelta(days=30)), (Decimal("9.0"), timedelta(days=7))]
    assert outcome.score == 70 - 10 - 5 - 5


def test_the_rules_are_configurable() -> None:
    rules = RiskSettings(tier_a_from=90, modifier_a_percent=-20, exposure_due_hours=24).rules()
    assert rules.tier(89) is RiskTier.B
    assert rules.modifier(RiskTier.A) == -20
    assert rules.exposure_due == timedelta(hours=24)


def test_every_attack_vector_maps_to_controls() -> None:
    assert set(GUARDING_CONTROLS) == set(AttackVector)
    assert all(GUARDING_CONTROLS[v] for v in AttackVector if v is not AttackVector.other)
