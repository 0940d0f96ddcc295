"""`cyberclaims simulate`: a synthetic book of cyber policies and claims, seeded and
reproducible, whose mix and severities follow public cyber-loss statistics (sources and
figures in docs/insights.md, "The simulator").

`book()` draws the book (pure, no I/O: the insights tests publish it as events with
historical dates); `split()` cuts it into its past years and its recent ones;
`bordereaux()` writes the past as the loss bordereau a legacy system would export (imported by
`import_history()` into insights, with its real dates); `drive()` plays the recent part
through the running system's public APIs."""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from cyberclaims.client import Actor, Api, wait_for
from cyberclaims.demo import policy_body, register_panel
from services.insights.service import size_band
from shared.events import VENDOR_VERIFIABLE_SECTIONS, Category, JobType, Section
from shared.money import round_money

INDUSTRIES = {"telecom": 0.2, "internet": 0.3, "manufacturing": 0.3, "finance": 0.2}
REGIONS = ("CN-GD", "CN-BJ", "CN-SH", "CN-ZJ", "CN-JS")
# Share of claims by category, after the public claims studies cited in docs/insights.md
# ("The simulator"): email compromise and funds-transfer fraud lead claim counts, ransomware
# is about a fifth, breaches follow. Rounded assumptions, not the studies' exact figures.
CATEGORY_MIX = {
    Category.business_email_compromise: 0.30,
    Category.ransomware: 0.20,
    Category.data_breach: 0.18,
    Category.malware: 0.10,
    Category.unauthorized_access: 0.08,
    Category.ddos: 0.06,
    Category.insider_misuse: 0.04,
    Category.other: 0.04,
}
# Median ground-up loss (CNY) and the log-normal spread: ransomware the most severe, email
# compromise and DDoS the least (the ordering of the cited studies; amounts are assumptions
# for SMEs at about 7 CNY per USD, not their figures).
SEVERITY = {
    Category.ransomware: (700_000, 1.0),
    Category.data_breach: (350_000, 1.1),
    Category.business_email_compromise: (150_000, 0.9),
    Category.malware: (200_000, 1.0),
    Category.unauthorized_access: (250_000, 1.0),
    Category.ddos: (80_000, 0.8),
    Category.insider_misuse: (200_000, 1.2),
    Category.other: (100_000, 1.0),
}
SECTION_OF = {  # a section that one of the category's jobs may verify (VENDOR_VERIFIABLE_SECTIONS)
    Category.ransomware: Section.cyber_extortion,
    Category.data_breach: Section.legal_and_notification,
    Category.business_email_compromise: Section.funds_transfer_fraud,
    Category.malware: Section.incident_response,
    Category.unauthorized_access: Section.incident_response,
    Category.ddos: Section.incident_response,  # vendors verify costs; BI is the insured's
    Category.insider_misuse: Section.incident_response,
    Category.other: Section.incident_response,
}
VECTORS = {
    Category.ransomware: ("email_phishing", "remote_desktop", "vpn"),
    Category.data_breach: ("web_application", "email_phishing", "stolen_credentials"),
    Category.business_email_compromise: ("email_phishing", "stolen_credentials"),
    Category.malware: ("email_phishing", "web_application"),
    Category.unauthorized_access: ("stolen_credentials", "remote_desktop"),
    Category.ddos: ("other",),
    Category.insider_misuse: ("insider_access",),
    Category.other: ("other",),
}
# Claims per policy-year: deliberately several times the public SME figures (a few per cent;
# docs/insights.md), so that a book of a few hundred policies shows cells above k.
ANNUAL_CLAIM_RATE = 0.12
DENIAL_RATE = 0.08
RATE_ON_REVENUE = Decimal("0.0012")  # premium per unit of turnover, before the size load


@dataclass(frozen=True)
class SimPolicy:
    policy_number: str
    org_id: str
    holder_name: str
    industry: str
    region: str
    employees: int
    annual_revenue: Decimal
    annual_premium: Decimal
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class SimPayment:
    at: datetime
    amount: Decimal


@dataclass(frozen=True)
class SimClaim:
    policy: SimPolicy
    category: Category
    section: Section
    attack_vector: str
    occurred_at: datetime
    reported_at: datetime
    dispatched_at: datetime
    contained_at: datetime
    outage_hours: int | None
    assessed_at: datetime
    payable: Decimal
    denied: bool
    payments: tuple[SimPayment, ...] = field(default=())


@dataclass(frozen=True)
class Book:
    policies: tuple[SimPolicy, ...]
    claims: tuple[SimClaim, ...]


def _weighted(rng: random.Random, weights: dict[str, float] | dict[Category, float]) -> object:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _employees(rng: random.Random) -> int:
    """SME head counts: log-normal around 60, capped at 5,000."""
    return max(1, min(5000, int(rng.lognormvariate(math.log(60), 1.2))))


def book(policies: int, years: int, seed: int, *, start: datetime) -> Book:
    """`policies` organisations, each insured for `years` consecutive annual policies from
    about `start` (within its first year); claims arrive at ANNUAL_CLAIM_RATE."""
    rng = random.Random(seed)
    issued: list[SimPolicy] = []
    claims: list[SimClaim] = []
    for number in range(policies):
        org_id = f"sim-{seed}-org-{number:05d}"
        industry = str(_weighted(rng, INDUSTRIES))
        region = rng.choice(REGIONS)
        employees = _employees(rng)
        revenue = round_money(Decimal(employees) * Decimal(rng.randint(300_000, 1_500_000)))
        first = start + timedelta(days=rng.randint(0, 364), hours=rng.randint(0, 23))
        for year in range(years):
            period_start = first + timedelta(days=365 * year)
            period_end = period_start + timedelta(days=365)
            premium = round_money(revenue * RATE_ON_REVENUE
                                  * Decimal(1 + 0.2 * (industry == "finance")))
            policy = SimPolicy(policy_number=f"SIM-{seed}-{number:05d}-{year + 1}",
                               org_id=org_id, holder_name=f"Simulated SME {number}",
                               industry=industry, region=region, employees=employees,
                               annual_revenue=revenue, annual_premium=max(premium, Decimal(1000)),
                               period_start=period_start, period_end=period_end)
            issued.append(policy)
            if rng.random() < ANNUAL_CLAIM_RATE:
                claims.append(_claim(rng, policy))
    return Book(tuple(issued), tuple(claims))


def _claim(rng: random.Random, policy: SimPolicy) -> SimClaim:
    category = Category(str(_weighted(rng, CATEGORY_MIX)))
    median, spread = SEVERITY[category]
    occurred = policy.period_start + timedelta(seconds=rng.randint(0, 364 * 86400))
    reported = occurred + timedelta(hours=rng.randint(1, 60))
    dispatched = reported + timedelta(minutes=rng.randint(5, 240))
    contained = dispatched + timedelta(hours=rng.randint(4, 24 * 14))
    assessed = contained + timedelta(days=rng.randint(3, 60))
    loss = round_money(Decimal(str(round(rng.lognormvariate(math.log(median), spread), 2))))
    denied = rng.random() < DENIAL_RATE
    payments: list[SimPayment] = []
    if not denied:
        tranches = 1 if rng.random() < 0.6 else 2
        first = loss if tranches == 1 else round_money(loss * Decimal("0.6"))
        paid_at = assessed + timedelta(days=rng.randint(5, 45))
        payments.append(SimPayment(paid_at, first))
        if tranches == 2:
            payments.append(SimPayment(paid_at + timedelta(days=rng.randint(30, 240)),
                                       loss - first))
    outage = rng.randint(2, 96) if category in (Category.ransomware, Category.ddos) else None
    return SimClaim(policy=policy, category=category, section=SECTION_OF[category],
                    attack_vector=rng.choice(VECTORS[category]), occurred_at=occurred,
                    reported_at=reported, dispatched_at=dispatched, contained_at=contained,
                    outage_hours=outage, assessed_at=assessed, payable=loss, denied=denied,
                    payments=tuple(payments))


# --- the past as a legacy system's loss bordereau ------------------------------------------

POLICIES_PER_IMPORT = 1000
"""A bordereau of this many policies (and their claims) stays well under the 1 MiB request
body limit."""


def split(the_book: Book, history_until: datetime) -> tuple[Book, Book]:
    """The book's past (the policies starting before `history_until`, with their claims) and
    the rest."""
    past = tuple(policy for policy in the_book.policies if policy.period_start < history_until)
    recent = tuple(policy for policy in the_book.policies if policy.period_start >= history_until)
    in_past = {policy.policy_number for policy in past}
    return (Book(past, tuple(c for c in the_book.claims if c.policy.policy_number in in_past)),
            Book(recent, tuple(c for c in the_book.claims
                               if c.policy.policy_number not in in_past)))


def _moments(claim: SimClaim) -> list[tuple[datetime, str, Decimal]]:
    """A claim's dated movements as payout would have made them: the assessed payable
    reserved, then denied (closed) or approved and paid in tranches."""
    decided = claim.assessed_at + timedelta(days=2)
    moves = [(claim.assessed_at, "reserve", claim.payable)]
    if claim.denied:
        return [*moves, (decided, "closed", Decimal(0))]
    return [*moves, *((payment.at, "paid", payment.amount) for payment in claim.payments)]


def _historical_claim(claim: SimClaim, now: datetime) -> dict[str, Any]:
    """A claim as the legacy system knows it now: what happened after `now` is not there."""
    def known(moment: datetime) -> str | None:
        return moment.isoformat() if moment <= now else None

    return {
        "claim_id": f"{claim.policy.policy_number}-C", "exposure_id": claim.policy.policy_number,
        "category": claim.category.value, "attack_vector": claim.attack_vector,
        "occurred_at": claim.occurred_at.isoformat(), "reported_at": claim.reported_at.isoformat(),
        "dispatched_at": known(claim.dispatched_at), "contained_at": known(claim.contained_at),
        "outage_hours": None if claim.outage_hours is None or claim.contained_at > now
        else str(claim.outage_hours),
        "movements": [{"at": at.isoformat(), "kind": kind, "amount": str(amount)}
                      for at, kind, amount in _moments(claim) if at <= now],
    }


def bordereaux(past: Book, *, seed: int, now: datetime, currency: str = "CNY",
               per_import: int = POLICIES_PER_IMPORT) -> list[dict[str, Any]]:
    """The past as loss bordereaux (POST /v1/insights/history bodies), each policy with its
    claims; a claim not yet reported at `now` is not in them. Each import's id ends with a
    digest of its rows, so the same book imported again is recognised (nothing doubles)."""
    claims_of: dict[str, list[SimClaim]] = {}
    for claim in past.claims:
        if claim.reported_at <= now:
            claims_of.setdefault(claim.policy.policy_number, []).append(claim)
    bodies = []
    for part, first in enumerate(range(0, len(past.policies), per_import), start=1):
        policies: Sequence[SimPolicy] = past.policies[first:first + per_import]
        rows: dict[str, Any] = {
            "exposures": [{
                "exposure_id": policy.policy_number, "org_id": policy.org_id,
                "industry": policy.industry, "region": policy.region,
                "size_band": size_band(policy.employees), "currency": currency,
                "annual_premium": str(policy.annual_premium),
                "period_start": policy.period_start.isoformat(),
                "period_end": policy.period_end.isoformat()} for policy in policies],
            "claims": [_historical_claim(claim, now) for policy in policies
                       for claim in claims_of.get(policy.policy_number, ())],
        }
        fingerprint = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:12]
        bodies.append({"import_id": f"simulate-{seed}-{part}-{fingerprint}", **rows})
    return bodies


def import_history(api: Api, bodies: Sequence[dict[str, Any]], *,
                   say: Callable[[str], None]) -> int:
    """Import the bordereaux as an operator would (POST /v1/insights/history); returns the
    claims imported."""
    operator = api.operator()
    imported = 0
    for body in bodies:
        summary = operator.post("insights", "/v1/insights/history", body)
        imported += summary["claims"]
    say(f"imported the past as {len(bodies)} loss bordereau(x): "
        f"{sum(len(b['exposures']) for b in bodies)} policy periods, {imported} claims")
    return imported


# --- driving the book through the running system -------------------------------------------

TERMINAL_JOB_STATES = {"completed", "cancelled"}
SETTLED_CLAIM_STATES = {"paid", "payment_failed", "denied", "closed_without_payment"}


def drive(api: Api, the_book: Book, *, say: Callable[[str], None]) -> int:
    """Play the book through the public APIs, as its users would: the operator registers the
    panel and the policies, policyholders report, vendors accept and complete with verified
    losses, adjusters approve or deny. Returns the claims played.

    The services stamp what happens with their own clock, so through the APIs a claim is
    reported, responded to and paid now; only the policy periods and when each incident
    occurred come from the book (docs/insights.md says what that means for the triangles)."""
    operator = api.operator()
    adjuster = api.adjuster("adjuster-simulator", "100000000")
    suffix = uuid.uuid4().hex[:6]
    for region in REGIONS:
        register_panel(operator, f"{suffix}-{region[3:].lower()}", region)
    now = datetime.now(UTC)
    for policy in the_book.policies:
        operator.post("intake", "/v1/policies", policy_body(
            policy.org_id, policy.policy_number, now, holder_name=policy.holder_name,
            industry=policy.industry, region=policy.region,
            period_start=policy.period_start.isoformat(), period_end=policy.period_end.isoformat(),
            annual_premium=str(policy.annual_premium), employees=policy.employees,
            annual_revenue=str(policy.annual_revenue)))
    organisations = len({policy.org_id for policy in the_book.policies})
    say(f"registered {len(the_book.policies)} policies of {organisations} organisations")
    played = 0
    for claim in the_book.claims:
        if claim.occurred_at >= now - timedelta(hours=1):
            continue  # not happened yet
        _play(api, adjuster, claim, suffix)
        played += 1
        if played % 10 == 0:
            say(f"{played} claims played")
    say("these claims were reported, assessed and paid today: in the loss triangle they sit on "
        "its latest diagonal; the imported past gives it development (docs/insights.md, "
        "The simulator)")
    return played


def _play(api: Api, adjuster: Actor, claim: SimClaim, suffix: str) -> None:
    policy = claim.policy
    holder = api.policyholder(policy.org_id)
    now = datetime.now(UTC)
    incident = holder.post("intake", "/v1/incidents", {
        "policy_number": policy.policy_number, "category": claim.category.value,
        "title": f"Simulated {claim.category.value.replace('_', ' ')}",
        "description": "A claim of the simulated book (cyberclaims simulate).",
        "occurred_at": claim.occurred_at.isoformat(),
        "discovered_at": max(claim.occurred_at, now - timedelta(hours=2)).isoformat(),
        "contact": {"name": "IT desk", "email": "it@sme.example", "phone": "+86 10 1234 5678"},
        "systems_down": claim.outage_hours is not None,
    }, headers={"Idempotency-Key": f"simulate-{suffix}-{uuid.uuid4().hex}"})
    incident_id = incident["id"]
    loss_booked = False
    for vendor_id, job in _jobs_until_done(api, incident_id):
        vendor = api.vendor(vendor_id)
        vendor.post("triage", f"/v1/jobs/{job['id']}/accept")
        books_loss = not loss_booked and \
            claim.section in VENDOR_VERIFIABLE_SECTIONS[JobType(job["job_type"])]
        report: dict[str, Any] = {
            "root_cause": "simulated", "attack_vector": claim.attack_vector,
            "attribution": "criminal", "contained_at": datetime.now(UTC).isoformat(),
            "verified_losses": [{
                "section": claim.section.value, "amount": str(claim.payable),
                "description": "Verified loss of the simulated claim"}] if books_loss else [],
        }
        if claim.outage_hours is not None and books_loss:
            started = datetime.now(UTC) - timedelta(hours=claim.outage_hours)
            report |= {"outage_started_at": started.isoformat(),
                       "outage_ended_at": datetime.now(UTC).isoformat()}
        vendor.post("triage", f"/v1/jobs/{job['id']}/complete", report)
        loss_booked = loss_booked or books_loss
    found = wait_for("the claim's assessment", lambda: adjuster.call(
        "payout", "GET", f"/v1/incidents/{incident_id}/claim", expect=(200, 404)),
        until=lambda c: bool(c) and c.get("response_completed"))
    for loss in found["losses"]:  # a vendor's item above the vendor limit waits for an adjuster
        if loss["state"] == "unverified":
            adjuster.post("payout", f"/v1/claims/{found['id']}/losses/{loss['id']}/verify",
                          {"note": "Simulated check of the vendor's invoice"})
    found = wait_for("the claim's assessment", lambda: adjuster.call(
        "payout", "GET", f"/v1/incidents/{incident_id}/claim", expect=(200, 404)),
        until=lambda c: bool(c) and c.get("status") in {"pending_approval", *SETTLED_CLAIM_STATES})
    if found["status"] == "pending_approval":
        if claim.denied:
            adjuster.post("payout", f"/v1/claims/{found['id']}/deny",
                          {"reason": "Simulated denial: an exclusion applies"})
        else:
            adjuster.post("payout", f"/v1/claims/{found['id']}/approve", {})


def _jobs_until_done(api: Api, incident_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each dispatched job of the incident, as triage dispatches them, until all are done."""
    operator = api.operator()
    handed: set[str] = set()
    while True:
        jobs = wait_for("the incident's jobs", lambda: operator.get(
            "triage", "/v1/jobs", incident_id=incident_id)["items"],
            until=lambda items: bool(items) and all(
                j["status"] in TERMINAL_JOB_STATES or j["status"] == "dispatched" for j in items))
        waiting = [job for job in jobs if job["status"] == "dispatched" and job["id"] not in handed]
        if not waiting:
            return
        for job in waiting:
            handed.add(job["id"])
            yield job["vendor_id"], job
