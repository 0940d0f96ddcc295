"""Rulebook section 4 (and the policy and loss bodies): bad input is a 422 problem+json naming
the field, never a 500 and never a half-written incident."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import ManualClock
from tests.intake.conftest import policy_body, register, report_body, sql_value
from tests.support.service import Tokens, running

NOW = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)
SOON = NOW + timedelta(minutes=5)
TOO_LATE = SOON + timedelta(microseconds=1)
NUL = "\x00"
YEAR_1 = "0001-01-01T00:00:00+14:00"
YEAR_9999 = "9999-12-31T23:59:59-14:00"


@pytest.fixture
async def frozen(make_intake: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a clock standing still at NOW."""
    async with running(make_intake(ManualClock(NOW), run_workers=False),
                       wait_for_consumer=False) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, *fields: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["detail"]
    named = {error["field"] for error in problem.get("errors", ())}
    for field in fields:
        assert field in named, (field, problem)


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    copy = {**body, "contact": dict(body["contact"])}
    target = copy["contact"] if len(path) == 2 else copy
    del target[path[-1]]
    return copy


INVALID_REPORTS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str]] = [
    ("unknown top-level field", lambda b: {**b, "severity": "high"}, "severity"),
    ("unknown contact field", lambda b: {**b, "contact": {**b["contact"], "wechat": "li"}},
     "contact.wechat"),
    ("discovered before occurred",
     lambda b: {**b, "discovered_at": (NOW - timedelta(hours=4)).isoformat()}, "discovered_at"),
    ("occurred in the future", lambda b: {**b, "occurred_at": TOO_LATE.isoformat(),
                                          "discovered_at": TOO_LATE.isoformat()}, "occurred_at"),
    ("discovered in the future", lambda b: {**b, "discovered_at": TOO_LATE.isoformat()},
     "discovered_at"),
    ("outage in the future", lambda b: {**b, "outage_started_at": TOO_LATE.isoformat()},
     "outage_started_at"),
    ("negative affected hosts", lambda b: {**b, "affected_hosts": -1}, "affected_hosts"),
    ("negative records exposed", lambda b: {**b, "records_exposed": -5}, "records_exposed"),
    ("negative ransom", lambda b: {**b, "ransom_demanded": "-1.00"}, "ransom_demanded"),
    ("negative funds transferred", lambda b: {**b, "funds_transferred": "-0.01"},
     "funds_transferred"),
    ("money with three decimals", lambda b: {**b, "ransom_demanded": "10.005"}, "ransom_demanded"),
    ("unknown category", lambda b: {**b, "category": "alien_invasion"}, "category"),
    ("unknown data type", lambda b: {**b, "data_types": ["pii", "dna"]}, "data_types.1"),
    ("naive timestamp", lambda b: {**b, "occurred_at": "2026-03-02T06:00:00"}, "occurred_at"),
    ("not a timestamp", lambda b: {**b, "discovered_at": "yesterday"}, "discovered_at"),
    ("bad email", lambda b: {**b, "contact": {**b["contact"], "email": "li.wei"}},
     "contact.email"),
    ("empty title", lambda b: {**b, "title": ""}, "title"),
    *[(f"missing {field}", lambda b, f=field: _without(b, f), field)
      for field in ("policy_number", "category", "title", "description", "occurred_at",
                    "discovered_at", "contact")],
    *[(f"missing contact.{field}", lambda b, f=field: _without(b, "contact", f),
       f"contact.{field}") for field in ("name", "email", "phone")],
    # what PostgreSQL or Python's datetime could not hold (issue 23, findings 3, 6, 9, 12)
    ("NUL in title", lambda b: {**b, "title": f"a{NUL}b"}, "title"),
    ("NUL in description", lambda b: {**b, "description": f"a{NUL}b"}, "description"),
    ("NUL in contact name", lambda b: {**b, "contact": {**b["contact"], "name": f"Li{NUL}"}},
     "contact.name"),
    ("NUL in contact email",
     lambda b: {**b, "contact": {**b["contact"], "email": f"li{NUL}@example.com"}},
     "contact.email"),
    ("NUL in policy number", lambda b: {**b, "policy_number": f"P{NUL}"}, "policy_number"),
    ("records_exposed 2^63", lambda b: {**b, "records_exposed": 2**63}, "records_exposed"),
    ("records_exposed above the bound", lambda b: {**b, "records_exposed": 10**12 + 1},
     "records_exposed"),
    ("affected_hosts 2^64", lambda b: {**b, "affected_hosts": 2**64}, "affected_hosts"),
    ("occurred in year 1", lambda b: {**b, "occurred_at": YEAR_1}, "occurred_at"),
    ("discovered in year 9999", lambda b: {**b, "discovered_at": YEAR_9999}, "discovered_at"),
    ("outage in year 1", lambda b: {**b, "outage_started_at": YEAR_1}, "outage_started_at"),
    ("occurred before 1970", lambda b: {**b, "occurred_at": "1969-12-31T23:59:59Z"},
     "occurred_at"),
    *[(f"ransom {amount!r}", lambda b, a=amount: {**b, "ransom_demanded": a}, "ransom_demanded")
      for amount in ("1_000", "1e3", "NaN", "Infinity", "-5", " 5", "5.001", 5.5, True)],
]


@pytest.mark.parametrize(("change", "field"), [(c, f) for _, c, f in INVALID_REPORTS],
                         ids=[name for name, _, _ in INVALID_REPORTS])
async def test_an_invalid_report_is_a_422_naming_the_field(
    frozen: httpx.AsyncClient, tokens: Tokens, db: AsyncEngine,
    change: Callable[[dict[str, Any]], dict[str, Any]], field: str,
) -> None:
    insured = await register(frozen, tokens)
    body = change(report_body(insured["policy_number"], now=NOW))
    response = await frozen.post("/v1/incidents", json=body,
                                 headers={**insured["headers"], "Idempotency-Key": "v1"})
    assert_problem(response, 422, field)
    assert await sql_value(db, "SELECT count(*) FROM incidents WHERE org_id = :org",
                           org=insured["org_id"]) == 0


async def test_timestamps_exactly_five_minutes_ahead_are_accepted(
    frozen: httpx.AsyncClient, tokens: Tokens
) -> None:
    insured = await register(frozen, tokens)
    beijing = timezone(timedelta(hours=8))
    body = report_body(insured["policy_number"], now=NOW,
                       occurred_at=SOON.astimezone(beijing).isoformat(),
                       discovered_at=SOON.isoformat(), outage_started_at=SOON.isoformat())
    response = await frozen.post("/v1/incidents", json=body,
                                 headers={**insured["headers"], "Idempotency-Key": "edge"})
    assert response.status_code == 201, response.text
    incident = response.json()
    assert datetime.fromisoformat(incident["reported_at"]) == NOW  # the server's receipt time
    assert datetime.fromisoformat(incident["occurred_at"]) == SOON


async def test_a_report_without_an_idempotency_key_is_a_422(
    api: httpx.AsyncClient, tokens: Tokens
) -> None:
    insured = await register(api, tokens)
    response = await api.post("/v1/incidents", json=report_body(insured["policy_number"]),
                              headers=insured["headers"])
    assert_problem(response, 422, "Idempotency-Key")


async def test_unknown_or_foreign_policies_are_404_and_a_lapsed_one_is_accepted(
    api: httpx.AsyncClient, tokens: Tokens
) -> None:
    insured, stranger = await register(api, tokens), await register(api, tokens)
    headers = {**insured["headers"], "Idempotency-Key": uuid.uuid4().hex}
    unknown = await api.post("/v1/incidents", json=report_body("POL-DOES-NOT-EXIST"),
                             headers=headers)
    assert_problem(unknown, 404)
    foreign = await api.post("/v1/incidents", json=report_body(stranger["policy_number"]),
                             headers=headers)
    assert_problem(foreign, 404)
    assert foreign.json()["detail"] == unknown.json()["detail"].replace(
        "POL-DOES-NOT-EXIST", stranger["policy_number"])  # the same answer: nothing revealed

    now = datetime.now(UTC)
    lapsed = await register(api, tokens, period_start=(now - timedelta(days=400)).isoformat(),
                            period_end=(now - timedelta(days=35)).isoformat())
    response = await api.post("/v1/incidents", json=report_body(lapsed["policy_number"]),
                              headers={**lapsed["headers"], "Idempotency-Key": "lapsed"})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "reported"


INVALID_LOSSES = [
    ("interruption claimed as amount",
     {"section": "business_interruption", "amount": "1000.00"}, "amount"),
    ("interruption without hourly loss", {"section": "business_interruption"}, "hourly_loss"),
    ("amount missing", {"section": "incident_response"}, "amount"),
    ("hourly loss outside interruption",
     {"section": "data_restoration", "amount": "10.00", "hourly_loss": "5.00"}, "hourly_loss"),
    ("negative amount", {"section": "incident_response", "amount": "-3.00"}, "amount"),
    ("unknown section", {"section": "acts_of_god", "amount": "3.00"}, "section"),
    ("unknown field", {"section": "incident_response", "amount": "3.00", "vat": "1"}, "vat"),
]


async def test_loss_submissions_are_validated(api: httpx.AsyncClient, tokens: Tokens) -> None:
    insured = await register(api, tokens)
    created = await api.post("/v1/incidents", json=report_body(insured["policy_number"]),
                             headers={**insured["headers"], "Idempotency-Key": "loss"})
    url = f"/v1/incidents/{created.json()['id']}/losses"
    for name, body, field in INVALID_LOSSES:
        response = await api.post(url, json={"description": name, **body},
                                  headers=insured["headers"])
        assert_problem(response, 422, field)

    interruption = await api.post(url, headers=insured["headers"], json={
        "section": "business_interruption", "hourly_loss": "2500.5", "description": "ERP down"})
    assert interruption.status_code == 201, interruption.text
    assert interruption.json()["hourly_loss"] == "2500.50"
    assert interruption.json()["amount"] is None
    forensics = await api.post(url, headers=insured["headers"], json={
        "section": "incident_response", "amount": "18000", "description": "Forensics"})
    assert forensics.status_code == 201, forensics.text
    assert forensics.json()["amount"] == "18000.00"
    incident = await api.get(f"/v1/incidents/{created.json()['id']}", headers=insured["headers"])
    assert [e["type"] for e in incident.json()["timeline"]].count("loss.submitted") == 2


INVALID_POLICIES: list[tuple[str, dict[str, Any], str]] = [
    ("region without country", {"region": "GD"}, "region"),
    ("region in lower case", {"region": "cn-gd"}, "region"),
    ("region that does not exist", {"region": "CN-XX"}, "region"),
    ("period ends before it starts", {"period_start": "2026-06-01T00:00:00+08:00",
                                      "period_end": "2026-01-01T00:00:00+08:00"}, "period_end"),
    ("period of no length", {"period_start": "2026-06-01T00:00:00+00:00",
                             "period_end": "2026-06-01T08:00:00+08:00"}, "period_end"),
    ("retroactive date after the start", {"period_start": "2026-01-01T00:00:00+00:00",
                                          "period_end": "2027-01-01T00:00:00+00:00",
                                          "retroactive_date": "2026-02-01T00:00:00+00:00"},
     "retroactive_date"),
    ("unknown section", {"sections": {"acts_of_god": {"sublimit": "1.00"}}}, "sections"),
    ("negative sublimit", {"sections": {"incident_response": {"sublimit": "-1"}}},
     "sections.incident_response.sublimit"),
    ("unknown industry", {"industry": "piracy"}, "industry"),
    ("naive period start", {"period_start": "2026-01-01T00:00:00"}, "period_start"),
    ("unknown field", {"deductible": "100"}, "deductible"),
]


async def test_policies_are_validated(api: httpx.AsyncClient, tokens: Tokens) -> None:
    operator = tokens.operator()
    for name, change, field in INVALID_POLICIES:
        body = {**policy_body(f"org-{uuid.uuid4().hex[:8]}"), **change}
        response = await api.post("/v1/policies", json=body, headers=operator)
        assert response.status_code == 422, (name, response.text)
        fields = [e["field"] for e in response.json()["errors"]]
        assert any(f == field or f.startswith(field + ".") for f in fields), (name, fields)

    insured = await register(api, tokens)
    body = policy_body(insured["org_id"], policy_number=insured["policy_number"])
    duplicate = await api.post("/v1/policies", json=body, headers=operator)
    assert_problem(duplicate, 409, "policy_number")
    del body["policy_number"]
    missing = await api.put("/v1/policies/POL-NOPE", json=body, headers=operator)
    assert_problem(missing, 404)
    bad_update = await api.put(f"/v1/policies/{insured['policy_number']}", headers=operator,
                               json={**body, "region": "CN-XX"})
    assert_problem(bad_update, 422, "region")
    updated = await api.put(f"/v1/policies/{insured['policy_number']}", headers=operator,
                            json={**body, "region": "CN-BJ"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["region"] == "CN-BJ" and updated.json()["version"] == 2
