"""Loss-experience statistics over any slice of the read model (definitions: docs/insights.md).

A query groups by some dimensions and filters on others; it is computed on the grouping of
both (a filter is a group the caller keeps), suppressed there, and only then filtered, so the
same cells are hidden whatever the filter: two queries never differ by a hidden cell. A cell
by category or attack vector shows the exposure of its policy dimensions only where that
grouping publishes it.

Exposure and earned premium run up to the valuation, the start of the query's UTC day: a
book still in force has none in the quarters to come, and the current quarter's so far.

Amounts are summed as integer cents and divided once, so every figure is exact up to its
final rounding (half up)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.aggregates import (
    DIMENSIONS,
    Aggregates,
    ClaimFacts,
    ClaimTotals,
    ExposureFacts,
    ExposureTotals,
    Mean,
)
from services.insights.models import (
    ClaimRecord,
    Exposure,
    IncidentRecord,
    PolicyRecord,
    ReadModelVersion,
)
from services.insights.privacy import Cell, suppress
from services.insights.service import (
    UNKNOWN,
    VERSION_ROW,
    case_reserve,
    quarter_of,
    quarter_start,
)

YEAR_SECONDS = 365 * 24 * 3600
HOUR_MICROSECONDS = 3600 * 1_000_000
CENT = Decimal("0.01")
FOUR_PLACES = Decimal("0.0001")


def valuation_of(now: datetime) -> datetime:
    """The valuation of a query made at `now`: the start of its UTC day. A valuation date, not
    an instant, so an answer holds for the day (kept until the book changes) and the exposure
    is valued again once a day, not on every query."""
    return datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)


def _cents(amount: Decimal | None) -> int:
    return int(amount * 100) if amount is not None else 0


def _micros(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return (end - start) // timedelta(microseconds=1)


async def load_claims(session: AsyncSession, since: int | None) -> dict[Any, ClaimFacts]:
    """Every claim's facts, or (`since` a version) those of the claims whose row, incident or
    policy changed after it: the stamped rows are found by their indexes."""
    query = (select(ClaimRecord.claim_id, ClaimRecord.org_id, ClaimRecord.reserve_basis,
                    ClaimRecord.paid, ClaimRecord.closed_at, ClaimRecord.first_paid_at,
                    PolicyRecord.industry, PolicyRecord.region, PolicyRecord.size_band,
                    IncidentRecord.category, IncidentRecord.attack_vector,
                    IncidentRecord.occurred_at, IncidentRecord.reported_at,
                    IncidentRecord.first_dispatched_at, IncidentRecord.contained_at,
                    IncidentRecord.outage_seconds, ClaimRecord.source)
             .outerjoin(IncidentRecord, IncidentRecord.incident_id == ClaimRecord.incident_id)
             .outerjoin(PolicyRecord, PolicyRecord.policy_number == ClaimRecord.policy_number))
    if since is not None:
        changed = union(
            select(ClaimRecord.claim_id).where(ClaimRecord.changed_in > since),
            select(ClaimRecord.claim_id)
            .join(IncidentRecord, IncidentRecord.incident_id == ClaimRecord.incident_id)
            .where(IncidentRecord.changed_in > since),
            select(ClaimRecord.claim_id)
            .join(PolicyRecord, PolicyRecord.policy_number == ClaimRecord.policy_number)
            .where(PolicyRecord.changed_in > since))
        query = query.where(ClaimRecord.claim_id.in_(changed))
    facts = {}
    for (claim_id, org_id, basis, paid_amount, closed_at, first_paid_at, industry, region, band,
         category, vector, occurred_at, reported_at, dispatched_at, contained_at,
         outage, source) in await session.execute(query):
        reserve = _cents(case_reserve(basis, paid_amount, closed_at is not None))
        paid = _cents(paid_amount)
        facts[claim_id] = ClaimFacts(
            org_id=org_id,
            dimensions={"industry": industry or UNKNOWN, "region": region or UNKNOWN,
                        "size_band": band or UNKNOWN, "category": category or UNKNOWN,
                        "attack_vector": vector or UNKNOWN,
                        "period": quarter_of(occurred_at) if occurred_at else UNKNOWN,
                        "source": source},
            paid=paid, incurred=paid + reserve, case_reserve=reserve,
            to_dispatch=_micros(reported_at, dispatched_at),
            to_containment=_micros(reported_at, contained_at),
            to_payment=_micros(reported_at, first_paid_at),
            outage_seconds=outage,
        )
    return facts


async def load_exposure(session: AsyncSession, since: int | None
                        ) -> dict[str, list[ExposureFacts]]:
    """Every policy's exposure rows, or those of the policies changed after `since` (a
    changed policy without rows maps to none); a row starts at its quarter's start or its
    policy's, the later."""
    query = (select(PolicyRecord.policy_number, Exposure.org_id, Exposure.quarter,
                    Exposure.seconds, PolicyRecord.industry, PolicyRecord.region,
                    PolicyRecord.size_band, PolicyRecord.annual_premium, PolicyRecord.source,
                    PolicyRecord.period_start)
             .outerjoin(Exposure, Exposure.policy_number == PolicyRecord.policy_number))
    if since is not None:
        query = query.where(PolicyRecord.changed_in > since)
    facts: dict[str, list[ExposureFacts]] = defaultdict(list)
    for (policy_number, org_id, quarter, seconds, industry, region, band,
         premium, source, period_start) in await session.execute(query):
        rows = facts[policy_number]
        if quarter is not None:
            rows.append(ExposureFacts(org_id=org_id, seconds=seconds,
                                      annual_premium=_cents(premium),
                                      start=max(period_start, quarter_start(quarter)),
                                      dimensions={"industry": industry, "region": region,
                                                  "size_band": band, "period": quarter,
                                                  "source": source}))
    return facts


MAX_ANSWERS = 256
"""Answers kept: the least recently asked are forgotten first. A filter takes any text, so a
reader looping over made-up values would otherwise grow the process without bound."""


class ExperienceCache:
    """The read model pre-aggregated in memory (`Aggregates`), and the answers computed from
    it, kept up to date with what changed: a query reads the version row (one primary-key
    look-up) and, if it moved, only the rows stamped since (indexed), and applies them to the
    aggregates; a query reads aggregates, never the whole book. After a rebuild (deleted rows
    carry no stamp) the aggregates start again from the whole read model, as at start-up.
    The version is read before the rows, so the aggregates are never labelled newer than they
    are (rows of a later version read early are read again, and replace themselves). A new
    valuation date values the exposure again and forgets the answers."""

    def __init__(self) -> None:
        self._seen: tuple[int, int] | None = None  # (rebuilds, version) of the aggregates
        self._aggregates: Aggregates | None = None
        self._answers: OrderedDict[tuple[Any, ...], list[dict[str, Any]]] = OrderedDict()
        self._lock = asyncio.Lock()

    @property
    def seen(self) -> tuple[int, int] | None:
        """(rebuilds, version) of the read model the aggregates hold; none before a load."""
        return self._seen

    def answered(self, group_by: Sequence[str], filters: Mapping[str, str], k: int) -> bool:
        """Whether this query's answer is kept for the version and valuation last seen."""
        return self._key(group_by, filters, k) in self._answers

    @staticmethod
    def _key(group_by: Sequence[str], filters: Mapping[str, str], k: int) -> tuple[Any, ...]:
        return (tuple(group_by), tuple(sorted(filters.items())), k)

    async def experience(self, session: AsyncSession, group_by: Sequence[str],
                         filters: Mapping[str, str], k: int, valuation: datetime
                         ) -> list[dict[str, Any]]:
        async with self._lock:
            rebuilds, version = (await session.execute(
                select(ReadModelVersion.rebuilds, ReadModelVersion.version)
                .where(ReadModelVersion.id == VERSION_ROW))).one()
            aggregates = self._aggregates
            if aggregates is None or self._seen is None or self._seen[0] != rebuilds:
                aggregates = self._aggregates = Aggregates(valuation)
                await self._catch_up(aggregates, session, None)
            elif self._seen[1] != version:
                await self._catch_up(aggregates, session, self._seen[1])
            if self._seen != (rebuilds, version):
                self._seen = (rebuilds, version)
                self._answers.clear()
            if aggregates.valuation != valuation:  # once a day: off the event loop
                await asyncio.to_thread(aggregates.revalue, valuation)
                self._answers.clear()
            key = self._key(group_by, filters, k)
            if key in self._answers:
                self._answers.move_to_end(key)
            else:
                # Off the event loop (a grouping's first answer aggregates the whole book), so
                # health checks are answered meanwhile; the lock keeps the aggregates still.
                self._answers[key] = await asyncio.to_thread(published, aggregates,
                                                             group_by, filters, k)
                while len(self._answers) > MAX_ANSWERS:
                    self._answers.popitem(last=False)
            return self._answers[key]

    @staticmethod
    async def _catch_up(aggregates: Aggregates, session: AsyncSession, since: int | None
                        ) -> None:
        for policy_number, rows in (await load_exposure(session, since)).items():
            aggregates.replace_exposure(policy_number, rows)
        for claim_id, claim in (await load_claims(session, since)).items():
            aggregates.replace_claim(claim_id, claim)


def experience(claims: Sequence[ClaimFacts], exposure: Sequence[ExposureFacts],
               group_by: Sequence[str], filters: Mapping[str, str], k: int,
               valuation: datetime) -> list[dict[str, Any]]:
    """The published cells of a query over plain facts, the exposure valued at `valuation`."""
    return published(Aggregates.of(claims, exposure, valuation), group_by, filters, k)


def published(aggregates: Aggregates, group_by: Sequence[str], filters: Mapping[str, str],
              k: int) -> list[dict[str, Any]]:
    """The published cells of a query, in key order; hidden cells carry no figures."""
    cells = aggregates.grouping(tuple(d for d in DIMENSIONS if d in group_by or d in filters))
    by_claims = cells.dimensions != cells.exposure_dimensions  # category or vector
    # The claim figures rest on the organisations that claimed, the exposure figures on those
    # exposed; by category or vector the exposure shown is its parent's, withheld below where
    # the parent's own grouping hides it.
    keys = cells.claims.keys() if by_claims else cells.claims.keys() | cells.exposures.keys()
    privacy = [Cell(key, (*_covers(cells.claims.get(key)),
                          *_covers(None if by_claims else cells.exposures.get(key))))
               for key in keys]
    suppress(privacy, k)
    withheld = set()  # parents whose exposure their own grouping hides: not shown here either
    if by_claims:
        withheld = {tuple(parent["dimensions"][d] for d in cells.exposure_dimensions)
                    for parent in published(aggregates, cells.exposure_dimensions, {}, k)
                    if parent["suppressed"]}
    answer = []
    for entry in sorted(privacy, key=lambda c: c.key):
        values = dict(zip(cells.dimensions, entry.key, strict=True))
        if any(values[d] != value for d, value in filters.items()):
            continue
        shown = {d: values[d] for d in cells.dimensions if d in group_by}
        parent_key = tuple(values[d] for d in cells.exposure_dimensions)
        figures = None if entry.suppressed else _figures(
            cells.claims.get(entry.key) or ClaimTotals(),
            None if parent_key in withheld else cells.exposures.get(parent_key))
        answer.append({"dimensions": shown, "suppressed": entry.suppressed, "figures": figures})
    return answer


NO_ONE: frozenset[str] = frozenset()


def _covers(totals: ClaimTotals | ExposureTotals | None
            ) -> tuple[AbstractSet[str], AbstractSet[str]]:
    """The organisations behind a cell's figures of one kind: all of them, and the live
    event stream's (views, not copies)."""
    if totals is None:
        return NO_ONE, NO_ONE
    return totals.organisations.keys(), totals.live_organisations.keys()


def _figures(claims: ClaimTotals, exposure: ExposureTotals | None) -> dict[str, Any]:
    """A published cell's figures; without `exposure` (unknown, or withheld) the figures
    that need it are none."""
    seconds = exposure.seconds if exposure else 0
    earned = _round(Decimal(exposure.premium_seconds) / YEAR_SECONDS, Decimal(1)) \
        if exposure else Decimal(0)
    return {
        "exposure_policy_years": _round(Decimal(seconds) / YEAR_SECONDS, FOUR_PLACES)
        if exposure else None,
        "earned_premium": _money(earned) if exposure else None,
        "claims": claims.claims,
        "frequency_per_100_policy_years":
            _round(Decimal(claims.claims * 100 * YEAR_SECONDS) / seconds, FOUR_PLACES)
            if seconds else None,
        "paid": _severity(claims.paid_total, claims.paid_positive),
        "incurred": _severity(claims.incurred_total, claims.incurred_positive),
        "case_reserves": _money(Decimal(claims.case_reserve)),
        "loss_ratio": _round(Decimal(claims.incurred_total) / earned, FOUR_PLACES) if earned else None,
        "mean_hours_report_to_dispatch": _mean_hours(claims.to_dispatch),
        "mean_hours_report_to_containment": _mean_hours(claims.to_containment),
        "mean_hours_report_to_payment": _mean_hours(claims.to_payment),
        "bi_hours_total": _round(Decimal(claims.outage_seconds.total) / 3600, CENT)
        if claims.outage_seconds.count else None,
        "bi_hours_mean": _mean_hours(claims.outage_seconds, unit=1_000_000),
    }


def _severity(total: int, positive: Sequence[int]) -> dict[str, Any]:
    """Total over every claim; mean, median and p90 over the claims with an amount (nearest
    rank: the smallest amount that at least p of them do not exceed). `positive` is sorted."""
    if not positive:
        return {"total": _money(Decimal(total)), "claims": 0, "mean": None,
                "median": None, "p90": None}
    return {"total": _money(Decimal(total)), "claims": len(positive),
            "mean": _money(_round(Decimal(total) / len(positive), Decimal(1))),
            "median": _money(Decimal(nearest_rank(positive, 50))),
            "p90": _money(Decimal(nearest_rank(positive, 90)))}


def nearest_rank(ordered: Sequence[int], percent: int) -> int:
    """The nearest-rank percentile of an ascending list: the value at rank ⌈p/100 x n⌉."""
    rank = -(-percent * len(ordered) // 100)
    return ordered[max(rank, 1) - 1]


def _mean_hours(values: Mean, unit: int = 1) -> Decimal | None:
    """The mean in hours of values in microseconds (or in 1/`unit` of one: seconds)."""
    if not values.count:
        return None
    return _round(Decimal(values.total * unit) / (values.count * HOUR_MICROSECONDS), CENT)


def _round(value: Decimal, places: Decimal) -> Decimal:
    return value.quantize(places, rounding=ROUND_HALF_UP)


def _money(cents: Decimal) -> Decimal:
    """Cents (already whole) as an amount."""
    return (cents / 100).quantize(CENT)
