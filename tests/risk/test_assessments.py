"""Assessments on PostgreSQL and Tansu: a registered policy asks for one, the vendor holding
the job submits checklist and findings, risk scores them and publishes `risk.assessed`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from shared.controls import Control
from shared.events import PolicyUpdated, RiskAssessed, RiskAssessmentRequested, RiskTier
from shared.topics import POLICIES, RISK
from tests.risk.conftest import CRITICAL, HIGH, Desk, eventually
from tests.support.kafka import wait_for_events

ALL_BUT_BACKUPS = [c for c in Control if c is not Control.offline_backups_tested]  # 85
CRITICAL_4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"  # 9.3


async def test_a_registered_policy_asks_for_an_assessment(desk: Desk) -> None:
    terms, assessment_id = await desk.policy()
    [requested] = await wait_for_events(
        desk.broker, RISK.name,
        lambda e: e.type == RiskAssessmentRequested.event_type
        and e.data["assessment_id"] == str(assessment_id))
    assert requested.data["policy_number"] == terms.policy_number
    assert requested.data["reason"] == "registered"
    assert requested.subject == terms.policy_number


async def test_the_vendor_completes_it_and_the_policyholder_sees_score_tier_and_plan(
        desk: Desk) -> None:
    terms, vendor_id = await desk.assessed(
        in_place=ALL_BUT_BACKUPS,
        findings=[{"title": "Exchange unpatched", "control": "critical_patches_within_14_days",
                   "cvss_vector": HIGH}])
    response = await desk.risk(terms.policy_number, desk.tokens.policyholder(terms.org_id))
    assert response.status_code == 200, response.text
    risk = response.json()
    assert (risk["score"], risk["tier"], risk["premium_modifier_percent"]) == (80, "B", 0)
    assert risk["referred_to_underwriter"] is False
    now = desk.clock.now()
    plan = {(i["source"], i["control"], i["cvss_score"], i["state"]) for i in risk["items"]}
    assert plan == {("missing_control", "offline_backups_tested", None, "open"),
                    ("finding", "critical_patches_within_14_days", 7.0, "open")}
    dues = {i["source"]: datetime.fromisoformat(i["due_at"]) for i in risk["items"]}
    assert dues == {"finding": now + timedelta(days=30), "missing_control": now + timedelta(days=90)}
    [assessed] = await wait_for_events(
        desk.broker, RISK.name,
        lambda e: e.type == RiskAssessed.event_type
        and e.data["policy_number"] == terms.policy_number)
    event = RiskAssessed.model_validate(assessed.data)
    assert (event.score, event.tier, event.vendor_id) == (80, RiskTier.B, vendor_id)
    assert len(event.items) == 2


async def test_tier_d_is_referred_to_an_underwriter(desk: Desk) -> None:
    terms, _ = await desk.assessed(
        in_place=[Control.mfa_remote_access, Control.offline_backups_tested,
                  Control.mfa_email, Control.edr_on_endpoints],  # 50
        findings=[{"title": "RDP exposed", "control": "no_exposed_rdp_or_smb",
                   "cvss_vector": CRITICAL}])
    risk = (await desk.risk(terms.policy_number, desk.tokens.underwriter())).json()
    assert (risk["score"], risk["tier"], risk["premium_modifier_percent"]) == (40, "D", 50)
    assert risk["referred_to_underwriter"] is True
    finding = next(i for i in risk["items"] if i["source"] == "finding")
    assert finding["cvss_score"] == 9.0


async def test_an_invalid_cvss_vector_is_a_422_naming_the_field_and_changes_nothing(
        desk: Desk) -> None:
    terms, assessment_id = await desk.policy()
    await desk.assign(terms, assessment_id, "vendor-x")
    response = await desk.submit(assessment_id, "vendor-x", in_place=list(Control), findings=[
        {"title": "ok", "control": "mfa_email", "cvss_vector": HIGH},
        {"title": "bad", "control": "mfa_email", "cvss_vector": "CVSS:3.1/AV:N/AC:L"}])
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "findings.1.cvss_vector"
    assert await desk.status(assessment_id) == "accepted"
    risk = (await desk.risk(terms.policy_number)).json()
    assert (risk["score"], risk["items"]) == (None, [])


@pytest.mark.parametrize(("vector", "named"), [
    (f"{CRITICAL_4}/MVC:N/MVI:N/MVA:N", "MVC, MVI, MVA"),  # 9.3, but the package says 0.0
    (f"{CRITICAL}/E:U/RL:O/RC:U", "E, RL, RC"),
])
async def test_a_vector_beyond_the_base_metrics_is_a_422_naming_the_field_and_changes_nothing(
        desk: Desk, vector: str, named: str) -> None:
    terms, assessment_id = await desk.policy()
    await desk.assign(terms, assessment_id, "vendor-x")
    response = await desk.submit(assessment_id, "vendor-x", in_place=list(Control), findings=[
        {"title": "ok", "control": "mfa_email", "cvss_vector": HIGH},
        {"title": "modified", "control": "mfa_email", "cvss_vector": vector}])
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == "findings.1.cvss_vector"
    assert f"{named}: not CVSS" in error["message"]
    assert "base vector only" in error["message"]
    assert await desk.status(assessment_id) == "accepted"
    risk = (await desk.risk(terms.policy_number)).json()
    assert (risk["score"], risk["items"]) == (None, [])


async def test_a_client_score_is_refused(desk: Desk) -> None:
    terms, assessment_id = await desk.policy()
    await desk.assign(terms, assessment_id, "vendor-y")
    response = await desk.submit(assessment_id, "vendor-y", in_place=[], findings=[
        {"title": "x", "control": "mfa_email", "cvss_vector": HIGH, "cvss_score": 1.0}])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "findings.0.cvss_score"


async def test_a_completed_assessment_cannot_be_submitted_twice(desk: Desk) -> None:
    terms, assessment_id = await desk.policy()
    await desk.assign(terms, assessment_id, "vendor-z")
    first = await desk.submit(assessment_id, "vendor-z", in_place=list(Control))
    assert first.status_code == 200, first.text
    assert (first.json()["score"], first.json()["tier"]) == (100, "A")
    again = await desk.submit(assessment_id, "vendor-z", in_place=[])
    assert again.status_code == 409


async def test_an_operator_requests_an_assessment_once_at_a_time(desk: Desk) -> None:
    terms, _ = await desk.assessed(in_place=list(Control))
    url = f"/v1/policies/{terms.policy_number}/assessments"
    response = await desk.client.post(url, headers=desk.tokens.operator())
    assert response.status_code == 202, response.text
    assert response.json()["reason"] == "requested"
    assert response.json()["status"] == "requested"
    again = await desk.client.post(url, headers=desk.tokens.operator())
    assert again.status_code == 409
    unknown = await desk.client.post("/v1/policies/POL-none/assessments",
                                     headers=desk.tokens.operator())
    assert unknown.status_code == 404


async def test_a_renewal_asks_for_a_new_assessment(desk: Desk) -> None:
    terms, _ = await desk.assessed(in_place=list(Control))
    # the renewal comes later: on a clock standing still both assessments would have the same
    # requested_at, and "the latest" would be whichever PostgreSQL happened to return first
    desk.clock.advance(timedelta(days=1))
    renewed = terms.model_copy(update={"period_start": terms.period_end,
                                       "period_end": terms.period_end + timedelta(days=365)})
    await desk.publish(PolicyUpdated(policy=renewed, version=2), POLICIES.name,
                       terms.policy_number)

    async def renewal() -> bool:
        found = await desk.assessment_of(terms.policy_number)
        return found is not None and found.reason == "renewed"

    assert await eventually(renewal, what="renewal assessment")


async def test_two_operators_at_once_open_one_assessment(desk: Desk) -> None:
    terms, _ = await desk.assessed(in_place=list(Control))
    desk.clock.advance(timedelta(minutes=1))  # or the two assessments' order is a tie
    url = f"/v1/policies/{terms.policy_number}/assessments"
    answers = await asyncio.gather(*(desk.client.post(url, headers=desk.tokens.operator(f"op-{i}"))
                                     for i in range(4)))
    assert sorted(r.status_code for r in answers) == [202, 409, 409, 409]
    risk = (await desk.risk(terms.policy_number)).json()
    assert [a["reason"] for a in risk["assessments"]] == ["requested", "registered"]
