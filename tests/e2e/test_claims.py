"""Whole claims through the public APIs, with every service in its own process on PostgreSQL
and Tansu, as in production."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cyberclaims.client import Actor, Api, wait_for
from cyberclaims.demo import (
    WEBHOOK_SECRET,
    WebhookReceiver,
    claim_in,
    dispatched_jobs,
    play_ransomware_claim,
    policy_body,
)
from tests.e2e.system import System

pytestmark = pytest.mark.slow

CONTACT = {"name": "Wang Fang", "email": "wang.fang@client.example", "phone": "+86 10 8888 0000"}


def verify_signature(header: str, body: bytes, secret: str) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


def insure(api: Api, region: str, **policy: Any) -> tuple[Actor, str]:
    suffix = uuid.uuid4().hex[:6]
    org_id, number = f"org-{suffix}", f"POL-E2E-{suffix}"
    api.operator().post("intake", "/v1/policies", policy_body(
        org_id, number, datetime.now(UTC), region=region, **policy))
    return api.policyholder(org_id), number


def vendor(api: Api, region: str, capabilities: list[str], rating: float = 4.0) -> Actor:
    vendor_id = f"v-{uuid.uuid4().hex[:8]}"
    api.operator().post("triage", "/v1/vendors", {
        "vendor_id": vendor_id, "name": vendor_id, "regions": [region],
        "capabilities": capabilities, "capacity": 5, "rating": rating})
    return api.vendor(vendor_id)


def report(holder: Actor, number: str, category: str, **fields: Any) -> str:
    now = datetime.now(UTC)
    body = {"policy_number": number, "category": category, "title": f"{category} at the client",
            "description": "Reported by the e2e suite", "contact": CONTACT,
            "occurred_at": (now - timedelta(hours=3)).isoformat(),
            "discovered_at": (now - timedelta(hours=2)).isoformat(), **fields}
    incident = holder.post("intake", "/v1/incidents", body,
                           headers={"Idempotency-Key": uuid.uuid4().hex})
    return str(incident["id"])


def complete(vendor: Actor, job: dict[str, Any], losses: list[dict[str, str]],
             attribution: str = "criminal") -> None:
    vendor.post("triage", f"/v1/jobs/{job['id']}/accept")
    vendor.post("triage", f"/v1/jobs/{job['id']}/complete", {
        "root_cause": "Compromised mailbox", "attack_vector": "email_phishing",
        "attribution": attribution, "contained_at": datetime.now(UTC).isoformat(),
        "verified_losses": losses})


def timeline_types(holder: Actor, incident_id: str) -> list[str]:
    return [e["type"] for e in holder.get("intake", f"/v1/incidents/{incident_id}")["timeline"]]


def test_the_demo_story_pays_the_claim_once(system: System, api: Api) -> None:
    with WebhookReceiver() as receiver:
        story = play_ransomware_claim(api, receiver.url, region="CN-GD")
        hooks = wait_for("webhooks", lambda: receiver.received)

    # before the incident: 70 for the controls in place, -10 for the 9.8 VPN finding
    assert (story.risk["score"], story.risk["tier"]) == (60, "C")
    assert story.risk["premium_modifier_percent"] == 20
    assert {i["source"] for i in story.risk["items"]} == {"missing_control", "finding",
                                                          "exposure"}
    # the exposure alert is emailed to the policy's contact (risk's notifications by email)
    assert [d["target"] for d in story.exposure_emails] == ["it@widget.example"]
    assert story.claim["status"] == "paid"
    assert Decimal(story.claim["payable"]) == Decimal("1530000.00")
    assert Decimal(story.claim["payment"]["amount"]) == Decimal("1530000.00")
    assert len(story.claim["approvals"]) == 2
    types = [entry["type"] for entry in story.incident["timeline"]]
    for expected in ("incident.reported", "incident.triaged", "job.dispatched",
                     "response.completed", "claim.approved", "payment.succeeded"):
        assert expected in types
    assert story.incident["status"] == "paid"
    for hook in hooks:
        assert verify_signature(hook.headers["X-Cyberclaims-Signature"], hook.body,
                                WEBHOOK_SECRET)
    payments = api.http.get(f"{system.urls['payments']}/v1/payments").json()
    assert sum(1 for p in payments["items"] if Decimal(p["amount"]) == Decimal("1530000.00")) == 1
    wait_for("emails on disk", lambda: list(system.maildir.glob("*.eml")))


def test_data_breach_on_critical_infrastructure_sets_a_one_hour_regulatory_deadline(
        system: System, api: Api) -> None:
    holder, number = insure(api, "CN-BJ", critical_infrastructure=True, industry="energy")
    vendor(api, "CN-BJ", ["forensics", "legal_counsel", "notification_services",
                          "crisis_communications"])
    discovered = datetime.now(UTC) - timedelta(minutes=20)
    incident_id = report(holder, number, "data_breach", records_exposed=2_500_000,
                         data_types=["pii"], discovered_at=discovered.isoformat(),
                         occurred_at=(discovered - timedelta(hours=1)).isoformat())

    adjuster = api.adjuster("adj-1", "100000")
    triage = wait_for("the triage", lambda: adjuster.call(
        "triage", "GET", f"/v1/incidents/{incident_id}/triage", expect=(200, 404)),
        until=lambda t: bool(t) and t.get("priority") is not None and len(t.get("jobs", [])) == 4)
    assert triage["priority"] == "P1"
    assert triage["regulatory_grade"] == "relatively_serious"
    deadline = datetime.fromisoformat(triage["regulatory_deadline"])
    assert abs(deadline - (discovered + timedelta(hours=1))) < timedelta(seconds=1)
    job_types = sorted(job["job_type"] for job in triage["jobs"])
    assert job_types == ["crisis_communications", "forensics", "legal_counsel",
                         "notification_services"]

    incident = wait_for("the deadline in intake",
                        lambda: holder.get("intake", f"/v1/incidents/{incident_id}"),
                        until=lambda i: i["regulatory_deadline"] is not None)
    assert datetime.fromisoformat(incident["regulatory_deadline"]) == deadline
    wait_for("the triage notification in the policyholder's feed",
             lambda: [n for n in holder.get("notify", "/v1/notifications")["items"]
                      if n["incident_id"] == incident_id
                      and n["event_type"].endswith("incident.triaged.v1")])


def test_business_email_compromise_under_the_retention_closes_without_payment(
        system: System, api: Api) -> None:
    holder, number = insure(api, "CN-SH")
    bec_vendor = vendor(api, "CN-SH", ["forensics", "funds_recovery"])
    incident_id = report(holder, number, "business_email_compromise",
                         funds_transferred="30000.00")
    jobs = dispatched_jobs(api, incident_id, expected=2)
    for _, job in jobs:
        losses = ([{"section": "funds_transfer_fraud", "amount": "30000.00",
                    "description": "Wire to a fraudulent account"}]
                  if job["job_type"] == "funds_recovery" else
                  [{"section": "incident_response", "amount": "12000.00",
                    "description": "Mailbox forensics"}])
        complete(bec_vendor, job, losses)

    claim = claim_in(api.adjuster("adj-1", "100000"), incident_id, {"closed_without_payment"})
    assert Decimal(claim["payable"]) == Decimal("0.00")
    assert claim["payment"] is None
    wait_for("the timeline", lambda: timeline_types(holder, incident_id),
             until=lambda types: "claim.closed_without_payment" in types)


def test_a_claim_with_a_coverage_question_is_denied_by_an_adjuster(
        system: System, api: Api) -> None:
    holder, number = insure(api, "CN-ZJ")
    ddos_vendor = vendor(api, "CN-ZJ", ["ddos_mitigation"])
    now = datetime.now(UTC)
    incident_id = report(holder, number, "ddos", systems_down=True,
                         occurred_at=(now - timedelta(hours=100)).isoformat(),
                         discovered_at=(now - timedelta(hours=90)).isoformat())
    [(_, job)] = dispatched_jobs(api, incident_id, expected=1)
    complete(ddos_vendor, job, [{"section": "incident_response", "amount": "90000.00",
                                 "description": "Scrubbing service"}])

    adjuster = api.adjuster("adj-2", "500000")
    # Above PAYOUT_VENDOR_VERIFICATION_LIMIT (50,000) a vendor's item waits for an adjuster.
    claim = wait_for("the vendor's item on the claim", lambda: adjuster.call(
        "payout", "GET", f"/v1/incidents/{incident_id}/claim", expect=(200, 404)),
        until=lambda found: bool(found) and found.get("response_completed", False))
    [scrubbing] = [loss for loss in claim["losses"] if loss["state"] == "unverified"]
    adjuster.post("payout", f"/v1/claims/{claim['id']}/losses/{scrubbing['id']}/verify",
                  {"note": "Scrubbing invoice matches the contract"})
    claim = claim_in(adjuster, incident_id, {"pending_approval"})
    assert "LATE_NOTICE" in claim["coverage_questions"]
    adjuster.post("payout", f"/v1/claims/{claim['id']}/deny",
                  {"reason": "Notified 90 hours after discovery; the policy requires 72"})
    claim = claim_in(adjuster, incident_id, {"denied"})
    assert claim["payment"] is None
    wait_for("the timeline", lambda: timeline_types(holder, incident_id),
             until=lambda types: "claim.denied" in types)


def test_a_job_not_accepted_in_time_goes_to_the_next_vendor(system: System, api: Api) -> None:
    holder, number = insure(api, "CN-SC")
    slow = vendor(api, "CN-SC", ["forensics"], rating=4.9)
    backup = vendor(api, "CN-SC", ["forensics"], rating=3.0)
    incident_id = report(holder, number, "malware")
    slow_id, backup_id = slow.name.split()[-1], backup.name.split()[-1]

    [(first, _)] = dispatched_jobs(api, incident_id, expected=1)
    assert first == slow_id
    [(second, job)] = wait_for("re-dispatch", lambda: [
        pair for pair in dispatched_jobs(api, incident_id, expected=1)
        if pair[0] == backup_id], timeout=60)
    assert second == backup_id
    assert [h["status"] for h in job["history"]].count("expired") == 1
    # Triage's API shows the re-dispatch as soon as triage commits; intake's timeline and
    # notify's deliveries learn of the expiry from Kafka a moment later.
    wait_for("the timeline", lambda: timeline_types(holder, incident_id),
             until=lambda types: "job.expired" in types)
    operator = api.operator()
    wait_for("the operators' alert", lambda: operator.get(
        "notify", "/v1/deliveries", incident_id=incident_id)["items"],
        until=lambda items: any(d["recipient"] == "team:operators" for d in items))
