"""The load driver: plays whole claim lifecycles through the public APIs as every kind of user
would, and keeps playing through faults (a request that fails is tried again on the next round;
a report is retried under its Idempotency-Key, so a retry never makes a second incident).

Three kinds of lifecycle, one incident per policy (so no REPEAT_INCIDENT question):
- `auto`: a DDoS, one vendor job; the verified loss pays automatically (payable <= 50,000);
- `approve`: malware, one forensics job with a verified outage, and the policyholder's
  business-interruption loss that an adjuster verifies; one adjuster approves;
- `two`: ransomware, three jobs; payable above 1,000,000, so two adjusters approve.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from shared.auth import Role
from tests.support.service import provider_signer

REGION = "CN-GD"
FINAL = {"paid", "closed_without_payment", "denied"}
KINDS = ("auto", "approve", "two")
PANEL = {
    "dfir": ["forensics", "data_recovery"],
    "negotiators": ["ransomware_negotiation"],
    "shield": ["ddos_mitigation"],
}
CATEGORY = {"auto": "ddos", "approve": "malware", "two": "ransomware"}
LOSSES = {  # job type -> (section, amount) per lifecycle kind
    ("auto", "ddos_mitigation"): ("incident_response", "30000.00"),
    ("approve", "forensics"): ("incident_response", "300000.00"),
    ("two", "forensics"): ("incident_response", "100000.00"),
    ("two", "ransomware_negotiation"): ("cyber_extortion", "1000000.00"),
    ("two", "data_recovery"): ("data_restoration", "200000.00"),
}
EXPECTED_JOBS = {"auto": 1, "approve": 1, "two": 3}
EXPECTED_PAYABLE = {"auto": Decimal("20000.00"), "approve": Decimal("294000.00"),
                    "two": Decimal("1290000.00")}
RETRYABLE = (httpx.TransportError,)
ADJUSTERS = ("chaos-adjuster-1", "chaos-adjuster-2")


@dataclass
class Lifecycle:
    kind: str
    org_id: str
    policy_number: str
    key: str
    incident_id: str | None = None
    report_status: int | None = None
    loss_submitted: bool = False
    status: str | None = None
    started: float = field(default_factory=time.monotonic)
    done_after: float | None = None
    last_refusal: str | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL


class Driver:
    def __init__(self, urls: dict[str, str], webhook_url: str, run_id: str) -> None:
        self.urls = urls
        self.webhook_url = webhook_url
        self.run_id = run_id
        self.tokens = provider_signer()
        self.http = httpx.AsyncClient(timeout=10.0)
        self.lifecycles: list[Lifecycle] = []
        self.by_incident: dict[str, Lifecycle] = {}
        self.vendors = {f"{name}-{run_id}": caps for name, caps in PANEL.items()}
        self.transient_errors = 0

    async def close(self) -> None:
        await self.http.aclose()

    def _bearer(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.tokens.issue(ttl_seconds=6 * 3600, **claims)}

    def operator(self) -> dict[str, str]:
        return self._bearer(role=Role.operator, sub="chaos-ops")

    def holder(self, org_id: str) -> dict[str, str]:
        return self._bearer(role=Role.policyholder, sub=f"it@{org_id}", org_id=org_id)

    def vendor(self, vendor_id: str) -> dict[str, str]:
        return self._bearer(role=Role.vendor, sub=f"soc@{vendor_id}", vendor_id=vendor_id)

    def adjuster(self, sub: str) -> dict[str, str]:
        return self._bearer(role=Role.adjuster, sub=sub)

    async def call(self, method: str, service: str, path: str, headers: dict[str, str],
                   **kwargs: Any) -> httpx.Response | None:
        """One request; None when the service could not be reached or answered 5xx (a fault
        the next round retries)."""
        try:
            response = await self.http.request(method, self.urls[service] + path,
                                               headers=headers, **kwargs)
        except RETRYABLE:
            self.transient_errors += 1
            return None
        if response.status_code >= 500:
            self.transient_errors += 1
            return None
        return response

    async def until_ok(self, method: str, service: str, path: str, headers: dict[str, str],
                       ok: tuple[int, ...], timeout: float = 120.0, **kwargs: Any
                       ) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            response = await self.call(method, service, path, headers, **kwargs)
            if response is not None and response.status_code in ok:
                return response
            if response is not None and response.status_code < 500 and \
                    response.status_code not in (404, 409, 429, 503):
                raise AssertionError(f"{method} {path} -> {response.status_code}: "
                                     f"{response.text[:300]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path} kept failing")
            await asyncio.sleep(0.3)

    # -- set-up -------------------------------------------------------------------------

    async def register_panel(self) -> None:
        """The panel's vendors, and the two adjusters in payout's registry."""
        for sub in ADJUSTERS:
            await self.until_ok("PUT", "payout", f"/v1/adjusters/{sub}", self.operator(), (200,),
                                json={"authority_limit": "5000000", "reason": "chaos run"})
        for vendor_id, capabilities in self.vendors.items():
            await self.until_ok("POST", "triage", "/v1/vendors", self.operator(), (201, 409),
                                json={"vendor_id": vendor_id, "name": vendor_id,
                                      "regions": [REGION], "capabilities": capabilities,
                                      "capacity": 1000, "rating": 4.5})

    async def new_lifecycle(self, kind: str) -> Lifecycle:
        suffix = uuid.uuid4().hex[:10]
        life = Lifecycle(kind=kind, org_id=f"org-chaos-{suffix}",
                         policy_number=f"POL-CHAOS-{suffix}", key=f"chaos-{suffix}")
        now = datetime.now(UTC)
        sublimit = {"sublimit": "2000000.00"}
        await self.until_ok("POST", "intake", "/v1/policies", self.operator(), (201, 409), json={
            "policy_number": life.policy_number, "org_id": life.org_id,
            "holder_name": f"Chaos Test {suffix}", "industry": "manufacturing", "region": REGION,
            "period_start": (now - timedelta(days=180)).isoformat(),
            "period_end": (now + timedelta(days=185)).isoformat(),
            "aggregate_limit": "5000000.00", "retention": "10000.00",
            "sections": {s: sublimit for s in ("incident_response", "data_restoration",
                                               "business_interruption", "cyber_extortion")},
        })
        await self.until_ok("POST", "notify", "/v1/subscriptions", self.holder(life.org_id),
                            (200, 201, 409),
                            json={"url": self.webhook_url, "secret": "chaos-webhook-secret-1"})
        self.lifecycles.append(life)
        return life

    async def report(self, life: Lifecycle) -> None:
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "policy_number": life.policy_number, "category": CATEGORY[life.kind],
            "title": f"chaos {life.kind}", "description": "fault-injection lifecycle",
            "occurred_at": (now - timedelta(hours=14)).isoformat(),
            "discovered_at": (now - timedelta(hours=13)).isoformat(),
            "contact": {"name": "Chaos Monkey", "email": "chaos@example.com",
                        "phone": "+86 755 0000 0000"},
        }
        headers = {**self.holder(life.org_id), "Idempotency-Key": life.key}
        response = await self.until_ok("POST", "intake", "/v1/incidents", headers, (200, 201),
                                       json=body)
        life.report_status = 201
        life.incident_id = response.json()["id"]
        self.by_incident[life.incident_id] = life

    # -- the users at work --------------------------------------------------------------

    async def vendors_round(self) -> None:
        for vendor_id in self.vendors:
            headers = self.vendor(vendor_id)
            for status in ("dispatched", "accepted"):
                response = await self.call("GET", "triage", "/v1/jobs", headers,
                                           params={"status": status, "limit": 100})
                if response is None or response.status_code != 200:
                    continue
                for job in response.json()["items"]:
                    await self._work_job(headers, job)

    async def _work_job(self, headers: dict[str, str], job: dict[str, Any]) -> None:
        life = self.by_incident.get(str(job["incident_id"]))
        if life is None:
            return  # its report's answer is not back yet
        if job["status"] == "dispatched":
            accepted = await self.call("POST", "triage", f"/v1/jobs/{job['id']}/accept", headers)
            if accepted is None or accepted.status_code != 200:
                return
        section, amount = LOSSES[(life.kind, job["job_type"])]
        now = datetime.now(UTC)
        report: dict[str, Any] = {
            "root_cause": "chaos", "attack_vector": "other", "attribution": "criminal",
            "contained_at": (now - timedelta(hours=1)).isoformat(),
            "verified_losses": [{"section": section, "amount": amount,
                                 "description": f"{job['job_type']} invoice"}],
        }
        if life.kind == "approve":
            report |= {"outage_started_at": (now - timedelta(hours=13)).isoformat(),
                       "outage_ended_at": (now - timedelta(hours=1)).isoformat()}
        await self.call("POST", "triage", f"/v1/jobs/{job['id']}/complete", headers, json=report)

    async def holders_round(self) -> None:
        for life in self.lifecycles:
            if life.kind != "approve" or life.loss_submitted or life.incident_id is None:
                continue
            response = await self.call(
                "POST", "intake", f"/v1/incidents/{life.incident_id}/losses",
                self.holder(life.org_id),
                json={"section": "business_interruption", "hourly_loss": "1000.00",
                      "description": "lost production"})
            if response is not None and response.status_code == 201:
                life.loss_submitted = True

    async def adjusters_round(self) -> None:
        first, second = (self.adjuster(sub) for sub in ADJUSTERS)
        for life in self.lifecycles:
            if life.incident_id is None or life.done:
                continue
            response = await self.call("GET", "payout", f"/v1/incidents/{life.incident_id}/claim",
                                       first)
            if response is None or response.status_code != 200:
                continue
            claim = response.json()
            life.status = claim["status"]
            if life.done:
                life.done_after = time.monotonic() - life.started
                continue
            for loss in claim["losses"]:
                if loss["state"] == "unverified":
                    self._note_refusal(life, await self.call(
                        "POST", "payout", f"/v1/claims/{claim['id']}/losses/{loss['id']}/verify",
                        first, json={"note": "checked"}))
            if claim["status"] == "pending_approval":
                approvers = {a["adjuster"].removeprefix("adjuster:") for a in claim["approvals"]}
                for sub, headers in zip(ADJUSTERS, (first, second), strict=True):
                    if sub not in approvers:
                        self._note_refusal(life, await self.call(
                            "POST", "payout", f"/v1/claims/{claim['id']}/approve", headers,
                            json={}))
                        break
            if claim["status"] == "payment_failed":
                await self.call("POST", "payout", f"/v1/claims/{claim['id']}/payment/retry",
                                self.operator())

    @staticmethod
    def _note_refusal(life: Lifecycle, response: httpx.Response | None) -> None:
        if response is not None and response.status_code >= 400:
            life.last_refusal = f"{response.request.url.path} {response.status_code} {response.text[:200]}"

    async def work(self, stop: asyncio.Event) -> None:
        """Every user does a round of work, again and again, until `stop`."""
        while not stop.is_set():
            await self.vendors_round()
            await self.holders_round()
            await self.adjusters_round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.3)

    async def play(self, count: int, *, pace: float = 0.15) -> list[Lifecycle]:
        """Start `count` lifecycles (kinds in turn), reporting each as soon as its policy is
        registered, `pace` seconds apart."""
        started = []
        for index in range(count):
            life = await self.new_lifecycle(KINDS[index % len(KINDS)])
            await self.report(life)
            started.append(life)
            await asyncio.sleep(pace)
        return started

    async def settle(self, lifecycles: list[Lifecycle], timeout: float) -> list[Lifecycle]:
        """Wait until every lifecycle is final; returns those that are not (stuck)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(life.done for life in lifecycles):
                return []
            await asyncio.sleep(0.5)
        return [life for life in lifecycles if not life.done]
