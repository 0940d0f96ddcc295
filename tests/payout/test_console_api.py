"""The read endpoints behind the adjuster console: who is signed in, the queues (mine first,
search, paging) and the claim file (policy, incident with triage's grading, findings, why each
coverage question was raised). The database is shared by the session's tests, so each test
searches for its own policyholder."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from services.payout import models
from services.payout.queues import explain
from shared.controls import AttackVector
from shared.events import (
    CoverageQuestion,
    Finding,
    IncidentResponseCompleted,
    IncidentTriaged,
    JobType,
    LossSubmitted,
    PolicyRegistered,
    Priority,
    RegulatoryGrade,
    Section,
    SectionTerms,
)
from tests.payout.conftest import Incident, apply, now, policy_terms, reported_incident
from tests.support.service import Tokens, running

IR, BI = Section.incident_response, Section.business_interruption
LARGE_POLICY: dict[str, Any] = {
    "aggregate_limit": Decimal("9000000"),
    "sections": {IR: SectionTerms(sublimit=Decimal("5000000")),
                 BI: SectionTerms(sublimit=Decimal("300000"))},
}
"""A policy whose incident response sublimit lets a claim's payable pass 1,000,000."""


def triaged(incident: Incident) -> IncidentTriaged:
    """Triage's grading of the incident: P1, serious."""
    return IncidentTriaged(
        incident_id=incident.incident_id, org_id=incident.policy.org_id,
        policy_number=incident.policy.policy_number, priority=Priority.P1,
        regulatory_grade=RegulatoryGrade.serious, regulatory_deadline=now() + timedelta(hours=20),
        jobs=[], triaged_at=now())


def with_finding(completed: IncidentResponseCompleted, root_cause: str) -> IncidentResponseCompleted:
    """The completed response with one forensic vendor's findings."""
    return completed.model_copy(update={"findings": [Finding(
        job_id=uuid.uuid4(), job_type=JobType.forensics, vendor_id="dfir-a",
        root_cause=root_cause, attack_vector=AttackVector.vpn, attribution=completed.attribution,
        contained_at=now(), records_confirmed=None)]})


async def _queue(api: httpx.AsyncClient, headers: dict[str, str], name: str,
                 **params: Any) -> dict[str, Any]:
    response = await api.get(f"/v1/queues/{name}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _pending(app: FastAPI, holder: str, vendor_amount: str) -> Incident:
    """A claim pending approval whose payable is the vendor's amount less the 50,000 retention."""
    incident = await reported_incident(app, holder_name=holder, **LARGE_POLICY)
    await apply(app, incident.completed({IR: vendor_amount}))
    return incident


async def test_the_approval_queue_puts_mine_first_and_searches_and_pages(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    holder = f"Queue Holder {uuid.uuid4().hex[:8]}"
    small_limit = tokens.adjuster("queue-small", "1000000")
    big_limit = tokens.adjuster("queue-big", "5000000")
    other_big = tokens.adjuster("queue-big-2", "5000000")
    async with running(quiet_payout, wait_for_consumer=False) as api:
        large = await _pending(quiet_payout, holder, "1250000")   # payable 1,200,000
        small = await _pending(quiet_payout, holder, "150000")    # payable 100,000
        waiting = await reported_incident(quiet_payout, holder_name=holder)
        await apply(quiet_payout, waiting.submitted(BI, hourly_loss="1000"))
        await apply(quiet_payout, waiting.completed({}))

        page = await _queue(api, small_limit, "approval", q=holder)
        assert [(i["incident_id"], i["mine"]) for i in page["items"]] == [
            (str(small.incident_id), True), (str(large.incident_id), False)]
        assert page["items"][0]["holder_name"] == holder
        page = await _queue(api, big_limit, "approval", q=holder)
        assert [(i["incident_id"], i["mine"]) for i in page["items"]] == [
            (str(large.incident_id), True), (str(small.incident_id), True)]

        # A second approver: once I approved the large claim it is no longer mine, but it is
        # still another adjuster's.
        claim = page["items"][0]["id"]
        first = await api.post(f"/v1/claims/{claim}/approve", headers=big_limit, json={})
        assert first.status_code == 200 and first.json()["status"] == "pending_approval"
        mine = {i["incident_id"]: i["mine"]
                for i in (await _queue(api, big_limit, "approval", q=holder))["items"]}
        assert mine == {str(large.incident_id): False, str(small.incident_id): True}
        theirs = await _queue(api, other_big, "approval", q=holder)
        assert theirs["items"][0]["incident_id"] == str(large.incident_id)
        assert theirs["items"][0]["mine"] is True

        verification = await _queue(api, small_limit, "verification", q=holder)
        assert [(i["incident_id"], i["needs"]) for i in verification["items"]] == [
            (str(waiting.incident_id), ["verify_losses", "set_outage"])]

        second = await api.post(f"/v1/claims/{claim}/approve", headers=other_big, json={})
        assert second.status_code == 200 and second.json()["status"] == "approved"
        decided = await _queue(api, small_limit, "decided", q=holder)
        assert [i["incident_id"] for i in decided["items"]] == [str(large.incident_id)]
        assert decided["items"][0]["decided_at"] is not None

        # Search by incident id and by policy number; paging is bounded and counted.
        by_id = await _queue(api, small_limit, "approval", q=str(small.incident_id))
        assert [i["incident_id"] for i in by_id["items"]] == [str(small.incident_id)]
        by_policy = await _queue(api, small_limit, "approval",
                                 q=small.policy.policy_number.lower())
        assert [i["incident_id"] for i in by_policy["items"]] == [str(small.incident_id)]
        first_page = await _queue(api, small_limit, "verification", q=holder[:6], limit=1)
        assert first_page["limit"] == 1 and len(first_page["items"]) == 1
        assert first_page["total"] >= 1
        nothing = await _queue(api, small_limit, "approval", q="%_no such holder_%")
        assert nothing == {"items": [], "total": 0, "limit": 20, "offset": 0}


async def test_queues_and_claim_files_are_for_adjusters_and_operators_and_check_their_input(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    async with running(quiet_payout, wait_for_consumer=False) as api:
        assert (await api.get("/v1/queues/approval")).status_code == 401
        holder = tokens.policyholder("org-queue")
        assert (await api.get("/v1/queues/approval", headers=holder)).status_code == 403
        assert (await api.get("/v1/me", headers=holder)).status_code == 403
        operator = tokens.operator()
        assert (await api.get("/v1/queues/decided", headers=operator)).status_code == 200
        for path, field in (("/v1/queues/everything", "name"),
                            ("/v1/queues/approval?limit=101", "limit"),
                            ("/v1/queues/approval?offset=-1", "offset"),
                            (f"/v1/queues/approval?q={'x' * 201}", "q"),
                            ("/v1/queues/approval?q=", "q")):
            response = await api.get(path, headers=operator)
            assert response.status_code == 422, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["errors"][0]["field"] == field, path
        missing = await api.get(f"/v1/claims/{uuid.uuid4()}/file", headers=operator)
        assert missing.status_code == 404


async def test_me_says_who_is_signed_in_and_their_authority_limit(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    async with running(quiet_payout, wait_for_consumer=False) as api:
        me = await api.get("/v1/me", headers=tokens.adjuster("me-1", "250000"))
        assert me.status_code == 200
        assert me.json() == {"sub": "me-1", "role": "adjuster", "authority_limit": "250000.00",
                             "two_approver_threshold": "1000000.00"}
        operator = await api.get("/v1/me", headers=tokens.operator("ops-me"))
        assert operator.json()["authority_limit"] is None


async def test_the_claim_file_has_the_policy_incident_grading_findings_and_explanations(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("file-reader", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as api:
        # Occurred within 30 days of the policy's start: EARLY_CLAIM.
        incident = await reported_incident(quiet_payout, period_start=now() - timedelta(days=10))
        await apply(quiet_payout, triaged(incident))
        await apply(quiet_payout, triaged(incident))  # a replay changes nothing
        await apply(quiet_payout, with_finding(incident.completed({IR: "150000"}),
                                               "phished VPN credentials"))
        claim = (await api.get(f"/v1/incidents/{incident.incident_id}/claim",
                               headers=adjuster)).json()
        response = await api.get(f"/v1/claims/{claim['id']}/file", headers=adjuster)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["policy"]["policy_number"] == incident.policy.policy_number
        assert body["policy"]["sections"]["incident_response"]["sublimit"] == "200000.00"
        assert body["incident"]["title"] == "Files encrypted"
        assert body["incident"]["description"] == "Ransom note on 12 hosts."
        assert (body["incident"]["priority"], body["incident"]["regulatory_grade"]) == ("P1", "serious")
        assert body["findings"][0]["root_cause"] == "phished VPN credentials"
        assert body["attribution"] == "criminal"
        assert body["verified_outage"] is None
        assert [q["code"] for q in body["coverage_questions"]] == ["EARLY_CLAIM"]
        assert "within 30 days of the policy's start" in body["coverage_questions"][0]["explanation"]


async def test_triage_arriving_before_the_report_is_kept(quiet_payout: FastAPI, tokens: Tokens
                                                         ) -> None:
    """Triage's event and the report travel on different topics: either may come first."""
    adjuster = tokens.adjuster("file-order", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as api:
        early = Incident("unused", policy_terms())
        await apply(quiet_payout, triaged(early))
        await apply(quiet_payout, PolicyRegistered(policy=early.policy))
        await apply(quiet_payout, early.reported())
        claim = (await api.get(f"/v1/incidents/{early.incident_id}/claim", headers=adjuster)).json()
        incident = (await api.get(f"/v1/claims/{claim['id']}/file",
                                  headers=adjuster)).json()["incident"]
        assert (incident["title"], incident["priority"]) == ("Files encrypted", "P1")


async def test_the_console_runs_only_its_own_script_and_styles_from_the_package(
    quiet_payout: FastAPI,
) -> None:
    async with running(quiet_payout, wait_for_consumer=False) as api:
        page = await api.get("/console")
        assert '<script src="/console/console.js" defer></script>' in page.text
        assert "<script>" not in page.text and "style=" not in page.text
        for asset, media_type in (("common.js", "text/javascript"), ("console.js", "text/javascript"),
                                  ("common.css", "text/css")):
            response = await api.get(f"/console/{asset}")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(media_type)
            assert response.headers["Content-Security-Policy"] == page.headers[
                "Content-Security-Policy"]
        missing = await api.get("/console/../app.py")
        assert missing.status_code == 404
        assert (await api.get("/console/secrets.js")).status_code == 404


def test_a_coverage_question_is_explained_with_the_claims_own_facts() -> None:
    terms = policy_terms(notice_period_hours=72)
    discovered = now() - timedelta(hours=100)
    incident = models.Incident(occurred_at=discovered - timedelta(hours=1),
                               discovered_at=discovered,
                               reported_at=discovered + timedelta(hours=80))
    explained = explain(CoverageQuestion.LATE_NOTICE, terms, incident)
    assert explained.startswith("The policyholder reported the incident later")
    assert explained.endswith("Here: it was reported 80.0 hours after discovery; the policy asks "
                              "for notice within 72 hours.")
    assert explain(CoverageQuestion.REPEAT_INCIDENT, None, None).endswith(
        "within 7 days: check they are not one event claimed twice.")


async def _pending_then_loss(app: FastAPI, holder: str, section: Section,
                             **claimed: str) -> LossSubmitted:
    """A claim pending approval at a payable of 100,000, then a policyholder's loss on it."""
    incident = await _pending(app, holder, "150000")
    loss = incident.submitted(section, **claimed)
    await apply(app, loss)
    return loss

async def test_a_loss_submitted_on_a_pending_claim_is_verified_before_any_approval(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    """The pending assessment does not include the new loss: the claim joins the verification
    queue, an approval waits (409), and verifying the loss assesses the claim again, so what is
    approved is the payable with it."""
    holder = f"Late Loss Holder {uuid.uuid4().hex[:8]}"
    adjuster = tokens.adjuster("late-loss", "5000000")
    async with running(quiet_payout, wait_for_consumer=False) as api:
        loss = await _pending_then_loss(quiet_payout, holder, IR, amount="20000")
        verification = await _queue(api, adjuster, "verification", q=holder)
        assert [(i["incident_id"], i["status"], i["needs"]) for i in verification["items"]] == [
            (str(loss.incident_id), "pending_approval", ["verify_losses"])]
        claim = verification["items"][0]["id"]
        before = (await api.get(f"/v1/claims/{claim}", headers=adjuster)).json()
        approval = await _queue(api, adjuster, "approval", q=holder)
        assert [i["mine"] for i in approval["items"]] == [False]  # not approvable yet
        refused = await api.post(f"/v1/claims/{claim}/approve", headers=adjuster, json={})
        assert refused.status_code == 409
        assert "verify or reject them first" in refused.json()["detail"]
        leaving_it_out = await api.post(f"/v1/claims/{claim}/assess", headers=adjuster)
        assert leaving_it_out.status_code == 409
        assert "verify or reject them first" in leaving_it_out.json()["detail"]

        verified = await api.post(f"/v1/claims/{claim}/losses/{loss.loss_id}/verify",
                                  headers=adjuster, json={"note": "invoice checked"})
        assert verified.status_code == 200, verified.text
        after = verified.json()
        assert after["assessment_id"] != before["assessment_id"]
        assert after["payable"] == "120000.00"
        assert (await _queue(api, adjuster, "verification", q=holder))["items"] == []
        approval = await _queue(api, adjuster, "approval", q=holder)
        assert [i["mine"] for i in approval["items"]] == [True]
        approved = await api.post(f"/v1/claims/{claim}/approve", headers=adjuster, json={})
        assert approved.status_code == 200 and approved.json()["status"] == "approved"


async def test_a_per_hour_loss_on_a_pending_claim_waits_for_its_outage_before_any_approval(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    """Verified without an outage figure, a per-hour loss cannot be assessed yet: the pending
    assessment is stale, so approving waits (409) and the queue asks for the outage; setting it
    assesses the claim again with the loss."""
    holder = f"Late Outage Holder {uuid.uuid4().hex[:8]}"
    adjuster = tokens.adjuster("late-outage", "5000000")
    async with running(quiet_payout, wait_for_consumer=False) as api:
        loss = await _pending_then_loss(quiet_payout, holder, BI, hourly_loss="1000")
        claim = (await _queue(api, adjuster, "verification", q=holder))["items"][0]["id"]
        verified = await api.post(f"/v1/claims/{claim}/losses/{loss.loss_id}/verify",
                                  headers=adjuster, json={"note": "rate checked"})
        assert verified.status_code == 200, verified.text
        assert verified.json()["status"] == "pending_approval"
        queue = await _queue(api, adjuster, "verification", q=holder)
        assert [(i["status"], i["needs"]) for i in queue["items"]] == [
            ("pending_approval", ["set_outage"])]
        refused = await api.post(f"/v1/claims/{claim}/approve", headers=adjuster, json={})
        assert refused.status_code == 409
        assert "the outage hours of a per-hour loss" in refused.json()["detail"]

        outage = await api.put(f"/v1/claims/{claim}/outage", headers=adjuster,
                               json={"outage_hours": "30", "note": "ERP logs"})
        assert outage.status_code == 200, outage.text
        assert outage.json()["payable"] != verified.json()["payable"]
        approved = await api.post(f"/v1/claims/{claim}/approve", headers=adjuster, json={})
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
