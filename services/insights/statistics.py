"""Loss-experience statistics over any slice of the read model (definitions: docs/insights.md).

A query groups by some dimensions and filters on others; it is computed on the grouping of
both (a filter is a group the caller keeps), suppressed there, and only then filtered, so the
same cells are hidden whatever the filter: two queries never differ by a hidden cell. A cell
by category or attack vector shows the exposure of its policy dimensions only where that
grouping publishes it.

Amounts are summed as integer cents and divided once, so every figure is exact up to its
final rounding (half up)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.models import (
    ClaimRecord,
    Exposure,
    IncidentRecord,
    PolicyRecord,
    ReadModelVersion,
)
from services.insights.privacy import Cell, suppress
from services.insights.service import UNKNOWN, VERSION_ROW, case_reserve, quarter_of

POLICY_DIMENSIONS = ("industry", "region", "size_band", "period")
CLAIM_DIMENSIONS = ("category", "attack_vector")
DIMENSIONS = ("industry", "region", "size_band", "category", "attack_vector", "period")
YEAR_SECONDS = 365 * 24 * 3600
HOUR_MICROSECONDS = 3600 * 1_000_000
CENT = Decimal("0.01")
FOUR_PLACES = Decimal("0.0001")


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
    org_id: str
    dimensions: Mapping[str, str]
    seconds: int
    annual_premium: int


@dataclass
class Accumulator:
    organisations: set[str] = field(default_factory=set)
    claims: list[ClaimFacts] = field(default_factory=list)
    seconds: int = 0
    premium_seconds: int = 0  # Σ annual premium (cents) x seconds in force


def _cents(amount: Decimal | None) -> int:
    return int(amount * 100) if amount is not None else 0


def _micros(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return (end - start) // timedelta(microseconds=1)


async def load_claims(session: AsyncSession) -> list[ClaimFacts]:
    rows = await session.execute(
        select(ClaimRecord.org_id, ClaimRecord.reserve_basis, ClaimRecord.paid,
               ClaimRecord.closed_at, ClaimRecord.first_paid_at, PolicyRecord.industry,
               PolicyRecord.region, PolicyRecord.size_band, IncidentRecord.category,
               IncidentRecord.attack_vector, IncidentRecord.occurred_at,
               IncidentRecord.reported_at, IncidentRecord.first_dispatched_at,
               IncidentRecord.contained_at, IncidentRecord.outage_seconds)
        .outerjoin(IncidentRecord, IncidentRecord.incident_id == ClaimRecord.incident_id)
        .outerjoin(PolicyRecord, PolicyRecord.policy_number == ClaimRecord.policy_number))
    facts = []
    for (org_id, basis, paid_amount, closed_at, first_paid_at, industry, region, band, category,
         vector, occurred_at, reported_at, dispatched_at, contained_at, outage) in rows:
        reserve = _cents(case_reserve(basis, paid_amount, closed_at is not None))
        paid = _cents(paid_amount)
        facts.append(ClaimFacts(
            org_id=org_id,
            dimensions={"industry": industry or UNKNOWN, "region": region or UNKNOWN,
                        "size_band": band or UNKNOWN, "category": category or UNKNOWN,
                        "attack_vector": vector or UNKNOWN,
                        "period": quarter_of(occurred_at) if occurred_at else UNKNOWN},
            paid=paid, incurred=paid + reserve, case_reserve=reserve,
            to_dispatch=_micros(reported_at, dispatched_at),
            to_containment=_micros(reported_at, contained_at),
            to_payment=_micros(reported_at, first_paid_at),
            outage_seconds=outage,
        ))
    return facts


async def load_exposure(session: AsyncSession) -> list[ExposureFacts]:
    rows = await session.execute(
        select(Exposure.org_id, Exposure.quarter, Exposure.seconds, PolicyRecord.industry,
               PolicyRecord.region, PolicyRecord.size_band, PolicyRecord.annual_premium)
        .join(PolicyRecord, PolicyRecord.policy_number == Exposure.policy_number))
    return [ExposureFacts(org_id=org_id, seconds=seconds, annual_premium=_cents(premium),
                          dimensions={"industry": industry, "region": region,
                                      "size_band": band, "period": quarter})
            for org_id, quarter, seconds, industry, region, band, premium in rows]


class ExperienceCache:
    """The read model's claims and exposure, and the answers computed from them, held in
    memory between changes: a query reads the version row (one primary-key look-up) and
    recomputes only if it moved. The version is read before the facts, so a copy is never
    labelled newer than it is."""

    def __init__(self) -> None:
        self._version: int | None = None
        self._facts: tuple[list[ClaimFacts], list[ExposureFacts]] = ([], [])
        self._answers: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def experience(self, session: AsyncSession, group_by: Sequence[str],
                         filters: Mapping[str, str], k: int) -> list[dict[str, Any]]:
        async with self._lock:
            version = await session.scalar(select(ReadModelVersion.version)
                                           .where(ReadModelVersion.id == VERSION_ROW))
            if version is None or version != self._version:
                self._facts = (await load_claims(session), await load_exposure(session))
                self._answers = {}
                self._version = version
            key = (tuple(group_by), tuple(sorted(filters.items())), k)
            if key not in self._answers:
                # Computed off the event loop, so health checks are answered meanwhile.
                self._answers[key] = await asyncio.to_thread(experience, *self._facts, group_by,
                                                             filters, k)
            return self._answers[key]


def experience(claims: Sequence[ClaimFacts], exposure: Sequence[ExposureFacts],
               group_by: Sequence[str], filters: Mapping[str, str], k: int
               ) -> list[dict[str, Any]]:
    """The published cells of a query, in key order; hidden cells carry no figures."""
    grouping = tuple(d for d in DIMENSIONS if d in group_by or d in filters)
    exposure_grouping = tuple(d for d in grouping if d in POLICY_DIMENSIONS)
    by_claims = grouping != exposure_grouping  # category or vector: cells are claims' cells
    cells: dict[tuple[str, ...], Accumulator] = defaultdict(Accumulator)
    exposures: dict[tuple[str, ...], Accumulator] = defaultdict(Accumulator)
    for item in exposure:
        parent = exposures[tuple(item.dimensions[d] for d in exposure_grouping)]
        parent.seconds += item.seconds
        parent.premium_seconds += item.annual_premium * item.seconds
        parent.organisations.add(item.org_id)
    if not by_claims:
        for key, parent in exposures.items():
            cells[key].organisations |= parent.organisations
    for claim in claims:
        cells[tuple(claim.dimensions[d] for d in grouping)].claims.append(claim)
    privacy = []
    for key, cell in cells.items():
        if cell.claims:  # claim figures are protected by the organisations that claimed
            cell.organisations = {claim.org_id for claim in cell.claims}
        privacy.append(Cell(key, frozenset(cell.organisations)))
    suppress(privacy, k)
    withheld = set()  # parents whose exposure their own grouping hides: not shown here either
    if by_claims:
        withheld = {tuple(parent["dimensions"][d] for d in exposure_grouping)
                    for parent in experience(claims, exposure, exposure_grouping, {}, k)
                    if parent["suppressed"]}
    published = []
    for entry in sorted(privacy, key=lambda c: c.key):
        values = dict(zip(grouping, entry.key, strict=True))
        if any(values[d] != value for d, value in filters.items()):
            continue
        shown = {d: values[d] for d in grouping if d in group_by}
        parent_key = tuple(values[d] for d in exposure_grouping)
        figures = None if entry.suppressed else _figures(
            cells[entry.key], None if parent_key in withheld else exposures.get(parent_key))
        published.append({"dimensions": shown, "suppressed": entry.suppressed,
                          "figures": figures})
    return published


def _figures(cell: Accumulator, exposure: Accumulator | None) -> dict[str, Any]:
    """A published cell's figures; without `exposure` (unknown, or withheld) the figures
    that need it are none."""
    seconds = exposure.seconds if exposure else 0
    earned = _round(Decimal(exposure.premium_seconds) / YEAR_SECONDS, Decimal(1)) \
        if exposure else Decimal(0)
    claims = cell.claims
    incurred = sum(claim.incurred for claim in claims)
    return {
        "exposure_policy_years": _round(Decimal(seconds) / YEAR_SECONDS, FOUR_PLACES)
        if exposure else None,
        "earned_premium": _money(earned) if exposure else None,
        "claims": len(claims),
        "frequency_per_100_policy_years":
            _round(Decimal(len(claims) * 100 * YEAR_SECONDS) / seconds, FOUR_PLACES)
            if seconds else None,
        "paid": _severity([claim.paid for claim in claims]),
        "incurred": _severity([claim.incurred for claim in claims]),
        "case_reserves": _money(Decimal(sum(claim.case_reserve for claim in claims))),
        "loss_ratio": _round(Decimal(incurred) / earned, FOUR_PLACES) if earned else None,
        "mean_hours_report_to_dispatch": _mean_hours(c.to_dispatch for c in claims),
        "mean_hours_report_to_containment": _mean_hours(c.to_containment for c in claims),
        "mean_hours_report_to_payment": _mean_hours(c.to_payment for c in claims),
        "bi_hours_total": _hours([c.outage_seconds for c in claims
                                  if c.outage_seconds is not None]),
        "bi_hours_mean": _mean_hours(c.outage_seconds * 1_000_000 for c in claims
                                     if c.outage_seconds is not None),
    }


def _severity(amounts: list[int]) -> dict[str, Any]:
    """Total over every claim; mean, median and p90 over the claims with an amount (nearest
    rank: the smallest amount that at least p of them do not exceed)."""
    positive = sorted(amount for amount in amounts if amount > 0)
    if not positive:
        return {"total": _money(Decimal(sum(amounts))), "claims": 0, "mean": None,
                "median": None, "p90": None}
    return {"total": _money(Decimal(sum(positive))), "claims": len(positive),
            "mean": _money(_round(Decimal(sum(positive)) / len(positive), Decimal(1))),
            "median": _money(Decimal(nearest_rank(positive, 50))),
            "p90": _money(Decimal(nearest_rank(positive, 90)))}


def nearest_rank(ordered: Sequence[int], percent: int) -> int:
    """The nearest-rank percentile of an ascending list: the value at rank ⌈p/100 x n⌉."""
    rank = -(-percent * len(ordered) // 100)
    return ordered[max(rank, 1) - 1]


def _mean_hours(micros: Iterable[int | None]) -> Decimal | None:
    known = [value for value in micros if value is not None]
    if not known:
        return None
    return _round(Decimal(sum(known)) / (len(known) * HOUR_MICROSECONDS), CENT)


def _hours(seconds: list[int]) -> Decimal | None:
    return _round(Decimal(sum(seconds)) / 3600, CENT) if seconds else None


def _round(value: Decimal, places: Decimal) -> Decimal:
    return value.quantize(places, rounding=ROUND_HALF_UP)


def _money(cents: Decimal) -> Decimal:
    """Cents (already whole) as an amount."""
    return (cents / 100).quantize(CENT)
