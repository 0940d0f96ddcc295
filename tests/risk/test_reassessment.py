"""A re-assessment supersedes the earlier plan, on PostgreSQL and Tansu: the earlier open items
it no longer lists (control now in place, finding gone) are closed as superseded and
published; the ones it lists again carry over with their original due date; exposure alerts,
which no assessment lists, stay open."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from shared.controls import Control
from shared.events import RemediationSuperseded, RiskAssessed
from shared.topics import RISK
from tests.risk.conftest import CRITICAL, HIGH, Desk
from tests.risk.test_exposures import exposure
from tests.support.kafka import relayed_events

MISSING = (Control.offline_backups_tested, Control.mfa_email, Control.edr_on_endpoints)
UNPATCHED = {"title": "Exchange unpatched", "control": "critical_patches_within_14_days",
             "cvss_vector": HIGH}
RDP = {"title": "RDP exposed", "control": "no_exposed_rdp_or_smb", "cvss_vector": CRITICAL}


async def reassess(desk: Desk, policy_number: str, terms: Any, vendor_id: str, *,
                   in_place: list[Control], findings: list[dict[str, Any]]) -> uuid.UUID:
    """An operator's re-assessment, taken and submitted by the monitoring vendor."""
    requested = await desk.client.post(f"/v1/policies/{policy_number}/assessments",
                                       headers=desk.tokens.operator())
    assert requested.status_code == 202, requested.text
    assessment_id = uuid.UUID(requested.json()["id"])
    await desk.assign(terms, assessment_id, vendor_id)
    response = await desk.submit(assessment_id, vendor_id, in_place=in_place, findings=findings)
    assert response.status_code == 200, response.text
    return assessment_id


def by_title(risk: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["title"]: item for item in risk["items"]}


async def test_a_reassessment_supersedes_what_it_no_longer_lists_and_carries_the_rest(
        desk: Desk) -> None:
    terms, vendor_id = await desk.assessed(in_place=[c for c in Control if c not in MISSING],
                                           findings=[UNPATCHED, RDP])
    alert = await desk.client.post("/v1/exposures", json=exposure(terms.policy_number),
                                   headers=desk.tokens.vendor(vendor_id))
    assert alert.status_code == 201, alert.text
    before = by_title((await desk.risk(terms.policy_number)).json())
    desk.clock.advance(timedelta(days=10))
    # backups and EDR now in place, the RDP finding gone; MFA on email still missing, and the
    # Exchange finding found again (rescored, its title written differently)
    second = await reassess(
        desk, terms.policy_number, terms, vendor_id,
        in_place=[c for c in Control if c is not Control.mfa_email],
        findings=[UNPATCHED | {"title": "exchange  UNPATCHED", "cvss_vector": CRITICAL}])

    after = by_title((await desk.risk(terms.policy_number)).json())
    assert after.keys() == before.keys()  # nothing new: the re-listed items carried over
    superseded = {"Put offline_backups_tested in place", "Put edr_on_endpoints in place",
                  "RDP exposed"}
    for title, item in after.items():
        assert item["id"] == before[title]["id"]
        assert item["due_at"] == before[title]["due_at"]  # the original clock keeps running
        if title in superseded:
            assert item["state"] == "superseded", title
            assert datetime.fromisoformat(item["superseded_at"]) == desk.clock.now()
        else:  # the exposure alert (due in 72 h) stays, overdue now
            expected = "overdue" if item["source"] == "exposure" else "open"
            assert (item["state"], item["superseded_at"]) == (expected, None), title

    key = terms.policy_number
    engine = desk.runtime.engine
    published = await relayed_events(desk.broker, RISK.name, engine, key,
                                     lambda e: e.type == RemediationSuperseded.event_type
                                     and e.data["policy_number"] == key)
    assert {e.data["item"]["item_id"] for e in published} == {after[t]["id"] for t in superseded}
    assert {e.data["assessment_id"] for e in published} == {str(second)}
    [assessed] = await relayed_events(desk.broker, RISK.name, engine, key,
                                      lambda e: e.type == RiskAssessed.event_type
                                      and e.data["assessment_id"] == str(second))
    assert {i["item_id"] for i in assessed.data["items"]} == {
        after["Put mfa_email in place"]["id"], after["Exchange unpatched"]["id"]}


async def test_a_superseded_item_is_never_reminded_nor_counted_overdue(desk: Desk) -> None:
    terms, vendor_id = await desk.assessed(in_place=[c for c in Control if c not in MISSING])
    await reassess(desk, terms.policy_number, terms, vendor_id, in_place=list(Control),
                   findings=[])
    desk.clock.advance(timedelta(days=91))
    await desk.remind()
    items = (await desk.risk(terms.policy_number)).json()["items"]
    assert {item["state"] for item in items} == {"superseded"}
    for item in items:
        assert await desk.reminded(item["id"]) == (None, None)
    done = await desk.client.post(f"/v1/remediation/{items[0]['id']}/done",
                                  headers=desk.tokens.operator())
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "superseded"  # closed already: unchanged
