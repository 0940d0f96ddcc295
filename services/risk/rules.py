"""The risk rulebook (docs/risk.md) as pure functions: score, tier, premium modifier and
remediation plan of an assessment, and the due date of each remediation item.

CVSS base scores are computed here from the vector with the `cvss` package; a client's own
score is never read. Only base vectors are scored: the package's CVSS 4.0 `base_score` reads a
vector's threat and environmental metrics too (with them a vendor could lower a finding's
score, its penalty and its urgency), so for both versions alike a vector with any metric
beyond the base ones is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError

from shared.controls import Control
from shared.events import RemediationSource, RiskTier


@dataclass(frozen=True)
class CvssVersion:
    """A CVSS version risk scores: its parser, its base metrics and what its others are."""

    name: str
    parser: type[CVSS3] | type[CVSS4]
    base_metrics: frozenset[str]
    other_metrics: str


CVSS_VERSIONS = {
    "CVSS:3.1/": CvssVersion("CVSS 3.1", CVSS3, frozenset(
        ("AV", "AC", "PR", "UI", "S", "C", "I", "A")), "temporal and environmental"),
    "CVSS:4.0/": CvssVersion("CVSS 4.0", CVSS4, frozenset(
        ("AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA")),
        "threat, environmental and supplemental"),
}
TIERS = (RiskTier.A, RiskTier.B, RiskTier.C, RiskTier.D)


class InvalidVector(ValueError):
    """Not a CVSS v3.1 or v4.0 base vector."""


def cvss_base_score(vector: str) -> Decimal:
    """The base score of a CVSS v3.1 or v4.0 base vector, to one decimal."""
    version = next((v for prefix, v in CVSS_VERSIONS.items() if vector.startswith(prefix)),
                   None)
    if version is None:
        raise InvalidVector("not a CVSS v3.1 (CVSS:3.1/...) or v4.0 (CVSS:4.0/...) vector")
    try:
        score = version.parser(vector).base_score
    except CVSSError as exc:
        raise InvalidVector(str(exc)) from exc
    # parsed: every field is a known `metric:value`, each metric once
    beyond_base = [field.split(":")[0] for field in vector.split("/")[1:]
                   if field.split(":")[0] not in version.base_metrics]
    if beyond_base:
        raise InvalidVector(
            f"{', '.join(beyond_base)}: not {version.name} base metrics; send the base vector "
            f"only (risk scores the base metrics, not the {version.other_metrics} ones)")
    return Decimal(str(score)).quantize(Decimal("0.1"))


@dataclass(frozen=True)
class ScoredFinding:
    title: str
    control: Control
    cvss_vector: str
    cvss_score: Decimal
    open: bool


@dataclass(frozen=True)
class PlannedItem:
    control: Control
    source: RemediationSource
    title: str
    cvss_vector: str | None
    cvss_score: Decimal | None
    due_at: datetime


@dataclass(frozen=True)
class Outcome:
    score: int
    tier: RiskTier
    premium_modifier_percent: int
    referred_to_underwriter: bool
    items: list[PlannedItem]


@dataclass(frozen=True)
class RiskRules:
    weights: Mapping[Control, int]
    critical_cvss: float
    high_cvss: float
    critical_penalty: int
    high_penalty: int
    tier_floors: tuple[int, int, int]
    """The lowest score of tiers A, B and C; anything below C's is D."""
    modifiers: tuple[int, int, int, int]
    """Premium modifier in percent of tiers A, B, C, D."""
    critical_due: timedelta
    high_due: timedelta
    other_due: timedelta
    exposure_due: timedelta
    reminder_lead: timedelta

    def penalty(self, cvss_score: Decimal) -> int:
        if cvss_score >= Decimal(str(self.critical_cvss)):
            return self.critical_penalty
        if cvss_score >= Decimal(str(self.high_cvss)):
            return self.high_penalty
        return 0

    def score(self, in_place: Iterable[Control], findings: Iterable[ScoredFinding]) -> int:
        earned = sum(self.weights.get(control, 0) for control in set(in_place))
        lost = sum(self.penalty(f.cvss_score) for f in findings if f.open)
        return max(0, earned - lost)

    def tier(self, score: int) -> RiskTier:
        for tier, floor in zip(TIERS, self.tier_floors, strict=False):
            if score >= floor:
                return tier
        return RiskTier.D

    def modifier(self, tier: RiskTier) -> int:
        return self.modifiers[TIERS.index(tier)]

    def finding_due(self, cvss_score: Decimal) -> timedelta:
        if cvss_score >= Decimal(str(self.critical_cvss)):
            return self.critical_due
        if cvss_score >= Decimal(str(self.high_cvss)):
            return self.high_due
        return self.other_due

    def assess(self, in_place: Iterable[Control], findings: list[ScoredFinding],
               at: datetime) -> Outcome:
        """Score, tier, modifier and the plan: every control not in place (due in 90 days) and
        every open finding (7, 30 or 90 days by its CVSS score)."""
        in_place = set(in_place)
        score = self.score(in_place, findings)
        tier = self.tier(score)
        items = [PlannedItem(control, RemediationSource.missing_control,
                             f"Put {control.value} in place", None, None,
                             at + self.other_due)
                 for control in Control if control not in in_place]
        items += [PlannedItem(f.control, RemediationSource.finding, f.title, f.cvss_vector,
                              f.cvss_score, at + self.finding_due(f.cvss_score))
                  for f in findings if f.open]
        return Outcome(score=score, tier=tier, premium_modifier_percent=self.modifier(tier),
                       referred_to_underwriter=tier is RiskTier.D, items=items)
