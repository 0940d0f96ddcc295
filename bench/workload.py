"""Seeded, realistic inputs: insured SMEs with policies, and their incident reports.

Everything random comes from `random.Random(seed)`, so the same seed gives the same policies,
the same categories and the same report bodies on every run and every machine.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.auth import Role
from shared.signing import TokenSigner

REGIONS = ["CN-GD", "CN-BJ", "CN-SH", "CN-ZJ", "CN-JS", "CN-SC", "CN-HB", "CN-FJ"]
INDUSTRIES = ["telecom", "internet", "manufacturing", "finance", "retail", "healthcare"]
# A mass ransomware campaign dominates; the rest is the everyday mix.
CATEGORY_WEIGHTS = {
    "ransomware": 50, "data_breach": 15, "business_email_compromise": 10, "ddos": 8,
    "malware": 8, "unauthorized_access": 5, "insider_misuse": 2, "other": 2,
}
JOB_TYPES = ["forensics", "ransomware_negotiation", "data_recovery", "legal_counsel",
             "notification_services", "funds_recovery", "ddos_mitigation",
             "crisis_communications"]


@dataclass(frozen=True)
class Insured:
    org_id: str
    policy_number: str
    region: str


def insureds(count: int, seed: int, run_id: str) -> list[Insured]:
    rng = random.Random(seed)
    return [Insured(org_id=f"org-{run_id}-{i:05d}", policy_number=f"POL-{run_id}-{i:05d}",
                    region=rng.choice(REGIONS)) for i in range(count)]


def policy_body(insured: Insured, rng: random.Random, *, retention: str = "1000.00") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "policy_number": insured.policy_number,
        "org_id": insured.org_id,
        "holder_name": f"SME {insured.org_id}",
        "industry": rng.choice(INDUSTRIES),
        "region": insured.region,
        "critical_infrastructure": False,
        "period_start": (now - timedelta(days=200)).isoformat(),
        "period_end": (now + timedelta(days=165)).isoformat(),
        "aggregate_limit": "5000000.00",
        "retention": retention,
        "sections": {section: {"sublimit": "1000000.00"} for section in (
            "incident_response", "legal_and_notification", "data_restoration",
            "business_interruption", "cyber_extortion", "funds_transfer_fraud")},
    }


def register_policies(intake_url: str, insured: list[Insured], tokens: TokenSigner, seed: int,
                      **terms: str) -> None:
    """Register every policy through intake's API, as the insurer's operator does."""
    rng = random.Random(seed + 1)
    headers = {"Authorization": f"Bearer {tokens.issue(role=Role.operator, sub='bench-ops')}"}
    with httpx.Client(base_url=intake_url, headers=headers, timeout=30) as client:
        for one in insured:
            response = client.post("/v1/policies", json=policy_body(one, rng, **terms))
            if response.status_code != 201:
                raise RuntimeError(f"policy {one.policy_number}: {response.status_code} "
                                   f"{response.text[:300]}")


def report_body(insured: Insured, rng: random.Random, category: str | None = None) -> dict[str, Any]:
    """A first notice of loss like an SME sends it (no huge exposures: P2 to P4 mostly)."""
    now = datetime.now(UTC)
    category = category or rng.choices(list(CATEGORY_WEIGHTS), list(CATEGORY_WEIGHTS.values()))[0]
    occurred = now - timedelta(hours=rng.randint(2, 48))
    body: dict[str, Any] = {
        "policy_number": insured.policy_number,
        "category": category,
        "title": f"{category.replace('_', ' ').capitalize()} at {insured.org_id}",
        "description": "Files encrypted on the file server and ERP; ransom note on the desktops. "
                       * rng.randint(1, 4),
        "occurred_at": occurred.isoformat(),
        "discovered_at": (occurred + timedelta(minutes=rng.randint(5, 90))).isoformat(),
        "contact": {"name": "Li Wei", "email": f"it@{insured.org_id}.example.com",
                    "phone": "+86 755 1234 5678"},
        "systems_down": rng.random() < 0.3,
        "affected_hosts": rng.randint(1, 40),
    }
    if category == "data_breach":
        body["records_exposed"] = rng.randint(0, 50_000)
        body["data_types"] = ["pii"]
    if category == "ransomware":
        body["ransom_demanded"] = f"{rng.randint(50, 2000) * 1000}.00"
    return body


@dataclass(frozen=True)
class PreparedReport:
    """A request ready to send: bytes and headers built before the clock starts."""

    org_id: str
    body: bytes
    headers: dict[str, str]


def prepared_reports(insured: list[Insured], tokens: TokenSigner, seed: int, count: int,
                     *, category: str | None = None) -> list[PreparedReport]:
    """`count` distinct bodies cycling over the insured orgs, with each org's bearer token."""
    rng = random.Random(seed + 2)
    bearer = {one.org_id: "Bearer " + tokens.issue(role=Role.policyholder, sub=f"it@{one.org_id}",
                                                   org_id=one.org_id, ttl_seconds=6 * 3600)
              for one in insured}
    reports = []
    for i in range(count):
        one = insured[i % len(insured)]
        body = json.dumps(report_body(one, rng, category), separators=(",", ":")).encode()
        reports.append(PreparedReport(org_id=one.org_id, body=body, headers={
            "Authorization": bearer[one.org_id], "Content-Type": "application/json"}))
    return reports
