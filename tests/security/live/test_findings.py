"""Issue 23's findings, one named test each, through the public HTTP APIs of the live system.
Findings 5, 7 and 11 live with their attack families (test_ssrf, test_bodies, ratelimit/)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from cyberclaims.client import Actor, Api, wait_for
from cyberclaims.demo import claim_in, dispatched_jobs, policy_body
from cyberclaims.registry import SERVICES
from services.payout.settings import PayoutSettings
from shared.settings import Environment, PlatformSettings
from tests.e2e.system import System
from tests.e2e.test_claims import CONTACT, insure, vendor
from tests.security.support import (
    BIG_AUTHORITY,
    Figures,
    Receiver,
    TricklingReceiver,
    completion_report,
    incident_claim,
    million_claim,
    status_of,
    suffix,
    tenant,
)

pytestmark = pytest.mark.slow

FAR_PAST = "0001-01-01T00:00:00+14:00"
FAR_FUTURE = "9999-12-31T23:59:59-14:00"

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def send(api: Api, actor: Actor, service: str, method: str, path: str,
         body: Any = None) -> httpx.Response:
    """The raw answer, whatever its status (the attacks look at refusals)."""
    return api.http.request(method, api.urls[service] + path, json=body, headers=actor.headers)


def incident_body(number: str, **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"policy_number": number, "category": "malware", "title": "Malware on a laptop",
            "description": "Reported by the attack suite", "contact": CONTACT,
            "occurred_at": (now - timedelta(hours=3)).isoformat(),
            "discovered_at": (now - timedelta(hours=2)).isoformat(), **fields}


def test_finding_01_partial_approval_needs_authority_of_payable(api: Api) -> None:
    claim = million_claim(api)
    path = f"/v1/claims/{claim['id']}/approve"

    small = api.adjuster(f"small-{suffix()}", "1000")
    refused = send(api, small, "payout", "POST", path, {"amount": "500.00", "reason": "partial"})
    assert refused.status_code == 403, (
        f"an adjuster with authority 1,000 approved 500 of a 1,200,000 payable: {refused.text}")

    first = api.adjuster(f"first-{suffix()}", "2000000")
    after_one = first.post("payout", path, {"amount": "1000000.00", "reason": "partial"})
    assert after_one["status"] == "pending_approval", (
        "one approval of 1,000,000 on a 1,200,000 payable decided the claim alone")
    assert after_one["approvals_required"] == 2
    second = api.adjuster(f"second-{suffix()}", "2000000")
    decided = second.post("payout", path, {"amount": "1000000.00", "reason": "partial"})
    assert decided["status"] in ("approved", "paid")
    assert Decimal(decided["approved_amount"]) == Decimal("1000000.00")
    assert decided["decision_reason"], "the rest of the payable was closed without a reason"


def test_finding_02_verified_amount_never_exceeds_claimed_or_authority(api: Api) -> None:
    holder = tenant(api, "CN-HN")
    holder.holder.post("intake", f"/v1/incidents/{holder.incident_id}/losses", {
        "section": "business_interruption", "hourly_loss": "15000.00",
        "description": "Production stopped"})
    holder.holder.post("intake", f"/v1/incidents/{holder.incident_id}/losses", {
        "section": "incident_response", "amount": "10000.00", "description": "Our own IT staff"})
    checker = api.adjuster(f"checker-{suffix()}", BIG_AUTHORITY)
    claim = wait_for("the policyholder's losses on the claim", lambda: checker.call(
        "payout", "GET", f"/v1/incidents/{holder.incident_id}/claim", expect=(200, 404)),
        until=lambda c: len([loss for loss in c.get("losses", ())
                             if loss["source"] == "policyholder"]) == 2)
    by_section = {loss["section"]: loss for loss in claim["losses"]}
    verify = "/v1/claims/{}/losses/{}/verify"

    small = api.adjuster(f"small-{suffix()}", "1000")
    bi = send(api, small, "payout", "POST",
              verify.format(claim["id"], by_section["business_interruption"]["id"]),
              {"amount": "100000.00", "note": "looks right"})
    assert bi.status_code in (403, 409, 422), (
        "authority 1,000 verified 100,000 of business interruption whose outage nobody knows")
    own_it = verify.format(claim["id"], by_section["incident_response"]["id"])
    above = send(api, checker, "payout", "POST", own_it,
                 {"amount": "20000.00", "note": "more than claimed"})
    assert above.status_code == 422, "an adjuster verified 20,000 of a 10,000 claim"
    over_authority = send(api, small, "payout", "POST", own_it,
                          {"amount": "5000.00", "note": "within the claim"})
    assert over_authority.status_code == 403, "authority 1,000 verified 5,000"


def test_finding_03_poisoned_reports_never_fail_another_tenant(api: Api, figures: Figures) -> None:
    holder_a, number_a = insure(api, "CN-JS")
    holder_b, number_b = insure(api, "CN-JS")
    poisons: list[dict[str, Any]] = [{"title": "NUL \u0000 in the title"}, {"records_exposed": 2**63},
               {"description": "\u0000"}, {"affected_hosts": 2**64},
               {"contact": {**CONTACT, "name": "Nul\u0000"}}]
    requests = [(holder_a, incident_body(number_a), True) for _ in range(35)]
    requests += [(holder_b, incident_body(number_b, **poison), False) for poison in poisons]
    requests = requests[::8] + [r for i, r in enumerate(requests) if i % 8]  # poison in the mix

    def post(item: tuple[Any, dict[str, Any], bool]) -> tuple[bool, int]:
        actor, body, clean = item
        return clean, status_of(api, "POST", api.urls["intake"] + "/v1/incidents", json=body,
                                headers={**actor.headers, "Idempotency-Key": uuid.uuid4().hex})

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(post, requests))
    clean_codes = [code for clean, code in results if clean]
    poisoned_codes = [code for clean, code in results if not clean]
    for code in poisoned_codes:
        figures.record("poisoned reports (NUL, 2^63)", code == 422)
    assert clean_codes == [201] * 35, f"org A's clean reports answered {clean_codes}"
    assert poisoned_codes == [422] * len(poisons), f"poisoned reports answered {poisoned_codes}"


def test_finding_04_slow_webhook_never_delays_another_org(api: Api) -> None:
    with TricklingReceiver() as slow, Receiver() as fast:
        slow_org, slow_number = insure(api, "CN-AH")
        slow_org.post("notify", "/v1/subscriptions", {"url": f"{slow.url}/hook",
                                                      "secret": "s" * 32})
        for _ in range(4):
            slow_org.post("intake", "/v1/incidents", incident_body(slow_number),
                          headers={"Idempotency-Key": uuid.uuid4().hex})
        wait_for("notify to call the trickling target", lambda: slow.connections, timeout=30)

        fast_org, fast_number = insure(api, "CN-AH")
        fast_org.post("notify", "/v1/subscriptions", {"url": f"{fast.url}/hook",
                                                      "secret": "f" * 32})
        fast_org.post("intake", "/v1/incidents", incident_body(fast_number),
                      headers={"Idempotency-Key": uuid.uuid4().hex})
        try:
            wait_for("the other org's webhook while one target trickles",
                     lambda: fast.arrivals, timeout=30)
        except TimeoutError:
            pytest.fail("a webhook target trickling a byte every 4 s held back another "
                        "org's delivery for more than 30 s")


def test_finding_06_extreme_timestamps_are_refused_at_the_edge(api: Api, figures: Figures) -> None:
    holder, number = insure(api, "CN-FJ")
    refusals: list[str] = []
    for field_name in ("occurred_at", "discovered_at"):
        for value in (FAR_PAST, FAR_FUTURE):
            status = status_of(api, "POST", api.urls["intake"] + "/v1/incidents",
                               json=incident_body(number, **{field_name: value}),
                               headers={**holder.headers, "Idempotency-Key": uuid.uuid4().hex})
            figures.record("extreme timestamps", status == 422)
            refusals.append(f"intake {field_name}={value}: {status}")

    responder = vendor(api, "CN-FJ", ["forensics"])
    incident_id = tenant_incident(api, holder, number)
    [(vendor_id, job)] = dispatched_jobs(api, incident_id, expected=1)
    panel = api.vendor(vendor_id)
    panel.post("triage", f"/v1/jobs/{job['id']}/accept")
    for field_name in ("contained_at", "outage_started_at", "outage_ended_at"):
        for value in (FAR_PAST, FAR_FUTURE):
            fields = {"outage_started_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
                      "outage_ended_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                      field_name: value}
            status = status_of(api, "POST", api.urls["triage"] + f"/v1/jobs/{job['id']}/complete",
                               json=completion_report([], **fields), headers=panel.headers)
            figures.record("extreme timestamps", status == 422)
            refusals.append(f"triage {field_name}={value}: {status}")
            if status == 200:  # the job is completed: every later report would be a 409
                pytest.fail("extreme timestamps not refused with 422:\n" + "\n".join(
                    line for line in refusals if not line.endswith(": 422")))
    assert responder.name  # the vendor registered for the job
    wrong = [line for line in refusals if not line.endswith(": 422")]
    assert not wrong, "extreme timestamps not refused with 422:\n" + "\n".join(wrong)
    panel.post("triage", f"/v1/jobs/{job['id']}/complete", completion_report([]))
    claim_in(api.adjuster(f"adj-{suffix()}", "1000"), incident_id, {"closed_without_payment"})


def tenant_incident(api: Api, holder: Any, number: str) -> str:
    incident = holder.post("intake", "/v1/incidents", incident_body(number),
                           headers={"Idempotency-Key": uuid.uuid4().hex})
    return str(incident["id"])


def test_finding_08_logs_hold_no_secrets_or_personal_data(system: System, api: Api) -> None:
    marker = suffix()
    secret = f"whsec-{marker}-0123456789abcdef"
    person = {"name": f"Zhao {marker}", "email": f"zhao.{marker}@client.example",
              "phone": f"+86 21 {marker[:4]} {marker[4:]}"}
    description = f"Payroll server {marker} encrypted"
    holder, number = insure(api, "CN-SD")
    with Receiver() as receiver:
        for bad_secret in (secret + "\u0000", secret):
            status_of(api, "POST", api.urls["notify"] + "/v1/subscriptions", headers=holder.headers,
                      json={"url": f"{receiver.url}/{marker}", "secret": bad_secret})
        for poison in ({"title": "\u0000"}, {"records_exposed": 2**63}, {}):
            status_of(api, "POST", api.urls["intake"] + "/v1/incidents", headers={
                **holder.headers, "Idempotency-Key": uuid.uuid4().hex},
                json=incident_body(number, contact=person, description=description, **poison))
        time.sleep(2)  # the services flush their logs; nothing to wait on but the clock
    logs = "".join(services_output(system))
    token = holder.headers["Authorization"].split()[-1]
    leaks = {what: value for what, value in {
        "webhook secret": secret, "contact name": person["name"], "contact email": person["email"],
        "contact phone": person["phone"], "description": description, "bearer token": token,
    }.items() if value in logs}
    assert not leaks, f"the logs hold {sorted(leaks)}"


def services_output(system: System) -> list[str]:
    """The services' own lines of the supervisor's output. The stand-ins play the outside
    world and are not scanned: the SMTP sink prints each mail's recipient on purpose, and a
    fast run delivered the contact's mail within the scan's window."""
    services = {entry.name for entry in SERVICES}
    return [line for line in system.supervisor.output
            if ANSI.sub("", line).split("|", 1)[0].strip() in services]


def test_finding_09_unhandled_input_gets_a_4xx(api: Api, figures: Figures) -> None:
    operator = api.operator()
    failures: list[str] = []

    def expect_4xx(what: str, status: int) -> None:
        refused = 400 <= status < 500
        figures.record(f"unhandled input ({what.split(':')[0]})", refused)
        if not refused:
            failures.append(f"{what}: {status or 'connection dropped'}")

    for service, url in api.urls.items():
        if service == "payments":
            continue
        document = api.http.get(f"{url}/openapi.json").json()
        for path, operations in document["paths"].items():
            get = operations.get("get")
            if get and any(p["name"] == "offset" for p in get.get("parameters", [])):
                expect_4xx(f"offset 2^63: {service} {path}", status_of(
                    api, "GET", url + path, params={"offset": 2**63}, headers=operator.headers))

    holder, number = insure(api, "CN-HE")
    now = datetime.now(UTC)
    nul_bodies = [
        ("intake", "/v1/policies", operator, policy_body(f"org-{suffix()}", f"P-{suffix()}", now,
                                                        holder_name="Widget\u0000Co")),
        ("intake", "/v1/incidents", holder, incident_body(number, title="a\u0000b")),
        ("triage", "/v1/vendors", operator, {"vendor_id": f"v-{suffix()}", "name": "N\u0000",
                                             "regions": ["CN-HE"], "capabilities": ["forensics"],
                                             "capacity": 1, "rating": 3}),
        ("notify", "/v1/subscriptions", holder, {"url": "http://127.0.0.2:9/x",
                                                 "secret": "\u0000" * 20}),
    ]
    for service, path, actor, body in nul_bodies:
        expect_4xx(f"NUL: {service} {path}", status_of(
            api, "POST", api.urls[service] + path, json=body,
            headers={**actor.headers, "Idempotency-Key": uuid.uuid4().hex}))
    for value in (FAR_PAST, FAR_FUTURE):
        expect_4xx(f"year 1/9999: intake policy period_start={value}", status_of(
            api, "POST", api.urls["intake"] + "/v1/policies", headers=operator.headers,
            json=policy_body(f"org-{suffix()}", f"P-{suffix()}", now, period_start=value)))
    assert not failures, "\n".join(failures)


def test_finding_10_concurrent_identical_subscriptions_make_one(api: Api) -> None:
    holder, _ = insure(api, "CN-SX")
    body = {"url": f"http://127.0.0.2:9/dup-{suffix()}", "secret": "d" * 32}
    barrier = threading.Barrier(6)

    def subscribe(_: int) -> int:
        barrier.wait()
        return status_of(api, "POST", api.urls["notify"] + "/v1/subscriptions", json=body,
                         headers=holder.headers)

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = sorted(pool.map(subscribe, range(6)))
    listed = [s for s in holder.get("notify", "/v1/subscriptions")["items"] if s["url"] == body["url"]]
    assert codes == [201] + [409] * 5, f"6 identical subscriptions answered {codes}"
    assert len(listed) == 1, f"6 identical subscriptions made {len(listed)}"


def test_finding_12_hardening(system: System, api: Api, figures: Figures) -> None:
    problems: list[str] = []
    console = api.http.get(api.urls["payout"] + "/console")
    for header in ("Content-Security-Policy", "X-Frame-Options"):
        if header not in console.headers:
            problems.append(f"/console sends no {header}")
    if "no-store" not in console.headers.get("Cache-Control", ""):
        problems.append("/console is cacheable")
    for service in ("intake", "triage", "payout", "notify"):
        metrics = api.http.get(api.urls[service] + "/metrics")
        figures.record("anonymous /metrics", metrics.status_code in (401, 403, 404))
        if metrics.status_code == 200:
            problems.append(f"{service} serves /metrics to anyone on its API port")

    tenant_ = tenant(api, "CN-GX")
    for amount in ("1_000", "1e3", "NaN", "Infinity", " 100"):
        response = api.http.post(api.urls["intake"] + f"/v1/incidents/{tenant_.incident_id}/losses",
                                 headers=tenant_.holder.headers,
                                 json={"section": "incident_response", "amount": amount,
                                       "description": "odd amount"})
        figures.record("non-canonical amounts", response.status_code == 422)
        if response.status_code != 422:
            problems.append(f"amount {amount!r} answered {response.status_code}")
    as_text = api.http.post(api.urls["intake"] + f"/v1/incidents/{tenant_.incident_id}/losses",
                            headers={**tenant_.holder.headers, "Content-Type": "text/plain"},
                            content=b'{"section": "incident_response", "amount": "1.00", '
                                    b'"description": "as text"}')
    figures.record("non-JSON content types", as_text.status_code in (415, 422))
    if as_text.status_code not in (415, 422):
        problems.append(f"a text/plain body was accepted as JSON: {as_text.status_code}")

    for settings in ({"env": Environment.production, "jwks_url": ""},
                     {"env": Environment.production, "jwks_url": "http://idp.example/jwks"},
                     {"env": Environment.production, "jwks_url": "file:///tmp/jwks.json"},
                     {"env": Environment.test, "jwks_url": ""}):
        try:
            PlatformSettings(**settings)  # type: ignore[arg-type]
        except ValidationError:
            figures.record("unvouched token keys", True)
        else:
            figures.record("unvouched token keys", False)
            problems.append(f"settings accept tokens without a provider's keys: {settings}")
    assert not problems, "\n".join(problems)


def test_finding_13_openapi_documents_every_error_response(api: Api) -> None:
    missing: list[str] = []
    for service, url in api.urls.items():
        if service == "payments":
            continue
        document = api.http.get(f"{url}/openapi.json").json()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                # 403 is left to schemathesis, which calls each operation with every role.
                expected = {"401", "429"} if operation.get("security") else set()
                if operation.get("parameters") or operation.get("requestBody"):
                    expected.add("422")
                if "{" in path:
                    expected.add("404")
                if operation.get("requestBody"):
                    expected.add("413")
                responses = operation.get("responses", {})
                for code in sorted(expected):
                    content = responses.get(code, {}).get("content", {})
                    if "application/problem+json" not in content:
                        missing.append(f"{service} {method.upper()} {path} {code}")
    assert not missing, (f"{len(missing)} error responses undocumented (or not as "
                         f"application/problem+json), e.g.:\n" + "\n".join(missing[:20]))


def test_vendor_verified_losses_are_limited_to_the_job_types_sections(api: Api) -> None:
    holder, number = insure(api, "CN-CQ")
    vendor(api, "CN-CQ", ["forensics"])
    incident_id = tenant_incident(api, holder, number)
    [(vendor_id, job)] = dispatched_jobs(api, incident_id, expected=1)
    panel = api.vendor(vendor_id)
    panel.post("triage", f"/v1/jobs/{job['id']}/accept")
    wrong_section = api.http.post(
        api.urls["triage"] + f"/v1/jobs/{job['id']}/complete", headers=panel.headers,
        json=completion_report([{"section": "cyber_extortion", "amount": "40000.00",
                                 "description": "a forensics firm verifying a ransom"}]))
    assert wrong_section.status_code == 422, (
        f"a forensics job verified a cyber_extortion loss: {wrong_section.status_code}")
    above_limit = PayoutSettings.model_fields["vendor_verification_limit"].default * 8
    panel.post("triage", f"/v1/jobs/{job['id']}/complete", completion_report(
        [{"section": "incident_response", "amount": f"{above_limit:.2f}",
          "description": "forensics"}]))
    adjuster = api.adjuster(f"adj-{suffix()}", "1000")
    claim = wait_for("the vendor's loss on the claim", lambda: incident_claim(adjuster, incident_id),
                     until=lambda c: c.get("losses"))
    assert claim["losses"][0]["state"] == "unverified", (
        f"a vendor's {above_limit} item skipped the adjuster's verification")
