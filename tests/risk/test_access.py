"""Who may see and do what: 401 without a token, 403 for a role, 404 for a policy, an
assessment or an item the caller may not see."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from services.risk.models import Assessment
from shared.controls import Control
from shared.events import JobAccepted, JobDispatched, PolicyUpdated, Priority
from shared.topics import POLICIES, RESPONSE
from tests.risk.conftest import Desk, eventually
from tests.risk.test_exposures import exposure


async def test_a_policyholder_sees_only_its_own_policy(desk: Desk) -> None:
    terms, _ = await desk.assessed(in_place=list(Control))
    own = await desk.risk(terms.policy_number, desk.tokens.policyholder(terms.org_id))
    assert own.status_code == 200
    other = await desk.risk(terms.policy_number, desk.tokens.policyholder("org-other"))
    assert other.status_code == 404
    missing = await desk.risk("POL-missing", desk.tokens.policyholder(terms.org_id))
    assert missing.status_code == 404
    assert (await desk.client.get(f"/v1/risk/{terms.policy_number}")).status_code == 401
    for role in (desk.tokens.adjuster(), desk.tokens.vendor("v")):
        assert (await desk.risk(terms.policy_number, role)).status_code == 403
    assert (await desk.risk(terms.policy_number, desk.tokens.underwriter())).status_code == 200


async def test_the_portfolio_is_for_operators_and_underwriters(desk: Desk) -> None:
    for headers, expected in ((desk.tokens.operator(), 200), (desk.tokens.underwriter(), 200),
                              (desk.tokens.policyholder("org-a"), 403),
                              (desk.tokens.vendor("v"), 403), (desk.tokens.adjuster(), 403)):
        response = await desk.client.get("/v1/risk/portfolio", headers=headers)
        assert response.status_code == expected


async def test_only_the_assigned_vendor_submits_the_assessment(desk: Desk) -> None:
    terms, assessment_id = await desk.policy()
    early = await desk.submit(assessment_id, "vendor-a", in_place=list(Control))
    assert early.status_code == 404  # nobody holds the job yet
    await desk.assign(terms, assessment_id, "vendor-a")
    other = await desk.submit(assessment_id, "vendor-b", in_place=list(Control))
    assert other.status_code == 404
    response = await desk.client.post(f"/v1/assessments/{assessment_id}/report",
                                      headers=desk.tokens.operator(),
                                      json={"controls_in_place": []})
    assert response.status_code == 403
    assert await desk.status(assessment_id) == "accepted"


async def test_only_the_assessing_vendor_raises_exposures_on_a_policy(desk: Desk) -> None:
    terms, vendor_id = await desk.assessed(in_place=list(Control))
    for headers, expected in ((desk.tokens.vendor("vendor-other"), 404),
                              (desk.tokens.policyholder(terms.org_id), 403),
                              (desk.tokens.operator(), 403)):
        response = await desk.client.post("/v1/exposures", json=exposure(terms.policy_number),
                                          headers=headers)
        assert response.status_code == expected, response.text
    unknown = await desk.client.post("/v1/exposures", json=exposure("POL-unknown"),
                                     headers=desk.tokens.vendor(vendor_id))
    assert unknown.status_code == 404
    risk = (await desk.risk(terms.policy_number)).json()
    assert risk["items"] == []


async def test_only_the_monitoring_vendor_or_an_operator_confirms_an_item(desk: Desk) -> None:
    terms, vendor_id = await desk.assessed(
        in_place=[c for c in Control if c is not Control.mfa_email])
    [item] = (await desk.risk(terms.policy_number)).json()["items"]
    url = f"/v1/remediation/{item['id']}/done"
    assert (await desk.client.post(url, headers=desk.tokens.vendor("x"))).status_code == 404
    holder = desk.tokens.policyholder(terms.org_id)
    assert (await desk.client.post(url, headers=holder)).status_code == 403
    missing = f"/v1/remediation/{uuid.uuid4()}/done"
    assert (await desk.client.post(missing, headers=desk.tokens.operator())).status_code == 404
    assert (await desk.client.post(url, headers=desk.tokens.vendor(vendor_id))).status_code == 200


async def test_cancelling_an_accepted_renewal_job_gives_the_policy_back_to_its_monitor(
        desk: Desk) -> None:
    terms, vendor_b = await desk.assessed(
        in_place=[c for c in Control if c is not Control.mfa_email])
    [item] = (await desk.risk(terms.policy_number)).json()["items"]
    desk.clock.advance(timedelta(days=1))  # the renewal's assessment is the latest
    renewed = terms.model_copy(update={"period_start": terms.period_end,
                                       "period_end": terms.period_end + timedelta(days=365)})
    await desk.publish(PolicyUpdated(policy=renewed, version=2), POLICIES.name,
                       terms.policy_number)
    renewal = await eventually(lambda: _renewal_of(desk, terms.policy_number),
                               what="renewal assessment")
    vendor_a = f"vendor-{uuid.uuid4().hex[:6]}"
    job_id = await desk.assign(terms, renewal.id, vendor_a)
    assert (await _raise_exposure(desk, terms.policy_number, vendor_a)).status_code == 201
    await desk.cancel(terms, renewal.id, job_id, vendor_a)
    done = f"/v1/remediation/{item['id']}/done"
    assert (await _raise_exposure(desk, terms.policy_number, vendor_a)).status_code == 404
    assert (await desk.client.post(done, headers=desk.tokens.vendor(vendor_a))).status_code == 404
    assert (await _raise_exposure(desk, terms.policy_number, vendor_b)).status_code == 201
    assert (await desk.client.post(done, headers=desk.tokens.vendor(vendor_b))).status_code == 200


async def test_a_cancelled_job_stays_cancelled_whatever_arrives_after(desk: Desk) -> None:
    """The first assessment's job cancelled: nobody monitors the policy; a late acceptance of
    that job (replayed, out of order) changes nothing."""
    terms, assessment_id = await desk.policy()
    job_id = await desk.assign(terms, assessment_id, "vendor-a")
    await desk.cancel(terms, assessment_id, job_id, "vendor-a")
    assert (await _raise_exposure(desk, terms.policy_number, "vendor-a")).status_code == 404
    late = await desk.publish(
        JobAccepted(**desk.job_fields(terms, assessment_id, job_id, "vendor-a")),
        RESPONSE.name, str(assessment_id))
    await eventually(lambda: desk.applied(late), what="late acceptance applied")
    assert await desk.status(assessment_id) == "cancelled"
    assert (await _raise_exposure(desk, terms.policy_number, "vendor-a")).status_code == 404
    assert (await desk.submit(assessment_id, "vendor-a", in_place=[])).status_code == 404


async def test_a_replayed_dispatch_never_takes_an_accepted_job_back(desk: Desk) -> None:
    """A job event dead-lettered and replayed after the job was accepted (out of its
    partition's order): triage moves an accepted job only to completed or cancelled, so the
    late dispatch changes nothing and the vendor holding it still reports and monitors."""
    terms, assessment_id = await desk.policy()
    job_id = await desk.assign(terms, assessment_id, "vendor-a")
    late = await desk.publish(
        JobDispatched(**desk.job_fields(terms, assessment_id, job_id, "vendor-a"),
                      priority=Priority.P4, accept_by=desk.clock.now() + timedelta(hours=72),
                      attempt=1),
        RESPONSE.name, str(assessment_id))
    await eventually(lambda: desk.applied(late), what="late dispatch applied")
    assert await desk.status(assessment_id) == "accepted"
    assert (await _raise_exposure(desk, terms.policy_number, "vendor-a")).status_code == 201
    assert (await desk.submit(assessment_id, "vendor-a", in_place=[])).status_code == 200


async def _renewal_of(desk: Desk, policy_number: str) -> Assessment | None:
    found = await desk.assessment_of(policy_number)
    return found if found is not None and found.reason == "renewed" else None


async def _raise_exposure(desk: Desk, policy_number: str, vendor_id: str) -> httpx.Response:
    return await desk.client.post("/v1/exposures", json=exposure(policy_number),
                                  headers=desk.tokens.vendor(vendor_id))


async def test_bad_bodies_name_the_field(desk: Desk) -> None:
    terms, vendor_id = await desk.assessed(in_place=list(Control))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "nope"}, "kind"), ({"control": "firewall"}, "control"),
        ({"title": "a\x00b"}, "title"), ({"extra": 1}, "extra")]
    for override, field in cases:
        response = await desk.client.post("/v1/exposures", headers=desk.tokens.vendor(vendor_id),
                                          json=exposure(terms.policy_number) | override)
        assert response.status_code == 422, (override, response.text)
        assert response.json()["errors"][0]["field"] == field
    _, assessment_id = await desk.policy()
    duplicated = await desk.submit(assessment_id, "v", in_place=[Control.mfa_email] * 2)
    assert duplicated.status_code == 422
    assert duplicated.json()["errors"][0]["field"] == "controls_in_place"
