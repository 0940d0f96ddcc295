"""Pre-aggregated experience: per cell of a grouping, the counts and sums its figures need,
the organisations it covers (with how many of their claims or exposure rows are in it), all
of them and the live event stream's apart (privacy.py counts both), and its paid and incurred
amounts kept sorted (for the median and p90).

A claim or a policy's exposure is added once and can be taken out again (its old facts) when
it changes, so a change costs a few operations per grouping, never a pass over the book; a
grouping is built in one pass the first time it is asked for. Exposure is valued at the
aggregates' valuation (the time in force before it); moving the valuation on takes out and
puts back only the rows in force in between."""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.insights.models import Source

POLICY_DIMENSIONS = ("industry", "region", "size_band", "period", "source")
DIMENSIONS = ("industry", "region", "size_band", "category", "attack_vector", "period",
              "source")


@dataclass(frozen=True)
class ClaimFacts:
    """One claim with everything a cell needs (amounts in cents, durations in microseconds)."""

    org_id: str
    dimensions: Mapping[str, str]
    paid: int
    incurred: int
    case_reserve: int
    to_dispatch: int | None
    to_containment: int | None
    to_payment: int | None
    outage_seconds: int | None


@dataclass(frozen=True)
class ExposureFacts:
    """A policy's time in force within one calendar quarter: `seconds` from `start`."""

    org_id: str
    dimensions: Mapping[str, str]
    seconds: int
    annual_premium: int
    start: datetime

    def valued_at(self, valuation: datetime) -> ExposureFacts | None:
        """The row as far as it runs before `valuation`: none if it starts later."""
        if self.start >= valuation:
            return None
        elapsed = int((valuation - self.start).total_seconds())
        return self if elapsed >= self.seconds else replace(self, seconds=elapsed)


@dataclass
class Mean:
    """Σ and count of the known values (a mean without the values)."""

    total: int = 0
    count: int = 0

    @classmethod
    def of(cls, values: Iterable[int | None]) -> Mean:
        known = [value for value in values if value is not None]
        return cls(sum(known), len(known))

    def add(self, value: int | None, sign: int) -> None:
        if value is not None:
            self.total += sign * value
            self.count += sign


def _change_sorted(values: list[int], value: int, sign: int) -> None:
    if sign > 0:
        bisect.insort(values, value)
    else:
        del values[bisect.bisect_left(values, value)]


def _count(organisations: Counter[str], org_id: str, sign: int) -> None:
    organisations[org_id] += sign
    if not organisations[org_id]:
        del organisations[org_id]


def _live(facts: ClaimFacts | ExposureFacts) -> bool:
    return facts.dimensions["source"] == Source.live


@dataclass
class ClaimTotals:
    """One cell's claims: amounts > 0 only in the sorted lists (severity is over those)."""

    organisations: Counter[str] = field(default_factory=Counter)
    live_organisations: Counter[str] = field(default_factory=Counter)
    claims: int = 0
    paid_total: int = 0
    incurred_total: int = 0
    paid_positive: list[int] = field(default_factory=list)
    incurred_positive: list[int] = field(default_factory=list)
    case_reserve: int = 0
    to_dispatch: Mean = field(default_factory=Mean)
    to_containment: Mean = field(default_factory=Mean)
    to_payment: Mean = field(default_factory=Mean)
    outage_seconds: Mean = field(default_factory=Mean)

    @classmethod
    def of(cls, claims: Sequence[ClaimFacts]) -> ClaimTotals:
        """A cell's totals in one pass over its claims (sorting once)."""
        return cls(organisations=Counter(claim.org_id for claim in claims),
                   live_organisations=Counter(claim.org_id for claim in claims if _live(claim)),
                   claims=len(claims),
                   paid_total=sum(claim.paid for claim in claims),
                   incurred_total=sum(claim.incurred for claim in claims),
                   paid_positive=sorted(claim.paid for claim in claims if claim.paid > 0),
                   incurred_positive=sorted(claim.incurred for claim in claims
                                            if claim.incurred > 0),
                   case_reserve=sum(claim.case_reserve for claim in claims),
                   to_dispatch=Mean.of(claim.to_dispatch for claim in claims),
                   to_containment=Mean.of(claim.to_containment for claim in claims),
                   to_payment=Mean.of(claim.to_payment for claim in claims),
                   outage_seconds=Mean.of(claim.outage_seconds for claim in claims))

    def add(self, claim: ClaimFacts, sign: int) -> None:
        _count(self.organisations, claim.org_id, sign)
        if _live(claim):
            _count(self.live_organisations, claim.org_id, sign)
        self.claims += sign
        self.paid_total += sign * claim.paid
        self.incurred_total += sign * claim.incurred
        for values, amount in ((self.paid_positive, claim.paid),
                               (self.incurred_positive, claim.incurred)):
            if amount > 0:
                _change_sorted(values, amount, sign)
        self.case_reserve += sign * claim.case_reserve
        self.to_dispatch.add(claim.to_dispatch, sign)
        self.to_containment.add(claim.to_containment, sign)
        self.to_payment.add(claim.to_payment, sign)
        self.outage_seconds.add(claim.outage_seconds, sign)


@dataclass
class ExposureTotals:
    organisations: Counter[str] = field(default_factory=Counter)
    live_organisations: Counter[str] = field(default_factory=Counter)
    seconds: int = 0
    premium_seconds: int = 0  # Σ annual premium (cents) x seconds in force

    @classmethod
    def of(cls, rows: Sequence[ExposureFacts]) -> ExposureTotals:
        return cls(organisations=Counter(row.org_id for row in rows),
                   live_organisations=Counter(row.org_id for row in rows if _live(row)),
                   seconds=sum(row.seconds for row in rows),
                   premium_seconds=sum(row.annual_premium * row.seconds for row in rows))

    def add(self, exposure: ExposureFacts, sign: int) -> None:
        _count(self.organisations, exposure.org_id, sign)
        if _live(exposure):
            _count(self.live_organisations, exposure.org_id, sign)
        self.seconds += sign * exposure.seconds
        self.premium_seconds += sign * exposure.annual_premium * exposure.seconds


class Grouping:
    """The cells of one grouping: claims by all its dimensions, exposure by its policy
    dimensions (exposure has no category or vector). Empty cells are dropped."""

    def __init__(self, dimensions: Sequence[str], claims: Iterable[ClaimFacts] = (),
                 exposures: Iterable[ExposureFacts] = ()) -> None:
        self.dimensions = tuple(dimensions)
        self.exposure_dimensions = tuple(d for d in self.dimensions if d in POLICY_DIMENSIONS)
        by_claims: dict[tuple[str, ...], list[ClaimFacts]] = defaultdict(list)
        for claim in claims:
            by_claims[tuple(claim.dimensions[d] for d in self.dimensions)].append(claim)
        by_exposure: dict[tuple[str, ...], list[ExposureFacts]] = defaultdict(list)
        for exposure in exposures:
            by_exposure[tuple(exposure.dimensions[d] for d in self.exposure_dimensions)
                        ].append(exposure)
        self.claims = {key: ClaimTotals.of(cell) for key, cell in by_claims.items()}
        self.exposures = {key: ExposureTotals.of(cell) for key, cell in by_exposure.items()}

    def add_claim(self, claim: ClaimFacts, sign: int) -> None:
        key = tuple(claim.dimensions[d] for d in self.dimensions)
        totals = self.claims.setdefault(key, ClaimTotals())
        totals.add(claim, sign)
        if not totals.claims:
            del self.claims[key]

    def add_exposure(self, exposure: ExposureFacts, sign: int) -> None:
        key = tuple(exposure.dimensions[d] for d in self.exposure_dimensions)
        totals = self.exposures.setdefault(key, ExposureTotals())
        totals.add(exposure, sign)
        if not totals.organisations:
            del self.exposures[key]


MAX_GROUPINGS = 16
"""Groupings kept (the most recently asked for): each holds about the book's size again, and
there are 128 of them; one dropped is built again when next asked for."""


class Aggregates:
    """Every claim's and policy's facts by id, and the groupings asked for lately, kept up to
    date as facts are replaced (a grouping is built from the facts when it is asked for and
    not kept); the groupings hold the exposure valued at `valuation`."""

    def __init__(self, valuation: datetime, kept: int = MAX_GROUPINGS) -> None:
        self.valuation = valuation
        self._kept = kept
        self._claims: dict[object, ClaimFacts] = {}
        self._exposures: dict[str, tuple[ExposureFacts, ...]] = {}
        self._groupings: OrderedDict[tuple[str, ...], Grouping] = OrderedDict()

    @classmethod
    def of(cls, claims: Iterable[ClaimFacts], exposure: Iterable[ExposureFacts],
           valuation: datetime) -> Aggregates:
        """Aggregates of plain lists of facts (each claim its own, exposure as one policy)."""
        aggregates = cls(valuation)
        aggregates._claims = dict(enumerate(claims))
        aggregates._exposures = {"": tuple(exposure)}
        return aggregates

    def grouping(self, dimensions: Sequence[str]) -> Grouping:
        key = tuple(dimensions)
        if key in self._groupings:
            self._groupings.move_to_end(key)
        else:
            self._groupings[key] = Grouping(key, self._claims.values(),
                                            self._valued(row for rows in self._exposures.values()
                                                         for row in rows))
            if len(self._groupings) > self._kept:
                self._groupings.popitem(last=False)
        return self._groupings[key]

    def replace_claim(self, claim_id: object, claim: ClaimFacts) -> None:
        old = self._claims.get(claim_id)
        if old == claim:
            return
        for grouping in self._groupings.values():
            if old is not None:
                grouping.add_claim(old, -1)
            grouping.add_claim(claim, 1)
        self._claims[claim_id] = claim

    def replace_exposure(self, policy_number: str, rows: Sequence[ExposureFacts]) -> None:
        old = self._exposures.get(policy_number, ())
        new = tuple(rows)
        if old == new:
            return
        self._change_exposure(tuple(self._valued(old)), tuple(self._valued(new)))
        self._exposures[policy_number] = new

    def revalue(self, valuation: datetime) -> None:
        """Value the exposure at another time: the rows in force in between change."""
        rows = [row for policy_rows in self._exposures.values() for row in policy_rows]
        before = [row.valued_at(self.valuation) for row in rows]
        self.valuation = valuation
        changed = [(old, new) for old, new in zip(before, (row.valued_at(valuation)
                                                             for row in rows), strict=True)
                   if old is not new]
        self._change_exposure(tuple(old for old, _ in changed if old is not None),
                              tuple(new for _, new in changed if new is not None))

    def _valued(self, rows: Iterable[ExposureFacts]) -> Iterator[ExposureFacts]:
        for row in rows:
            valued = row.valued_at(self.valuation)
            if valued is not None:
                yield valued

    def _change_exposure(self, old: Sequence[ExposureFacts], new: Sequence[ExposureFacts]
                         ) -> None:
        for grouping in self._groupings.values():
            for exposure in old:
                grouping.add_exposure(exposure, -1)
            for exposure in new:
                grouping.add_exposure(exposure, 1)
