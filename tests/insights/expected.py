"""The test's own computation of the loss experience, straight from the raw events: written
apart from the service (its own quarter arithmetic, fractions, and bisection for the size
bands), so the two agree only if both follow docs/insights.md."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from shared.events import (
    ClaimApproved,
    ClaimAssessed,
    ClaimClosedWithoutPayment,
    ClaimDenied,
    ClaimOpened,
    Event,
    IncidentReported,
    IncidentResponseCompleted,
    JobDispatched,
    PaymentSucceeded,
    PolicyRegistered,
    PolicyUpdated,
)

YEAR = 365 * 86400
BAND_FLOORS = [1, 50, 250, 1000]
BAND_NAMES = ["1-49", "50-249", "250-999", "1000+"]
POLICY_DIMS = ("industry", "region", "size_band", "period")
ORDER = ("industry", "region", "size_band", "category", "attack_vector", "period")


def band(employees: int | None) -> str:
    return "unknown" if employees is None else BAND_NAMES[bisect.bisect_right(BAND_FLOORS, employees) - 1]


def quarter(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.year}Q{math.ceil(moment.month / 3)}"


def quarter_overlaps(start: datetime, end: datetime) -> dict[str, int]:
    result = {}
    year, month = start.year, 3 * ((start.month - 1) // 3) + 1
    while True:
        begins = datetime(year, month, 1, tzinfo=UTC)
        if begins >= end:
            return result
        year, month = (year + 1, 1) if month == 10 else (year, month + 3)
        ends = datetime(year, month, 1, tzinfo=UTC)
        seconds = (min(end, ends) - max(start, begins)).total_seconds()
        if seconds > 0:
            result[f"{begins.year}Q{(begins.month + 2) // 3}"] = int(seconds)


@dataclass
class Claim:
    org_id: str
    incident_id: Any
    policy_number: str | None = None
    basis: Decimal | None = None
    paid: Decimal = Decimal(0)
    closed: bool = False
    first_paid: datetime | None = None
    movements: list[tuple[datetime, str, Decimal]] = field(default_factory=list)
    opened_at: datetime | None = None


@dataclass
class Raw:
    """The book as the events tell it."""

    policies: dict[str, Any] = field(default_factory=dict)
    incidents: dict[Any, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    claims: dict[Any, Claim] = field(default_factory=dict)

    @classmethod
    def of(cls, events: list[Event]) -> Raw:
        raw = cls()
        for event in events:
            raw.apply(event)
        return raw

    def apply(self, event: Event) -> None:
        if isinstance(event, PolicyRegistered):
            self.policies[event.policy.policy_number] = event.policy
        elif isinstance(event, PolicyUpdated):  # the tests publish versions in order
            self.policies[event.policy.policy_number] = event.policy
        elif isinstance(event, IncidentReported):
            self.incidents[event.incident_id].update(
                category=event.category.value, occurred=event.occurred_at, reported=event.reported_at)
        elif isinstance(event, JobDispatched):
            known = self.incidents[event.incident_id].get("dispatched")
            self.incidents[event.incident_id]["dispatched"] = min(filter(None, [known, event.at]))
        elif isinstance(event, IncidentResponseCompleted):
            incident = self.incidents[event.incident_id]
            incident["contained"] = max(f.contained_at for f in event.findings)
            incident["vector"] = min(event.findings, key=lambda f: f.contained_at).attack_vector.lower()
            if event.verified_outage:
                incident["outage"] = int((event.verified_outage.ended_at
                                          - event.verified_outage.started_at).total_seconds())
        elif isinstance(event, ClaimOpened | ClaimAssessed | ClaimApproved | ClaimDenied
                        | ClaimClosedWithoutPayment | PaymentSucceeded):
            claim = self.claims.setdefault(event.claim_id, Claim(event.org_id, event.incident_id))
            if isinstance(event, ClaimOpened):
                claim.policy_number, claim.opened_at = event.policy_number, event.at
            elif isinstance(event, ClaimAssessed):
                claim.basis = event.payable
                claim.movements.append((event.at, "reserve", event.payable))
            elif isinstance(event, ClaimApproved):
                claim.basis = event.amount
                claim.movements.append((event.at, "reserve", event.amount))
            elif isinstance(event, PaymentSucceeded):
                claim.paid += event.amount
                claim.first_paid = min(filter(None, [claim.first_paid, event.at]))
                claim.movements.append((event.at, "paid", event.amount))
            else:
                claim.closed = True
                claim.movements.append((event.at, "closed", Decimal(0)))

    # --- the experience -------------------------------------------------------------------

    def claim_rows(self) -> list[dict[str, Any]]:
        rows = []
        for claim in self.claims.values():
            policy = self.policies.get(claim.policy_number or "")
            incident = self.incidents.get(claim.incident_id, {})
            reserve = Decimal(0) if claim.closed or claim.basis is None \
                else max(claim.basis - claim.paid, Decimal(0))
            reported = incident.get("reported")

            def micros(end: datetime | None, reported: datetime | None = reported) -> int | None:
                if end is None or reported is None:
                    return None
                delta = end - reported
                return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds

            rows.append({
                "org": claim.org_id,
                "industry": policy.industry.value if policy else "unknown",
                "region": policy.region if policy else "unknown",
                "size_band": band(policy.employees) if policy else "unknown",
                "category": incident.get("category", "unknown"),
                "attack_vector": incident.get("vector") or "unknown",
                "period": quarter(incident["occurred"]) if "occurred" in incident else "unknown",
                "paid": int(claim.paid * 100), "incurred": int((claim.paid + reserve) * 100),
                "reserve": int(reserve * 100),
                "dispatch": micros(incident.get("dispatched")),
                "containment": micros(incident.get("contained")),
                "payment": micros(claim.first_paid),
                "outage": incident.get("outage"),
            })
        return rows

    def exposure_rows(self, valuation: datetime) -> list[dict[str, Any]]:
        """Each policy's time in force by quarter, as far as it runs before the valuation."""
        rows = []
        for policy in self.policies.values():
            for period, seconds in quarter_overlaps(policy.period_start,
                                                    min(policy.period_end, valuation)).items():
                rows.append({"org": policy.org_id, "industry": policy.industry.value,
                             "region": policy.region, "size_band": band(policy.employees),
                             "period": period, "seconds": seconds,
                             "premium": int((policy.annual_premium or 0) * 100)})
        return rows

    def cells(self, dims: tuple[str, ...], valuation: datetime,
              withheld: frozenset[tuple[str, ...]] = frozenset()
              ) -> dict[tuple[str, ...], dict[str, Any]]:
        """Every cell of a grouping: its organisations and its figures as the API shows them,
        exposure up to the valuation (none where the parent's own grouping hides it:
        `withheld`)."""
        policy_dims = tuple(d for d in dims if d in POLICY_DIMS)
        exposure: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in self.exposure_rows(valuation):
            exposure[tuple(row[d] for d in policy_dims)].append(row)
        claims: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in self.claim_rows():
            claims[tuple(row[d] for d in dims)].append(row)
        keys = set(claims) if policy_dims != dims else set(claims) | set(exposure)
        result = {}
        for key in keys:
            members = claims.get(key, [])
            parent_key = tuple(v for d, v in zip(dims, key, strict=True) if d in POLICY_DIMS)
            parent = exposure.get(parent_key, [])
            orgs = {r["org"] for r in members} if members else {r["org"] for r in parent}
            result[key] = {"orgs": orgs,
                           "figures": figures(members, parent, parent_key in withheld)}
        return result



def _exact(value: Fraction, places: str) -> Decimal:
    """Round half up, exactly: from the fraction, not from a float."""
    scale = 10 ** len(places.split(".")[1]) if "." in places else 1
    scaled = value * scale
    whole = math.floor(scaled)
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    return Decimal(whole) / scale


def _money(cents: int | Fraction) -> Decimal:
    return _exact(Fraction(cents) / 100, "0.01")


def _severity(amounts: list[int]) -> dict[str, Any]:
    positive = sorted(a for a in amounts if a > 0)
    if not positive:
        return {"total": _money(sum(amounts)), "claims": 0, "mean": None, "median": None, "p90": None}

    def rank(p: int) -> int:
        return positive[max(1, math.ceil(Fraction(p * len(positive), 100))) - 1]

    return {"total": _money(sum(positive)), "claims": len(positive),
            "mean": _money(_exact(Fraction(sum(positive), len(positive)), "1")),
            "median": _money(rank(50)), "p90": _money(rank(90))}


def _mean_hours(values: list[int | None]) -> Decimal | None:
    known = [v for v in values if v is not None]
    return _exact(Fraction(sum(known), len(known) * 3_600_000_000), "0.01") if known else None


def figures(claims: list[dict[str, Any]], exposure: list[dict[str, Any]],
            withheld: bool = False) -> dict[str, Any]:
    if withheld:
        exposure = []
    seconds = sum(r["seconds"] for r in exposure)
    earned_cents = _exact(Fraction(sum(r["premium"] * r["seconds"] for r in exposure), YEAR), "1")
    incurred = sum(r["incurred"] for r in claims)
    outages = [r["outage"] for r in claims if r["outage"] is not None]
    return {
        "exposure_policy_years": None if withheld else _exact(Fraction(seconds, YEAR), "0.0001"),
        "earned_premium": None if withheld else _money(int(earned_cents)),
        "claims": len(claims),
        "frequency_per_100_policy_years":
            _exact(Fraction(len(claims) * 100 * YEAR, seconds), "0.0001") if seconds else None,
        "paid": _severity([r["paid"] for r in claims]),
        "incurred": _severity([r["incurred"] for r in claims]),
        "case_reserves": _money(sum(r["reserve"] for r in claims)),
        "loss_ratio": _exact(Fraction(incurred, int(earned_cents)), "0.0001") if earned_cents else None,
        "mean_hours_report_to_dispatch": _mean_hours([r["dispatch"] for r in claims]),
        "mean_hours_report_to_containment": _mean_hours([r["containment"] for r in claims]),
        "mean_hours_report_to_payment": _mean_hours([r["payment"] for r in claims]),
        "bi_hours_total": _exact(Fraction(sum(outages), 3600), "0.01") if outages else None,
        "bi_hours_mean": _mean_hours([o * 1_000_000 for o in outages]),
    }


def as_numbers(value: Any) -> Any:
    """An API figure tree with its decimal strings as Decimals, to compare with `figures`."""
    if isinstance(value, dict):
        return {k: as_numbers(v) for k, v in value.items()}
    if isinstance(value, str):
        return Decimal(value)
    return value
