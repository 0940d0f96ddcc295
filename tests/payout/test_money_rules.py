"""The money rules an attacker would try to get around (issue 23, findings 1 and 2, and
vendor-verified items), and dates the arithmetic cannot handle, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from services.payout.app import create_app
from services.payout.settings import PayoutSettings
from shared.events import Category, PolicyRegistered, PolicyUpdated, Section, SectionTerms
from shared.settings import PlatformSettings
from tests.payout.conftest import (
    Incident,
    Sandbox,
    apply,
    claim_when,
    now,
    policy_terms,
    register,
    reported_incident,
)
from tests.support.service import Tokens, running

IR, BI, LEGAL = (Section.incident_response, Section.business_interruption,
                 Section.legal_and_notification)
BIG_SECTIONS = {IR: SectionTerms(sublimit=Decimal("5000000")),
                BI: SectionTerms(sublimit=Decimal("5000000"))}


async def _claim(client: httpx.AsyncClient, headers: dict[str, str], incident: Incident
                 ) -> dict[str, Any]:
    response = await client.get(f"/v1/incidents/{incident.incident_id}/claim", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_partial_approval_needs_the_authority_and_approvers_of_the_payable(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    junior = tokens.adjuster("partial-junior", "1000")
    senior_a, senior_b = (tokens.adjuster("partial-a", "2000000"),
                          tokens.adjuster("partial-b", "2000000"))
    async with running(make_payout()) as payout:
        policy = await register(broker, sections=BIG_SECTIONS)
        incident = Incident(broker, policy)
        await incident.report()
        await incident.complete({IR: "1250000"})
        claim = await claim_when(payout, senior_a, incident.incident_id, "pending_approval")
        assert claim["payable"] == "1200000.00"
        url = f"/v1/claims/{claim['id']}/approve"

        # Finding 1, as reproduced: 500 of a 1.2M payable by an adjuster with authority 1,000.
        small = await payout.post(url, headers=junior, json={"amount": "500.00", "reason": "partial"})
        assert small.status_code == 403, small.text
        # One adjuster approving 1,000,000 of 1.2M: the payable needs a second approver.
        first = await payout.post(url, headers=senior_a,
                                  json={"amount": "1000000.00", "reason": "one invoice unsupported"})
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "pending_approval"
        assert first.json()["approvals_required"] == 2
        assert first.json()["payment"] is None
        second = await payout.post(url, headers=senior_b,
                                   json={"amount": "1000000.00", "reason": "agreed"})
        assert second.status_code == 200, second.text
        paid = await claim_when(payout, senior_a, incident.incident_id, "paid")
        assert paid["approved_amount"] == "1000000.00"
        assert paid["payment"]["amount"] == "1000000.00"
        assert paid["closed_remainder"] == "200000.00"
        assert "the remaining 200000.00 is closed: agreed" in paid["decision_reason"]
        assert len(await sandbox.payments(reference=paid["id"])) == 1
        again = await payout.post(url, headers=senior_a, json={})
        assert again.status_code == 409


async def test_verified_amounts_are_capped_by_the_claim_and_the_authority(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    low = tokens.adjuster("verify-low", "1000")
    high = tokens.adjuster("verify-high", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        incident = await reported_incident(quiet_payout, retention=Decimal("0"))
        interruption = incident.submitted(BI, hourly_loss="1000")
        invoice = incident.submitted(IR, amount="5000")
        for loss in (interruption, invoice):
            await apply(quiet_payout, loss)
        await apply(quiet_payout, incident.completed({}))
        claim = await _claim(payout, high, incident)
        losses = f"/v1/claims/{claim['id']}/losses"

        # Finding 2, as reproduced: a per-hour item with no outage known, verified at 100,000.
        inflated = await payout.post(f"{losses}/{interruption.loss_id}/verify", headers=low,
                                     json={"amount": "100000.00", "note": "looks fine"})
        assert inflated.status_code == 409, inflated.text
        assert inflated.json()["errors"][0]["field"] == "outage_hours"
        above_claim = await payout.post(f"{losses}/{invoice.loss_id}/verify", headers=high,
                                        json={"amount": "5000.01", "note": "x"})
        assert above_claim.status_code == 422
        assert above_claim.json()["errors"][0]["field"] == "amount"
        beyond_authority = await payout.post(f"{losses}/{invoice.loss_id}/verify", headers=low,
                                             json={"note": "as claimed"})
        assert beyond_authority.status_code == 403
        assert (await payout.post(f"{losses}/{invoice.loss_id}/verify", headers=low,
                                  json={"amount": "900", "note": "one line"})).status_code == 200

        # Verified per hour as claimed: its worth follows the outage, which needs the authority.
        assert (await payout.post(f"{losses}/{interruption.loss_id}/verify", headers=low,
                                  json={"note": "rate matches the books"})).status_code == 200
        outage = f"/v1/claims/{claim['id']}/outage"
        too_long = await payout.put(outage, headers=low, json={"outage_hours": "100", "note": "x"})
        assert too_long.status_code == 403  # 1,000 x (100 - 8) = 92,000 > 1,000
        assert (await _claim(payout, high, incident))["status"] == "open"
        set_by_high = await payout.put(outage, headers=high,
                                       json={"outage_hours": "10", "note": "ERP logs"})
        assert set_by_high.status_code == 200, set_by_high.text
        # 900 + 1,000 x (10 - 8) = 2,900, no retention: approved automatically.
        assert set_by_high.json()["payable"] == "2900.00"
        assert set_by_high.json()["status"] == "approved"


async def test_a_per_hour_item_is_verified_at_most_at_its_outage(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("verify-bi", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        incident = await reported_incident(quiet_payout)
        interruption = incident.submitted(BI, hourly_loss="2000")
        await apply(quiet_payout, interruption)
        started = now() - timedelta(hours=30)
        await apply(quiet_payout, incident.completed({}, outage=(started, started + timedelta(hours=20))))
        claim = await _claim(payout, adjuster, incident)
        url = f"/v1/claims/{claim['id']}/losses/{interruption.loss_id}/verify"
        # 2,000 x (20 - 8 waiting hours) = 24,000 is what the policyholder's item claims.
        above = await payout.post(url, headers=adjuster, json={"amount": "24000.01", "note": "x"})
        assert above.status_code == 422
        assert above.json()["errors"][0]["field"] == "amount"
        at_claim = await payout.post(url, headers=adjuster, json={"amount": "24000", "note": "ok"})
        assert at_claim.status_code == 200, at_claim.text


async def test_vendor_items_above_the_limit_wait_for_an_adjuster(
    payout_db: str, platform: PlatformSettings, sandbox: Sandbox, tokens: Tokens,
) -> None:
    app = create_app(PayoutSettings(database_url=payout_db, payment_provider_url=sandbox.url),
                     platform, run_workers=False)  # the default limit, 50,000
    adjuster = tokens.adjuster("vendor-check", "1000000")
    async with running(app, wait_for_consumer=False) as payout:
        incident = await reported_incident(
            app, Category.data_breach, sections={IR: SectionTerms(sublimit=Decimal("200000")),
                                                 LEGAL: SectionTerms(sublimit=Decimal("200000"))})
        await apply(app, incident.completed({IR: "50000", LEGAL: "50000.01"}))
        claim = await _claim(payout, adjuster, incident)
        states = {loss["section"]: loss["state"] for loss in claim["losses"]}
        # 100,000.01 together: each item waits, the one within the limit alone too.
        assert states == {"incident_response": "unverified", "legal_and_notification": "unverified"}
        assert claim["status"] == "open"
        for loss in claim["losses"]:
            verified = await payout.post(f"/v1/claims/{claim['id']}/losses/{loss['id']}/verify",
                                         headers=adjuster, json={"note": "invoice checked"})
            assert verified.status_code == 200
        assert verified.json()["payable"] == "50000.01"  # 100,000.01 less the 50,000 retention
        assert verified.json()["status"] == "pending_approval"

        within = await reported_incident(app, sections=BIG_SECTIONS)
        await apply(app, within.completed({IR: "50000"}))
        alone = await _claim(payout, adjuster, within)
        assert [loss["state"] for loss in alone["losses"]] == ["verified"]


async def test_a_year_0001_outage_is_a_data_issue_not_a_crash(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("dates", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        incident = await reported_incident(quiet_payout, retention=Decimal("0"))
        await apply(quiet_payout, incident.submitted(BI, hourly_loss="100"))
        year_one = datetime.fromisoformat("0001-01-01T00:00:00+14:00")
        await apply(quiet_payout, incident.completed({IR: "1000"}, outage=(year_one, now())))
        claim = await _claim(payout, adjuster, incident)
        assert claim["status"] == "open"
        assert "out of range" in claim["data_issue"]
        assert claim["outage"] is None
        bi = next(loss for loss in claim["losses"] if loss["section"] == "business_interruption")
        await payout.post(f"/v1/claims/{claim['id']}/losses/{bi['id']}/verify", headers=adjuster,
                          json={"note": "rate checked"})
        fixed = await payout.put(f"/v1/claims/{claim['id']}/outage", headers=adjuster,
                                 json={"outage_hours": "18", "note": "from the ERP logs"})
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["data_issue"] is None
        assert fixed.json()["payable"] == "2000.00"  # 1,000 + 100 x (18 - 8)


async def test_a_policy_ending_in_year_9999_is_a_data_issue_not_a_crash(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("dates-9999", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        policy = policy_terms(period_start=datetime(9999, 12, 31, 20, 0, tzinfo=UTC),
                              period_end=datetime(9999, 12, 31, 23, 30, tzinfo=UTC))
        await apply(quiet_payout, PolicyRegistered(policy=policy))
        incident = Incident("unused", policy,
                            occurred_at=datetime(9999, 12, 31, 20, 10, tzinfo=UTC))
        await apply(quiet_payout, incident.reported(discovered_after=timedelta(minutes=1),
                                                    reported_after=timedelta(minutes=2)))
        await apply(quiet_payout, incident.completed({IR: "1000"}))
        claim = await _claim(payout, adjuster, incident)
        assert claim["status"] == "open"
        assert "out of range" in claim["data_issue"]
        assess = await payout.post(f"/v1/claims/{claim['id']}/assess", headers=adjuster)
        assert assess.status_code == 409


async def test_rejecting_a_loss_needs_authority_over_what_it_claims(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    low = tokens.adjuster("reject-low", "1000")
    high = tokens.adjuster("reject-high", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        incident = await reported_incident(quiet_payout, retention=Decimal("0"),
                                           sections=BIG_SECTIONS)
        invoice = incident.submitted(IR, amount="500000")
        interruption = incident.submitted(BI, hourly_loss="1000")
        for loss in (invoice, interruption):
            await apply(quiet_payout, loss)
        await apply(quiet_payout, incident.completed({}))
        claim = await _claim(payout, high, incident)
        losses = f"/v1/claims/{claim['id']}/losses"

        # Turning 500,000 down is a decision on 500,000: beyond a 1,000 authority.
        beyond = await payout.post(f"{losses}/{invoice.loss_id}/reject", headers=low,
                                   json={"reason": "no invoice attached"})
        assert beyond.status_code == 403, beyond.text
        # A per-hour item with no outage known claims an unknown sum: set the outage first.
        unknown = await payout.post(f"{losses}/{interruption.loss_id}/reject", headers=high,
                                    json={"reason": "not caused by the incident"})
        assert unknown.status_code == 409, unknown.text
        assert unknown.json()["errors"][0]["field"] == "outage_hours"
        after = await _claim(payout, high, incident)
        assert after["status"] == "open"
        assert {loss["state"] for loss in after["losses"]} == {"unverified"}
        rejected = await payout.post(f"{losses}/{invoice.loss_id}/reject", headers=high,
                                     json={"reason": "no invoice attached"})
        assert rejected.status_code == 200, rejected.text


async def test_a_per_hour_item_the_outage_makes_worth_more_than_its_verifier_may_pass_goes_back(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    low = tokens.adjuster("rate-low", "1000")
    high = tokens.adjuster("rate-high", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        incident = await reported_incident(quiet_payout, retention=Decimal("0"))
        interruption = incident.submitted(BI, hourly_loss="2000")
        await apply(quiet_payout, interruption)
        claim = await _claim(payout, high, incident)
        verify = f"/v1/claims/{claim['id']}/losses/{interruption.loss_id}/verify"
        assert (await payout.post(verify, headers=low,
                                  json={"note": "rate matches the books"})).status_code == 200

        # The vendor's outage arrives: 2,000 x (20 - 8) = 24,000, beyond the verifier's 1,000.
        started = now() - timedelta(hours=30)
        await apply(quiet_payout, incident.completed(
            {}, outage=(started, started + timedelta(hours=20))))
        back = await _claim(payout, high, incident)
        assert back["status"] == "open", back
        (item,) = back["losses"]
        assert item["state"] == "unverified"
        assert "24000.00" in item["note"] and "verify it again" in item["note"]
        assert (await payout.post(verify, headers=low, json={"note": "again"})).status_code == 403
        verified = await payout.post(verify, headers=high, json={"note": "ERP logs agree"})
        assert verified.status_code == 200, verified.text
        assert verified.json()["payable"] == "24000.00"
        assert verified.json()["status"] == "approved"


async def test_vendor_items_split_under_the_limit_still_wait_for_an_adjuster(
    payout_db: str, platform: PlatformSettings, sandbox: Sandbox, tokens: Tokens,
) -> None:
    app = create_app(PayoutSettings(database_url=payout_db, payment_provider_url=sandbox.url),
                     platform, run_workers=False)  # the default limit, 50,000
    adjuster = tokens.adjuster("vendor-split", "1000000")
    async with running(app, wait_for_consumer=False) as payout:
        incident = await reported_incident(app, sections=BIG_SECTIONS)
        report = incident.completed({IR: "50000"})
        second = report.verified_losses[0].model_copy(update={"description": "second invoice"})
        await apply(app, report.model_copy(update={"verified_losses": [
            *report.verified_losses, second]}))
        claim = await _claim(payout, adjuster, incident)
        assert [loss["state"] for loss in claim["losses"]] == ["unverified", "unverified"]
        assert claim["status"] == "open"


async def test_a_policy_update_reassesses_a_claim_awaiting_approval(
    quiet_payout: FastAPI, tokens: Tokens, sandbox: Sandbox,
) -> None:
    first, second = (tokens.adjuster("update-a", "2000000"), tokens.adjuster("update-b", "2000000"))
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        incident = await reported_incident(quiet_payout, sections=BIG_SECTIONS)
        await apply(quiet_payout, incident.completed({IR: "1250000"}))
        claim = await _claim(payout, first, incident)
        assert (claim["status"], claim["payable"]) == ("pending_approval", "1200000.00")
        url = f"/v1/claims/{claim['id']}/approve"
        assert (await payout.post(url, headers=first, json={})).status_code == 200

        # The same terms again (a new version, nothing changed): the approval still stands.
        await apply(quiet_payout, PolicyUpdated(policy=incident.policy, version=2))
        kept = await _claim(payout, first, incident)
        assert [a["adjuster"] for a in kept["approvals"]] == ["adjuster:update-a"]

        # The aggregate lowered to 1,000,000: assessed again under it, the approval of the
        # 1.2M assessment no longer counts, and one approver now decides.
        lowered = incident.policy.model_copy(update={"aggregate_limit": Decimal("1000000")})
        await apply(quiet_payout, PolicyUpdated(policy=lowered, version=3))
        again = await _claim(payout, first, incident)
        assert (again["status"], again["payable"]) == ("pending_approval", "1000000.00")
        assert (again["approvals_required"], again["approvals"]) == (1, [])
        approved = await payout.post(url, headers=second, json={})
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_amount"] == "1000000.00"
