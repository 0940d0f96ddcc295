"""`cyberclaims demo`: a full ransomware claim played against the running system, as its
kinds of users would, through the public APIs only.

Before the incident: the new policy's risk assessment goes to a panel assessor, which submits
its control checklist and findings; the policyholder sees its tier and remediation plan, and
the assessor raises an exposure alert. Then the claim: an operator registers panel vendors
and subscribes webhooks; the policyholder
reports; vendors accept and complete with verified losses; the policyholder submits its
business-interruption loss; an adjuster verifies it and two adjusters approve; the payment
is made. Prints the incident's timeline, the claim's breakdown and what went out.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cyberclaims.client import Actor, Api, wait_for

WEBHOOK_SECRET = "demo-webhook-secret-0123456789"  # noqa: S105 - a throwaway demo receiver's key
EXPOSURE_ALERTED = "cyberclaims.risk.exposure_alerted.v1"


@dataclass
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A local HTTP endpoint standing in for a subscriber's webhook URL."""

    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.received.append(ReceivedWebhook(self.path, dict(self.headers),
                                                         self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class ClaimStory:
    """What the demo did, for printing and for the end-to-end tests to check."""

    org_id: str
    policy_number: str
    incident_id: str = ""
    claim: dict[str, Any] = field(default_factory=dict)
    incident: dict[str, Any] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[tuple[Actor, str]] = field(default_factory=list)
    risk: dict[str, Any] = field(default_factory=dict)
    exposure_emails: list[dict[str, Any]] = field(default_factory=list)

    def unsubscribe(self) -> None:
        """The demo's webhook receiver goes away with the demo: so do its subscriptions."""
        for subscriber, subscription_id in self.subscriptions:
            subscriber.call("notify", "DELETE", f"/v1/subscriptions/{subscription_id}",
                            expect=(204, 404))


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def policy_body(org_id: str, policy_number: str, now: datetime, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy_number": policy_number, "org_id": org_id,
        "holder_name": "Shenzhen Widget Manufacturing Co.", "industry": "manufacturing",
        "region": "CN-GD", "period_start": (now - timedelta(days=180)).isoformat(),
        "period_end": (now + timedelta(days=185)).isoformat(),
        "aggregate_limit": "5000000.00", "retention": "50000.00",
        "contact_email": "it@widget.example",
        "sections": {
            "incident_response": {"sublimit": "500000.00"},
            "data_restoration": {"sublimit": "500000.00"},
            "business_interruption": {"sublimit": "300000.00"},
            "cyber_extortion": {"sublimit": "1000000.00"},
            "legal_and_notification": {"sublimit": "300000.00"},
            "funds_transfer_fraud": {"sublimit": "1000000.00"},
            "regulatory_fines": {"sublimit": "200000.00"},
        },
    }
    body.update(overrides)
    return body


PANEL = [
    ("dfir", ["forensics", "data_recovery", "crisis_communications"], 4.8),
    ("negotiators", ["ransomware_negotiation", "funds_recovery"], 4.5),
    ("counsel", ["legal_counsel", "notification_services"], 4.6),
    ("shield", ["ddos_mitigation", "forensics"], 4.1),
]


def vendor_body(vendor_id: str, name: str, region: str, capabilities: list[str],
                rating: float) -> dict[str, Any]:
    return {"vendor_id": vendor_id, "name": name, "regions": [region],
            "capabilities": capabilities, "capacity": 20, "rating": rating}


def register_panel(operator: Actor, suffix: str, region: str) -> list[str]:
    vendor_ids = []
    for name, capabilities, rating in PANEL:
        vendor_id = f"{name}-{suffix}"
        operator.post("triage", "/v1/vendors", vendor_body(
            vendor_id, f"{name.title()} Security", region, capabilities, rating))
        vendor_ids.append(vendor_id)
    return vendor_ids


ASSESSMENT = {
    "controls_in_place": ["offline_backups_tested", "mfa_email", "edr_on_endpoints",
                          "critical_patches_within_14_days", "privileged_access_separated",
                          "email_authentication_dmarc", "central_logging_90_days",
                          "security_awareness_training"],
    "findings": [{"title": "VPN appliance firmware 9 months old (CVE-2024-21762)",
                  "control": "critical_patches_within_14_days",
                  "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
}


def assess_the_policy(api: Api, story: ClaimStory, suffix: str, region: str) -> None:
    """The before: the policy's assessment through triage's dispatch, then an exposure alert."""
    operator = api.operator()
    holder = api.policyholder(story.org_id)
    operator.post("triage", "/v1/vendors", {
        "vendor_id": f"assessor-{suffix}", "name": "Assessor Security", "regions": [region],
        "capabilities": ["risk_assessment"], "capacity": 20, "rating": 4.7})
    assessment = wait_for(
        "the policy's assessment requested",
        lambda: operator.call("risk", "GET", f"/v1/risk/{story.policy_number}",
                              expect=(200, 404)),
        until=lambda risk: bool(risk.get("assessments")))["assessments"][0]
    job = wait_for(
        "the assessment job dispatched",
        lambda: [job for job in operator.get("triage", "/v1/jobs", status="dispatched",
                                             limit=100)["items"]
                 if job["assessment_id"] == assessment["id"]],
        until=bool)[0]
    assessor = api.vendor(job["vendor_id"])
    assessor.post("triage", f"/v1/jobs/{job['id']}/accept")
    say(f"{job['vendor_id']} accepted the risk assessment of {story.policy_number}")
    wait_for("risk to see the assessor",
             lambda: operator.get("risk", f"/v1/risk/{story.policy_number}")["assessments"][0],
             until=lambda found: found["status"] == "accepted")
    result = assessor.post("risk", f"/v1/assessments/{assessment['id']}/report", ASSESSMENT)
    say(f"assessed: score {result['score']}, tier {result['tier']}, premium modifier "
        f"{result['premium_modifier_percent']:+d} %")
    exposure = assessor.post("risk", "/v1/exposures", {
        "policy_number": story.policy_number, "kind": "exposed_service",
        "control": "mfa_remote_access", "title": "VPN portal accepts passwords without MFA",
        "description": "The SSL VPN login page answers from the internet with password only."})
    say(f"exposure alert: {exposure['title']} (fix by {exposure['due_at']})")
    story.risk = holder.get("risk", f"/v1/risk/{story.policy_number}")
    story.exposure_emails = wait_for(
        "the exposure alert emailed to the policy's contact",
        lambda: operator.get("notify", "/v1/deliveries", recipient=f"org:{story.org_id}",
                             channel="email", event_type=EXPOSURE_ALERTED)["items"],
        until=bool)


def ransomware_report(policy_number: str, now: datetime) -> dict[str, Any]:
    """A ransomware report dated from `now`: discovered 31 hours ago, within the policy's
    notice period (fixed dates would raise LATE_NOTICE a few days later)."""
    outage_start = now - timedelta(hours=31)
    return {
        "policy_number": policy_number, "category": "ransomware",
        "title": "ERP and file servers encrypted",
        "description": "Ransom note on 40 hosts; production planning is down.",
        "occurred_at": (now - timedelta(hours=32)).isoformat(),
        "discovered_at": outage_start.isoformat(),
        "contact": {"name": "Li Wei", "email": "li.wei@widget.example", "phone": "+86 755 1234 5678"},
        "systems_down": True, "outage_started_at": outage_start.isoformat(),
        "affected_hosts": 40, "ransom_demanded": "2000000.00",
    }


def dispatched_jobs(api: Api, incident_id: str,
                    expected: int) -> list[tuple[str, dict[str, Any]]]:
    """(vendor id, job) of the incident's jobs waiting to be accepted, whichever panel vendor
    triage chose (the operator sees every job; each vendor then acts on its own)."""

    def probe() -> list[tuple[str, dict[str, Any]]]:
        jobs = api.operator().get("triage", "/v1/jobs", incident_id=incident_id)["items"]
        return [(job["vendor_id"], job) for job in jobs if job["status"] == "dispatched"]

    return wait_for(f"{expected} dispatched jobs", probe, until=lambda jobs: len(jobs) >= expected)


def claim_in(adjuster: Actor, incident_id: str, statuses: set[str]) -> dict[str, Any]:
    claim: dict[str, Any] = wait_for(
        f"claim in {sorted(statuses)}",
        lambda: adjuster.call("payout", "GET", f"/v1/incidents/{incident_id}/claim",
                              expect=(200, 404)),
        until=lambda found: bool(found) and found.get("status") in statuses)
    return claim


def play_ransomware_claim(api: Api, webhook_url: str, region: str = "CN-GD") -> ClaimStory:
    suffix = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    story = ClaimStory(org_id=f"org-widget-{suffix}", policy_number=f"POL-DEMO-{suffix}")
    operator = api.operator()
    holder = api.policyholder(story.org_id)

    say(f"operator registers policy {story.policy_number} for {story.org_id}")
    operator.post("intake", "/v1/policies",
                  policy_body(story.org_id, story.policy_number, now, region=region))
    say("the policy's risk assessment, before any incident")
    assess_the_policy(api, story, suffix, region)
    say(f"operator registers the panel vendors serving {region}")
    vendor_ids = register_panel(operator, suffix, region)
    say("vendors and the policyholder subscribe their webhooks")
    for subscriber in [*(api.vendor(vendor_id) for vendor_id in vendor_ids), holder]:
        subscription = subscriber.post("notify", "/v1/subscriptions", {
            "url": f"{webhook_url}/{subscriber.name.split()[-1]}", "secret": WEBHOOK_SECRET})
        story.subscriptions.append((subscriber, subscription["id"]))

    say("policyholder reports ransomware: ERP encrypted, systems down")
    reported = ransomware_report(story.policy_number, now)
    incident = holder.post("intake", "/v1/incidents", reported,
                           headers={"Idempotency-Key": f"demo-{suffix}"})
    outage_start = datetime.fromisoformat(reported["outage_started_at"])
    story.incident_id = incident["id"]
    say(f"incident {story.incident_id} reported")

    jobs = dispatched_jobs(api, story.incident_id, expected=4)
    say(f"triage dispatched {len(jobs)} jobs: "
        + ", ".join(f"{job['job_type']} -> {vendor}" for vendor, job in jobs))
    invoices = {
        "forensics": ("incident_response", "180000.00", "Forensic investigation and containment"),
        "ransomware_negotiation": ("cyber_extortion", "850000.00",
                                   "Negotiated ransom and negotiation fee"),
        "data_recovery": ("data_restoration", "220000.00", "Rebuilt ERP from offline backups"),
        "crisis_communications": ("incident_response", "30000.00", "Crisis communications"),
    }
    for vendor_id, job in jobs:
        vendor = api.vendor(vendor_id)
        vendor.post("triage", f"/v1/jobs/{job['id']}/accept")
        section, amount, description = invoices[job["job_type"]]
        report: dict[str, Any] = {
            "root_cause": "Phished VPN credentials, no MFA", "attack_vector": "vpn",
            "attribution": "criminal", "contained_at": (now - timedelta(hours=2)).isoformat(),
            "verified_losses": [{"section": section, "amount": amount,
                                 "description": description}],
        }
        if job["job_type"] == "forensics":
            report |= {"outage_started_at": outage_start.isoformat(),
                       "outage_ended_at": (outage_start + timedelta(hours=30)).isoformat()}
        vendor.post("triage", f"/v1/jobs/{job['id']}/complete", report)
        say(f"{vendor_id} accepted and completed {job['job_type']} ({section} {amount})")

    say("policyholder claims business interruption at 15,000.00 an hour")
    holder.post("intake", f"/v1/incidents/{story.incident_id}/losses", {
        "section": "business_interruption", "hourly_loss": "15000.00",
        "description": "Lost net income while production planning was down",
    })
    first = api.adjuster("adjuster-chen", "2000000")
    second = api.adjuster("adjuster-wang", "5000000")
    claim = wait_for("the policyholder's loss on the claim",
                     lambda: first.call("payout", "GET",
                                        f"/v1/incidents/{story.incident_id}/claim",
                                        expect=(200, 404)),
                     until=lambda c: c.get("response_completed", False)  # a 404 has none
                     and any(loss["source"] == "policyholder" for loss in c["losses"]))
    for loss in claim["losses"]:
        if loss["state"] == "unverified":
            first.post("payout", f"/v1/claims/{claim['id']}/losses/{loss['id']}/verify",
                       {"note": "Checked against the monthly management accounts"})
            say(f"adjuster-chen verified the {loss['section']} loss")
    claim = claim_in(first, story.incident_id, {"pending_approval"})
    say(f"claim assessed: payable {claim['payable']}, needs "
        f"{claim['approvals_required']} approvals")
    first.post("payout", f"/v1/claims/{claim['id']}/approve", {})
    second.post("payout", f"/v1/claims/{claim['id']}/approve", {})
    say("adjuster-chen and adjuster-wang approved")
    story.claim = claim_in(first, story.incident_id, {"paid", "payment_failed"})
    say(f"payment {story.claim['payment']['state']}: {story.claim['payment']['amount']} "
        f"{story.claim['payment']['currency']}")
    story.incident = wait_for("the payment on the timeline",
                              lambda: holder.get("intake", f"/v1/incidents/{story.incident_id}"),
                              until=lambda i: i["status"] in ("paid", "payment_failed"))
    say("waiting for notify to deliver the news of the payment")
    story.deliveries = wait_for(
        "the payment's notifications",
        lambda: operator.get("notify", "/v1/deliveries", incident_id=story.incident_id,
                             limit=100)["items"],
        until=lambda items: any(d["kind"] == "payment_succeeded" and d["state"] == "delivered"
                                and d["channel"] == "webhook" for d in items))
    story.exposure_emails = operator.get("notify", "/v1/deliveries",
                                         recipient=f"org:{story.org_id}", channel="email",
                                         event_type=EXPOSURE_ALERTED)["items"]
    return story


def print_story(story: ClaimStory, receiver: WebhookReceiver) -> None:
    risk = story.risk
    print(f"\nRisk of {story.policy_number}: score {risk['score']}, tier {risk['tier']}, premium "
          f"modifier {risk['premium_modifier_percent']:+d} %"
          + (", referred to an underwriter" if risk["referred_to_underwriter"] else ""))
    for item in risk["items"]:
        print(f"  {item['state']:<8} due {item['due_at'][:10]}  {item['control']:<32} "
              f"{item['title']}")
    print("\nTimeline of incident", story.incident_id)
    for entry in story.incident["timeline"]:
        print(f"  {entry['at']}  {entry['type']:<28} {entry['summary']}")
    print("\nClaim breakdown (payable", story.claim["payable"], story.claim["payment"]["currency"]
          + ")")
    print(f"  {'section':<24}{'eligible':>14}{'retention':>12}{'net':>14}{'remaining':>14}"
          f"{'payable':>14}")
    for row in story.claim["sections"]:
        print(f"  {row['section']:<24}{row['eligible']:>14}{row['retention_absorbed']:>12}"
              f"{row['net']:>14}{row['sublimit_remaining']:>14}{row['payable']:>14}")
    print("  coverage questions:", ", ".join(story.claim["coverage_questions"]) or "none")
    print("\nWebhooks received by the subscribers:")
    for hook in receiver.received:
        event = json.loads(hook.body).get("type", "?") if hook.body else "?"
        print(f"  {hook.path:<24} {event}")
    emails = [*(d for d in story.deliveries if d["channel"] == "email"), *story.exposure_emails]
    print(f"\nEmails sent ({len(emails)}):")
    for delivery in emails:
        print(f"  {delivery['state']:<10} {delivery['target']:<32} {delivery['kind']}")


def run_demo(api: Api) -> ClaimStory:
    with WebhookReceiver() as receiver:
        story = play_ransomware_claim(api, receiver.url)
        try:
            print_story(story, receiver)
        finally:
            story.unsubscribe()
    return story
