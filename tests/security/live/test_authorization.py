"""The authorization matrix: every route of every service x every role x own / other object.

The routes come from the services' FastAPI apps (created, never started); the expectations
come from ROUTES below. A route without a row fails `test_every_route_has_a_row`, so a new
endpoint cannot ship without deciding who may call it. `test_the_matrix_holds_live` then plays
every row against the running system.

OK means "authorized, and the object is visible": any answer but 401, 403, 404 or a 5xx (a
write may well answer 409 or 422 for the object's state; that is past authorization)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from cyberclaims.client import Actor, Api, wait_for
from cyberclaims.demo import dispatched_jobs, policy_body
from cyberclaims.registry import SERVICES
from shared.auth import Role
from tests.e2e.test_claims import CONTACT, insure, report, vendor
from tests.security.support import (
    BIG_AUTHORITY,
    RECEIVER_HOST,
    Figures,
    completion_report,
    incident_claim,
    role_actor,
    suffix,
)

pytestmark = pytest.mark.slow

OK = "ok"
SKIP = "skip"  # not played: the row says why
ROLES = ("anonymous", *(role.value for role in Role))  # a role added to shared.auth joins
# every row, refused (403) wherever the row does not name it
Expected = int | str
Rules = dict[str, tuple[Expected, Expected | None]]  # role -> (own object, other's object)


def allow(**allowed: Expected | tuple[Expected, Expected | None]) -> Rules:
    """Rules for a protected route: anonymous 401, every role not named 403."""
    rules: Rules = {role: (403, None) for role in ROLES}
    rules["anonymous"] = (401, None)
    for role, expected in allowed.items():
        if role in rules:  # a role of another branch (underwriter, actuary, ...) once merged
            rules[role] = expected if isinstance(expected, tuple) else (expected, None)
    return rules


PUBLIC: Rules = {role: (200, None) for role in ROLES}
# /metrics: operators only (Prometheus scrapes with an operator token; shared/service.py).
METRICS: Rules = allow(operator=OK)
OWN_OR_404 = (OK, 404)

ROUTES: dict[tuple[str, str, str], Rules] = {
    **{(service.name, "GET", path): PUBLIC
       for service in SERVICES
       for path in ("/openapi.json", "/docs", "/docs/assets/{file}", "/healthz", "/readyz")},
    **{(service.name, "GET", "/metrics"): METRICS for service in SERVICES},
    ("intake", "POST", "/v1/policies"): allow(operator=OK),
    ("intake", "PUT", "/v1/policies/{policy_number}"): allow(operator=OK),
    ("intake", "GET", "/v1/policies/{policy_number}"): allow(operator=OK, policyholder=OWN_OR_404),
    ("intake", "POST", "/v1/incidents"): allow(policyholder=OWN_OR_404),
    ("intake", "GET", "/v1/incidents"): allow(policyholder=OK, adjuster=OK, operator=OK),
    ("intake", "GET", "/v1/incidents/{incident_id}"): allow(policyholder=OWN_OR_404, adjuster=OK,
                                                            operator=OK),
    ("intake", "POST", "/v1/incidents/{incident_id}/losses"): allow(policyholder=OWN_OR_404),
    ("intake", "POST", "/v1/incidents/{incident_id}/regulator-report"):
        allow(policyholder=OWN_OR_404),
    ("triage", "POST", "/v1/vendors"): allow(operator=OK),
    ("triage", "PUT", "/v1/vendors/{vendor_id}"): allow(operator=OK),
    ("triage", "GET", "/v1/vendors"): allow(operator=OK),
    ("triage", "GET", "/v1/jobs"): allow(vendor=OK, operator=OK),
    ("triage", "GET", "/v1/jobs/{job_id}"): allow(vendor=OWN_OR_404, operator=OK),
    ("triage", "POST", "/v1/jobs/{job_id}/accept"): allow(vendor=OWN_OR_404),
    ("triage", "POST", "/v1/jobs/{job_id}/decline"): allow(vendor=OWN_OR_404),
    ("triage", "POST", "/v1/jobs/{job_id}/complete"): allow(vendor=OWN_OR_404),
    ("triage", "POST", "/v1/jobs/{job_id}/cancel"): allow(operator=OK),
    ("triage", "POST", "/v1/jobs/{job_id}/assign"): allow(operator=OK),
    ("triage", "GET", "/v1/incidents/{incident_id}/triage"): allow(adjuster=OK, operator=OK),
    ("payout", "GET", "/v1/claims"): allow(adjuster=OK, operator=OK),
    ("payout", "GET", "/v1/claims/{claim_id}"): allow(adjuster=OK, operator=OK),
    ("payout", "GET", "/v1/claims/{claim_id}/assessments"): allow(adjuster=OK, operator=OK),
    ("payout", "GET", "/v1/incidents/{incident_id}/claim"): allow(adjuster=OK, operator=OK),
    ("payout", "POST", "/v1/claims/{claim_id}/losses/{loss_id}/verify"): allow(adjuster=OK),
    ("payout", "POST", "/v1/claims/{claim_id}/losses/{loss_id}/reject"): allow(adjuster=OK),
    ("payout", "PUT", "/v1/claims/{claim_id}/outage"): allow(adjuster=OK),
    ("payout", "POST", "/v1/claims/{claim_id}/assess"): allow(adjuster=OK),
    ("payout", "POST", "/v1/claims/{claim_id}/approve"): allow(adjuster=OK),
    ("payout", "POST", "/v1/claims/{claim_id}/deny"): allow(adjuster=OK),
    ("payout", "GET", "/console"): PUBLIC,  # a static page; its API calls carry the token
    ("payout", "GET", "/console/{asset}"): PUBLIC,  # the console's scripts and styles
    ("payout", "GET", "/v1/me"): allow(adjuster=OK, operator=OK),
    ("payout", "GET", "/v1/queues/{name}"): allow(adjuster=OK, operator=OK),
    ("payout", "GET", "/v1/claims/{claim_id}/file"): allow(adjuster=OK, operator=OK),
    # The registry of adjusters (their authority): operators only, adjusters included.
    ("payout", "GET", "/v1/adjusters"): allow(operator=OK),
    ("payout", "PUT", "/v1/adjusters/{subject}"): allow(operator=OK),
    ("payout", "GET", "/v1/adjusters/{subject}/history"): allow(operator=OK),
    ("payout", "POST", "/v1/claims/{claim_id}/payment/retry"): allow(operator=OK),  # reliab
    ("payout", "GET", "/v1/payments"): allow(operator=OK),
    # The operators' page and API (shared/operations.py): dead letters where a service keeps
    # marks, the page wherever it lists something.
    **{(service, "GET", "/v1/dead-letters"): allow(operator=OK) for service in ("triage", "payout")},
    **{(service, "POST", "/v1/dead-letters/replay"): allow(operator=OK)
       for service in ("triage", "payout")},
    **{(service, "POST", "/v1/dead-letters/{event_id}/replay"): allow(operator=OK)
       for service in ("triage", "payout")},
    **{(service, "GET", "/v1/operations"): allow(operator=OK)
       for service in ("triage", "payout", "notify")},
    **{(service, "GET", path): PUBLIC for service in ("triage", "payout", "notify")
       for path in ("/operations", "/operations/{asset}")},  # static; the API takes the token
    ("notify", "POST", "/v1/subscriptions"): allow(policyholder=OK, vendor=OK, operator=OK),
    ("notify", "GET", "/v1/subscriptions"): allow(policyholder=OK, vendor=OK, operator=OK),
    ("notify", "GET", "/v1/subscriptions/{subscription_id}"):
        allow(policyholder=OWN_OR_404, vendor=OWN_OR_404, operator=OK),
    ("notify", "DELETE", "/v1/subscriptions/{subscription_id}"):
        allow(policyholder=OWN_OR_404, vendor=OWN_OR_404, operator=OK),
    ("notify", "GET", "/v1/deliveries"): allow(operator=OK),
    ("notify", "GET", "/v1/deliveries/{delivery_id}"): allow(operator=OK),
    ("notify", "POST", "/v1/deliveries/{delivery_id}/redeliver"): allow(operator=OK),
    ("notify", "GET", "/v1/notifications"): allow(policyholder=OK, vendor=OK, adjuster=OK,
                                                  operator=OK),
    # Adjusters and operators read their team's feed: another recipient's item is 404 to them.
    ("notify", "POST", "/v1/notifications/{notification_id}/read"):
        allow(policyholder=OWN_OR_404, vendor=OWN_OR_404, adjuster=(SKIP, 404),
              operator=(SKIP, 404)),
    # Rows for the routes of the risk and insights services (issues 25 and 26, on their own
    # branches when this table was written): played wherever the objects are known here; an
    # allowed role on an object this module does not build is not played (UNPLAYED below).
    ("risk", "POST", "/v1/policies/{policy_number}/assessments"): allow(operator=OK),
    ("risk", "POST", "/v1/assessments/{assessment_id}/report"): allow(vendor=OK),
    ("risk", "POST", "/v1/exposures"): allow(vendor=OK),
    ("risk", "POST", "/v1/remediation/{item_id}/done"): allow(vendor=OK, operator=OK),
    ("risk", "GET", "/v1/risk/portfolio"): allow(operator=OK, underwriter=OK),
    ("risk", "GET", "/v1/risk/{policy_number}"): allow(policyholder=OWN_OR_404, operator=OK,
                                                       underwriter=OK),
    **{("insights", "GET", f"/v1/insights/{name}"): allow(actuary=OK, regulator=OK, operator=OK)
       for name in ("experience", "experience.csv", "experience.parquet", "triangles", "report")},
    ("insights", "GET", "/insights"): PUBLIC,  # a static page; its API calls carry the token
    ("insights", "GET", "/insights/{asset}"): PUBLIC,  # the page's script and styles
    # An empty body: 422 once authorized (tests/insights/test_history.py imports real ones).
    ("insights", "POST", "/v1/insights/history"): allow(actuary=OK, operator=OK),
}


@cache
def app_routes() -> frozenset[tuple[str, str, str]]:
    """(service, method, path) of every route the services' apps serve (HEAD aside)."""
    found: set[tuple[str, str, str]] = set()
    for entry in SERVICES:
        for route in entry.create_app().routes:
            if isinstance(route, APIRoute | Route):
                for method in route.methods or ():
                    if method != "HEAD":
                        found.add((entry.name, method, route.path))
    return frozenset(found)


def test_every_route_has_a_row() -> None:
    routes = app_routes()
    missing = sorted(routes - ROUTES.keys())
    assert not missing, ("routes without a row in the authorization matrix (add them to "
                         f"ROUTES in {__name__}): {missing}")
    for key, rules in ROUTES.items():
        assert set(rules) == set(ROLES), f"{key} does not decide every role"


# --- the objects the matrix plays with ----------------------------------------------------------

@dataclass
class Side:
    """One tenant's objects: an org with a policy, an incident, a loss, a subscription and a
    notification, and the vendor holding the incident's job."""

    org: Actor
    policy_number: str
    incident_id: str
    vendor: Actor
    vendor_id: str
    job_id: str
    subscription_id: str
    vendor_subscription_id: str
    notification_id: str
    vendor_notification_id: str | None


def side(api: Api, region: str) -> Side:
    org, number = insure(api, region)
    panel = vendor(api, region, ["forensics"])
    incident_id = report(org, number, "malware")
    [(vendor_id, job)] = dispatched_jobs(api, incident_id, expected=1)
    org_sub = org.post("notify", "/v1/subscriptions", {
        "url": f"http://{RECEIVER_HOST}:9/{suffix()}", "secret": "m" * 32})
    vendor_sub = panel.post("notify", "/v1/subscriptions", {
        "url": f"http://{RECEIVER_HOST}:9/{suffix()}", "secret": "m" * 32})
    feed = wait_for("the org's notification", lambda: org.get("notify", "/v1/notifications")["items"])
    vendor_feed = api.vendor(vendor_id).get("notify", "/v1/notifications")["items"]
    return Side(org=org, policy_number=number, incident_id=incident_id,
                vendor=api.vendor(vendor_id), vendor_id=vendor_id, job_id=str(job["id"]),
                subscription_id=org_sub["id"], vendor_subscription_id=vendor_sub["id"],
                notification_id=feed[0]["id"],
                vendor_notification_id=vendor_feed[0]["id"] if vendor_feed else None)


@dataclass
class World:
    api: Api
    a: Side
    b: Side
    claim_id: str
    loss_id: str
    delivery_id: str
    actors: dict[str, Actor]


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    a, b = side(api, "CN-XZ"), side(api, "CN-QH")
    a.org.post("intake", f"/v1/incidents/{a.incident_id}/losses", {
        "section": "incident_response", "amount": "10000.00", "description": "Own IT staff"})
    adjuster = api.adjuster(f"matrix-{suffix()}", BIG_AUTHORITY)
    claim = wait_for("the org's loss on the claim", lambda: incident_claim(adjuster, a.incident_id),
                     until=lambda c: c.get("losses"))
    operator = api.operator()
    delivery = wait_for("a delivery", lambda: operator.get("notify", "/v1/deliveries")["items"])
    anonymous = Actor(api, {}, "anonymous")
    named = {"anonymous": anonymous, "policyholder": a.org, "vendor": a.vendor,
             "adjuster": adjuster, "operator": operator}
    return World(api=api, a=a, b=b, claim_id=claim["id"], loss_id=claim["losses"][0]["id"],
                 delivery_id=delivery[0]["id"],
                 actors={role: named.get(role) or role_actor(api, role) for role in ROLES})



def path_value(world: World, name: str, role: str, own: bool, method: str) -> str | None:
    """The object a role calls: its own (side A), or another tenant's (side B)."""
    mine = world.a if own else world.b
    if name == "subscription_id":
        if method == "DELETE" and own:
            return fresh_subscription(world, role)
        return mine.vendor_subscription_id if role == "vendor" and own else mine.subscription_id
    if name == "notification_id":
        return (mine.vendor_notification_id if role == "vendor" and own
                else mine.notification_id)
    values = {"policy_number": mine.policy_number, "incident_id": mine.incident_id,
              "job_id": mine.job_id, "vendor_id": mine.vendor_id, "claim_id": world.claim_id,
              "loss_id": world.loss_id, "delivery_id": world.delivery_id,
              "asset": "common.js", "file": "swagger-ui-bundle.js", "name": "approval",
              "subject": world.actors["adjuster"].name.split()[-1]}
    return values.get(name)


def fresh_subscription(world: World, role: str) -> str:
    """DELETE gets an object of its own: deleting the shared one would hide it from others."""
    owner = {"vendor": world.a.vendor, "operator": world.actors["operator"]}.get(role, world.a.org)
    body: dict[str, Any] = {"url": f"http://{RECEIVER_HOST}:9/{suffix()}", "secret": "m" * 32}
    if role == "operator":
        body["owner"] = f"org:{world.a.org.name.split()[-1]}"
    created: dict[str, Any] = owner.post("notify", "/v1/subscriptions", body)
    return str(created["id"])


BODIES: dict[tuple[str, str], Callable[[World, str, bool], Any]] = {
    ("POST", "/v1/policies"): lambda w, role, own: policy_body(f"org-{suffix()}", f"P-{suffix()}",
                                                          datetime.now(UTC), region="CN-XZ"),
    ("PUT", "/v1/policies/{policy_number}"): lambda w, role, own: {
        key: value for key, value in policy_body(f"org-{suffix()}", "-", datetime.now(UTC),
                                                 region="CN-XZ").items()
        if key != "policy_number"} | {"org_id": w.a.org.name.split()[-1]},
    ("POST", "/v1/incidents"): lambda w, role, own: {
        "policy_number": (w.a if own else w.b).policy_number, "category": "other",
        "title": "matrix", "description": "matrix", "contact": CONTACT,
        "occurred_at": datetime.now(UTC).isoformat(),
        "discovered_at": datetime.now(UTC).isoformat()},
    ("POST", "/v1/incidents/{incident_id}/losses"): lambda w, role, own: {
        "section": "incident_response", "amount": "100.00", "description": "matrix"},
    ("POST", "/v1/incidents/{incident_id}/regulator-report"): lambda w, role, own: {
        "reported_at": datetime.now(UTC).isoformat(), "reference": "REF-1"},
    ("POST", "/v1/vendors"): lambda w, role, own: {
        "vendor_id": f"v-{suffix()}", "name": "matrix", "regions": ["CN-XZ"],
        "capabilities": ["legal_counsel"], "capacity": 1, "rating": 1},
    ("PUT", "/v1/vendors/{vendor_id}"): lambda w, role, own: {
        "name": "matrix", "regions": ["CN-XZ"], "capabilities": ["forensics"], "capacity": 5,
        "rating": 4.0},
    ("POST", "/v1/jobs/{job_id}/decline"): lambda w, role, own: {"reason": "matrix"},
    ("POST", "/v1/jobs/{job_id}/complete"): lambda w, role, own: completion_report([]),
    ("POST", "/v1/jobs/{job_id}/assign"): lambda w, role, own: {"vendor_id": w.a.vendor_id},
    ("POST", "/v1/claims/{claim_id}/losses/{loss_id}/verify"): lambda w, role, own: {"note": "matrix"},
    ("POST", "/v1/claims/{claim_id}/losses/{loss_id}/reject"): lambda w, role, own: {"reason": "matrix"},
    ("PUT", "/v1/claims/{claim_id}/outage"): lambda w, role, own: {"outage_hours": "5", "note": "matrix"},
    ("POST", "/v1/claims/{claim_id}/approve"): lambda w, role, own: {},
    ("POST", "/v1/claims/{claim_id}/deny"): lambda w, role, own: {"reason": "matrix"},
    ("PUT", "/v1/adjusters/{subject}"): lambda w, role, own: {
        "authority_limit": BIG_AUTHORITY, "reason": "matrix"},
    ("POST", "/v1/subscriptions"): lambda w, role, own: {
        "url": f"http://{RECEIVER_HOST}:9/{suffix()}", "secret": "m" * 32,
        **({"owner": f"org:{w.a.org.name.split()[-1]}"} if role == "operator" else {})},
}


def meets(expected: Expected, status: int) -> bool:
    if expected == OK:
        return status < 500 and status not in (401, 403, 404)
    return status == expected


def test_the_matrix_holds_live(world: World, figures: Figures) -> None:
    wrong: list[str] = []
    for (service, method, path), rules in ROUTES.items():
        if (service, method, path) not in app_routes():
            continue  # a row whose route is gone
        for role in ROLES:
            for own, expected in zip((True, False), rules[role], strict=True):
                if expected is None or expected == SKIP:
                    continue
                names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
                values = {name: path_value(world, name, role, own, method) for name in names}
                if None in values.values():
                    if expected not in (401, 403):
                        continue  # UNPLAYED: no such object here (a vendor's empty feed, ...)
                    # the token or the role is refused before any object is looked up
                    values = {name: value or str(uuid.uuid4()) for name, value in values.items()}
                body = BODIES.get((method, path), lambda w, r, o: None)(world, role, own)
                actor = world.actors[role]
                response = world.api.http.request(
                    method, world.api.urls[service] + path.format(**values), json=body,
                    headers={**actor.headers, "Idempotency-Key": uuid.uuid4().hex})
                figures.record("authorization matrix (expected refusals)"
                               if expected not in (OK, 200)
                               else "authorization matrix (expected access)",
                               meets(expected, response.status_code))
                if not meets(expected, response.status_code):
                    wrong.append(f"{role:<12} {'own' if own else 'other':<5} {method} "
                                 f"{service}{path}: expected {expected}, got "
                                 f"{response.status_code} {response.text[:120]!r}")
    assert not wrong, f"{len(wrong)} cells of the matrix do not hold:\n" + "\n".join(wrong)


def test_lists_show_only_the_callers_objects(world: World, figures: Figures) -> None:
    """A list answers 200 to a tenant, but must hold none of another tenant's objects."""
    org, panel, other = world.a.org, world.a.vendor, world.b
    seen = {
        "incidents": [i["id"] for i in org.get("intake", "/v1/incidents", limit=100)["items"]],
        "jobs": [j["id"] for j in panel.get("triage", "/v1/jobs", limit=100)["items"]],
        "subscriptions": [s["id"] for s in org.get("notify", "/v1/subscriptions")["items"]],
        "vendor subscriptions": [s["id"] for s in panel.get("notify", "/v1/subscriptions")["items"]],
        "notifications": [n["id"] for n in org.get("notify", "/v1/notifications",
                                                   limit=100)["items"]],
    }
    others = {"incidents": other.incident_id, "jobs": other.job_id,
              "subscriptions": other.subscription_id,
              "vendor subscriptions": other.vendor_subscription_id,
              "notifications": other.notification_id}
    leaks = [name for name, ids in seen.items() if others[name] in ids]
    for name in seen:
        figures.record("lists without another tenant's objects", name not in leaks)
    assert world.a.incident_id in seen["incidents"] and world.a.job_id in seen["jobs"]
    assert not leaks, f"another tenant's objects listed: {leaks}"
