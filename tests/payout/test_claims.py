"""Claims end to end on real PostgreSQL, Tansu and the sandbox provider over HTTP: events in,
assessment, decisions, approvals and exactly one payment."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from services.payout.app import create_app
from services.payout.models import Claim, Outbox, Payment
from services.payout.payments import Leased, Outcome, PaymentWorker
from services.payout.settings import PayoutSettings
from shared.clock import ManualClock
from shared.events import (
    Attribution,
    Category,
    ClaimApproved,
    LossSubmitted,
    PaymentFailed,
    PaymentRequested,
    Section,
    SectionTerms,
)
from shared.settings import PlatformSettings
from shared.topics import CLAIMS, INCIDENTS
from tests.payout.conftest import (
    Incident,
    Sandbox,
    apply,
    claim_when,
    eventually,
    now,
    register,
    reported_incident,
    wrap,
)
from tests.support.kafka import wait_for_events, wait_until_consumed
from tests.support.service import Tokens, running

IR, BI, EXTORTION = Section.incident_response, Section.business_interruption, Section.cyber_extortion
BIG_SECTIONS = {IR: SectionTerms(sublimit=Decimal("5000000")),
                BI: SectionTerms(sublimit=Decimal("5000000"))}


async def paid_once(sandbox: Sandbox, claim_id: str) -> list[dict[str, Any]]:
    return await sandbox.payments(reference=claim_id)


async def test_auto_approval_boundary_and_replayed_events_pay_once(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    adjuster = tokens.adjuster()
    app = make_payout()
    async with running(app) as payout:
        policy = await register(broker)
        at_limit, above = Incident(broker, policy), Incident(broker, policy, category=Category.ddos)
        for incident, amount in ((at_limit, "100000"), (above, "100000.01")):
            await incident.report()
            await incident.complete({IR: amount})  # retention 50,000 -> payable 50,000 / 50,000.01

        paid = await claim_when(payout, adjuster, at_limit.incident_id, "paid")
        assert paid["payable"] == "50000.00"
        assert paid["coverage_questions"] == []
        assert paid["approved_amount"] == "50000.00"
        assert paid["payment"]["state"] == "succeeded"
        pending = await claim_when(payout, adjuster, above.incident_id, "pending_approval")
        assert pending["payable"] == "50000.01"
        assert pending["payment"] is None

        # Replays (the same envelopes again, as a redelivery would) change nothing, once the
        # consumer is past them.
        replays = [await at_limit.send(INCIDENTS.name, at_limit.envelopes["reported"]),
                   await at_limit.send("cyberclaims.response", at_limit.envelopes["completed"])]
        await wait_until_consumed(broker, "cyberclaims-payout", replays)
        for incident, claim in ((at_limit, paid), (above, pending)):  # still one claim each
            again = await payout.get(f"/v1/incidents/{incident.incident_id}/claim", headers=adjuster)
            assert again.json()["id"] == claim["id"]
        assert len(await paid_once(sandbox, paid["id"])) == 1
        async with app.state.runtime.uow() as uow:  # staged in the handlers' transactions
            assert await uow.session.scalar(select(func.count()).select_from(Outbox).where(
                Outbox.event_type == PaymentRequested.event_type,
                Outbox.partition_key == str(at_limit.incident_id))) == 1
        audit = (await payout.get(f"/v1/claims/{paid['id']}/assessments", headers=adjuster)).json()
        assert len(audit) == 1
        assert audit[0]["decision"] == "approved"
        assert audit[0]["requested_by"] == "system"
        assert audit[0]["inputs"]["policy"]["policy_number"] == policy.policy_number
        assert Decimal(audit[0]["inputs"]["losses"][0]["amount"]) == Decimal("100000")


async def test_policyholder_losses_wait_for_the_adjuster(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    adjuster = tokens.adjuster("adj-verify", "2000000")
    async with running(make_payout()) as payout:
        policy = await register(broker, retention=Decimal("10000"))
        incident = Incident(broker, policy)
        await incident.report()
        losses = {IR: (uuid.uuid4(), Decimal("30000"), None),
                  BI: (uuid.uuid4(), None, Decimal("4000")),
                  EXTORTION: (uuid.uuid4(), Decimal("90000"), None)}
        for section, (loss_id, amount, hourly) in losses.items():
            await incident.send(INCIDENTS.name, wrap(LossSubmitted(
                incident_id=incident.incident_id, org_id=policy.org_id, loss_id=loss_id,
                policy_number=policy.policy_number, section=section, amount=amount,
                hourly_loss=hourly, description="claimed by the policyholder", submitted_at=now(),
            ), "/cyberclaims/intake"))
        # The losses and the completion travel on different topics: completion first would
        # assess 5,000 against the 10,000 retention and close the claim before they arrive.
        await eventually(lambda: _claim_with_losses(payout, adjuster, incident, 3,
                                                    response_completed=False))
        await incident.complete({IR: "5000"})  # no vendor-verified outage
        claim = await eventually(lambda: _claim_with_losses(payout, adjuster, incident, 4))
        assert claim["status"] == "open"  # three items await verification
        claim_id = claim["id"]
        ir_id, bi_id, extortion_id = (str(losses[s][0]) for s in (IR, BI, EXTORTION))

        base = f"/v1/claims/{claim_id}/losses"
        too_much = await payout.post(f"{base}/{ir_id}/verify", headers=adjuster,
                                     json={"amount": "30000.01", "note": "invoice"})
        assert too_much.status_code == 422
        assert too_much.json()["errors"][0]["field"] == "amount"
        verified = await payout.post(f"{base}/{ir_id}/verify", headers=adjuster,
                                     json={"amount": "25000", "note": "one invoice was a duplicate"})
        assert verified.status_code == 200, verified.text
        again = await payout.post(f"{base}/{ir_id}/reject", headers=adjuster, json={"reason": "x"})
        assert again.status_code == 409
        rejected = await payout.post(f"{base}/{extortion_id}/reject", headers=adjuster,
                                     json={"reason": "no ransom was paid"})
        assert rejected.json()["status"] == "open"
        assert (await payout.post(f"{base}/{bi_id}/verify", headers=adjuster,
                                  json={"note": "hourly figure matches the books"})).status_code == 200
        # The last item is verified, but the hourly interruption needs the outage figure.
        assert (await payout.get(f"/v1/claims/{claim_id}", headers=adjuster)).json()["status"] == "open"
        outage = await payout.put(f"/v1/claims/{claim_id}/outage", headers=adjuster,
                                  json={"outage_hours": "20.25", "note": "from the ERP logs"})
        assert outage.status_code == 200, outage.text
        claim = outage.json()
        # IR 5,000 + 25,000 = 30,000; BI 4,000 x (20.25 - 8) = 49,000; retention 10,000 from IR.
        assert claim["status"] == "pending_approval"
        breakdown = {line["section"]: line for line in claim["sections"]}
        assert breakdown["incident_response"]["eligible"] == "30000.00"
        assert breakdown["incident_response"]["retention_absorbed"] == "10000.00"
        assert breakdown["business_interruption"]["eligible"] == "49000.00"
        assert claim["payable"] == "69000.00"
        assert claim["coverage_questions"] == []  # the rejected extortion item raises nothing
        assert claim["outage"] == {"minutes": 1215, "hours": "20.25", "source": "adjuster"}

        reassessed = await payout.post(f"/v1/claims/{claim_id}/assess", headers=adjuster)
        assert reassessed.status_code == 200
        audit = (await payout.get(f"/v1/claims/{claim_id}/assessments", headers=adjuster)).json()
        assert [a["requested_by"] for a in audit] == ["adjuster:adj-verify"] * 2
        assert audit[0]["inputs"]["outage_minutes"] == 1215


async def _claim_with_losses(payout: httpx.AsyncClient, headers: dict[str, str], incident: Incident,
                             count: int, *, response_completed: bool = True
                             ) -> dict[str, Any] | None:
    response = await payout.get(f"/v1/incidents/{incident.incident_id}/claim", headers=headers)
    if response.status_code == 200 and len(response.json()["losses"]) == count \
            and response.json()["response_completed"] is response_completed:
        return dict(response.json())
    return None


async def test_every_coverage_question_holds_the_claim_for_an_adjuster(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    adjuster = tokens.adjuster()
    async with running(make_payout()) as payout:
        young = await register(broker, period_start=now() - timedelta(days=10))
        retro = await register(broker, retroactive_date=now() - timedelta(days=2))
        plain = await register(broker)
        cases = {
            "OUTSIDE_POLICY_PERIOD": Incident(broker, plain, occurred_at=now() - timedelta(days=400)),
            "BEFORE_RETROACTIVE_DATE": Incident(broker, retro, occurred_at=now() - timedelta(days=3)),
            "LATE_NOTICE": Incident(broker, plain, category=Category.malware),
            "SECTION_NOT_COVERED": Incident(broker, plain, category=Category.other),
            "WAR_EXCLUSION": Incident(broker, plain, category=Category.insider_misuse),
            "EARLY_CLAIM": Incident(broker, young),
        }
        repeat = [Incident(broker, plain, category=Category.ddos,
                           occurred_at=now() - timedelta(days=days)) for days in (1, 6)]
        for code, incident in cases.items():
            await incident.report(reported_after=timedelta(days=4) if code == "LATE_NOTICE"
                                  else timedelta(hours=2))
            await incident.complete({EXTORTION if code == "SECTION_NOT_COVERED" else IR: "60000"},
                                    attribution=Attribution.state_actor if code == "WAR_EXCLUSION"
                                    else Attribution.criminal)
        for incident in repeat:  # payout knows both incidents before either is assessed
            await incident.report()
        for incident in repeat:
            await claim_when(payout, adjuster, incident.incident_id, "open")
        for incident in repeat:
            await incident.complete({IR: "60000"})
        for code, incident in [*cases.items(), *(("REPEAT_INCIDENT", i) for i in repeat)]:
            claim = await claim_when(payout, adjuster, incident.incident_id, "pending_approval")
            assert claim["coverage_questions"] == [code], code
            assert claim["payment"] is None


async def test_authority_limits_and_two_distinct_approvers(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    junior, senior_a, senior_b = (tokens.adjuster("junior", "1000000"),
                                  tokens.adjuster("senior-a", "5000000"),
                                  tokens.adjuster("senior-b", "5000000"))
    async with running(make_payout()) as payout:
        policy = await register(broker, sections=BIG_SECTIONS)
        incident = Incident(broker, policy)
        await incident.report()
        await incident.complete({IR: "1250000"})
        claim = await claim_when(payout, junior, incident.incident_id, "pending_approval")
        assert claim["payable"] == "1200000.00"
        assert claim["approvals_required"] == 2
        url = f"/v1/claims/{claim['id']}"

        assert (await payout.post(f"{url}/approve", json={})).status_code == 401
        assert (await payout.post(f"{url}/approve", json={},
                                  headers=tokens.operator())).status_code == 403
        assert (await payout.post(f"{url}/approve", json={},
                                  headers=tokens.policyholder(policy.org_id))).status_code == 403
        assert (await payout.get(url, headers=tokens.policyholder(policy.org_id))).status_code == 403
        assert (await payout.get(f"/v1/claims/{uuid.uuid4()}", headers=junior)).status_code == 404
        assert (await payout.post(f"{url}/approve", json={}, headers=junior)).status_code == 403
        assert (await payout.post(f"{url}/deny", json={"reason": "no"},
                                  headers=junior)).status_code == 403
        assert (await payout.post(f"{url}/approve", json={"amount": "1200000.01"},
                                  headers=senior_a)).status_code == 422
        no_reason = await payout.post(f"{url}/approve", json={"amount": "1100000"}, headers=senior_a)
        assert no_reason.status_code == 422
        assert no_reason.json()["errors"][0]["field"] == "reason"

        first = await payout.post(f"{url}/approve", json={}, headers=senior_a)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "pending_approval"
        assert [a["adjuster"] for a in first.json()["approvals"]] == ["adjuster:senior-a"]
        assert (await payout.post(f"{url}/approve", json={}, headers=senior_a)).status_code == 409
        other_amount = await payout.post(f"{url}/approve", headers=senior_b,
                                         json={"amount": "1100000", "reason": "depreciation"})
        assert other_amount.status_code == 409
        second = await payout.post(f"{url}/approve", json={}, headers=senior_b)
        assert second.status_code == 200, second.text
        assert second.json()["status"] == "approved"
        assert second.json()["approved_amount"] == "1200000.00"
        assert (await payout.post(f"{url}/deny", json={"reason": "late"},
                                  headers=senior_a)).status_code == 409
        paid = await claim_when(payout, junior, incident.incident_id, "paid")
        assert paid["payment"]["amount"] == "1200000.00"
        events = await wait_for_events(broker, CLAIMS.name,
                                       lambda e: e.subject == str(incident.incident_id)
                                       and e.type == ClaimApproved.event_type)
        approved = events[0].event()
        assert isinstance(approved, ClaimApproved)
        assert approved.approvers == ["adjuster:senior-a", "adjuster:senior-b"]
        assert not approved.automatic

        # One adjuster may approve less than payable with a reason (below the threshold).
        smaller = Incident(broker, policy, category=Category.malware)
        await smaller.report()
        await smaller.complete({IR: "150000"})
        claim = await claim_when(payout, junior, smaller.incident_id, "pending_approval")
        partial = await payout.post(f"/v1/claims/{claim['id']}/approve", headers=junior,
                                    json={"amount": "80000", "reason": "one invoice unsupported"})
        assert partial.json()["status"] == "approved", partial.text
        assert partial.json()["approved_amount"] == "80000.00"
        denied_one = Incident(broker, policy, category=Category.other)
        await denied_one.report()
        await denied_one.complete({IR: "150000"})
        claim = await claim_when(payout, junior, denied_one.incident_id, "pending_approval")
        denied = await payout.post(f"/v1/claims/{claim['id']}/deny", headers=junior,
                                   json={"reason": "the loss predates the policy"})
        assert denied.json()["status"] == "denied"
        assert denied.json()["payment"] is None


async def test_twenty_concurrent_approvals_make_one_payment(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    adjusters = [tokens.adjuster("race-a", "5000000"), tokens.adjuster("race-b", "5000000")]
    async with running(make_payout()) as payout:
        policy = await register(broker, sections=BIG_SECTIONS)
        large, small = Incident(broker, policy), Incident(broker, policy, category=Category.ddos)
        for incident, amount in ((large, "2050000"), (small, "250000")):
            await incident.report()
            await incident.complete({IR: amount})
        large_claim = await claim_when(payout, adjusters[0], large.incident_id, "pending_approval")
        small_claim = await claim_when(payout, adjusters[0], small.incident_id, "pending_approval")

        async def approve(claim: dict[str, Any], headers: dict[str, str]) -> int:
            response = await payout.post(f"/v1/claims/{claim['id']}/approve", json={},
                                         headers=headers)
            return response.status_code

        two_approvers = await asyncio.gather(*(approve(large_claim, adjusters[i % 2])
                                               for i in range(20)))
        assert Counter(two_approvers) == {200: 2, 409: 18}
        one_approver = await asyncio.gather(*(approve(small_claim, adjusters[0]) for _ in range(20)))
        assert Counter(one_approver) == {200: 1, 409: 19}
        for claim, incident in ((large_claim, large), (small_claim, small)):
            await claim_when(payout, adjusters[0], incident.incident_id, "paid")
            assert len(await sandbox.payments(reference=claim["id"])) == 1


async def test_two_claims_of_one_policy_share_its_sublimit(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    adjusters = [tokens.adjuster("share-a", "5000000"), tokens.adjuster("share-b", "5000000")]
    async with running(make_payout()) as payout:
        policy = await register(broker, sections={IR: SectionTerms(sublimit=Decimal("300000"))})
        first, second = Incident(broker, policy), Incident(broker, policy, category=Category.other)
        for incident in (first, second):
            await incident.report()
            await incident.complete({IR: "250000"})
        claims = [await claim_when(payout, adjusters[0], i.incident_id, "pending_approval")
                  for i in (first, second)]
        assert [c["payable"] for c in claims] == ["200000.00", "200000.00"]

        decided = await asyncio.gather(*(
            payout.post(f"/v1/claims/{c['id']}/approve", json={}, headers=adjusters[n])
            for n, c in enumerate(claims)))
        assert sorted(r.status_code for r in decided) == [200, 409]
        loser = claims[[r.status_code for r in decided].index(409)]
        reassessed = await payout.post(f"/v1/claims/{loser['id']}/assess", headers=adjusters[0])
        assert reassessed.json()["payable"] == "100000.00"
        assert reassessed.json()["sections"][0]["sublimit_remaining"] == "100000.00"
        approved = await payout.post(f"/v1/claims/{loser['id']}/approve", json={},
                                     headers=adjusters[1])
        assert approved.json()["status"] == "approved", approved.text
        paid = [await claim_when(payout, adjusters[0], i.incident_id, "paid") for i in (first, second)]
        assert sorted(c["payment"]["amount"] for c in paid) == ["100000.00", "200000.00"]

        # A third claim finds the sublimit used up: nothing payable, closed without payment.
        third = Incident(broker, policy, category=Category.malware)
        await third.report()
        await third.complete({IR: "250000"})
        closed = await claim_when(payout, adjusters[0], third.incident_id, "closed_without_payment")
        assert closed["sections"][0]["sublimit_remaining"] == "0.00"


async def test_provider_faults_are_retried_under_one_idempotency_key(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    adjuster = tokens.adjuster()
    async with running(make_payout()) as payout:
        policy = await register(broker)
        retried, failing = Incident(broker, policy), Incident(broker, policy, category=Category.ddos)
        await sandbox.fault("fail", 2)
        await sandbox.fault("timeout", 1)
        await retried.report()
        await retried.complete({IR: "80000"})
        paid = await claim_when(payout, adjuster, retried.incident_id, "paid")
        assert paid["payment"]["attempts"] == 4
        payments = await sandbox.payments(reference=paid["id"])
        assert len(payments) == 1
        tries = await sandbox.requests(reference=paid["id"])
        assert [t["fault"] for t in tries] == ["fail", "fail", "timeout", None]
        assert {t["idempotency_key"] for t in tries} == {paid["payment"]["id"]}
        assert paid["payment"]["provider_reference"] == payments[0]["id"]

        await sandbox.fault("fail", 5)
        await failing.report()
        await failing.complete({IR: "80000"})
        failed = await claim_when(payout, adjuster, failing.incident_id, "payment_failed")
        assert failed["payment"]["state"] == "failed"
        assert failed["payment"]["attempts"] == 5
        assert "500" in failed["payment"]["last_error"]
        assert await sandbox.payments(reference=failed["id"]) == []
        alerts = await wait_for_events(broker, CLAIMS.name,
                                       lambda e: e.subject == str(failing.incident_id)
                                       and e.type == PaymentFailed.event_type)
        assert len(alerts) == 1


async def test_a_restart_in_the_middle_of_a_payment_still_pays_once(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    adjuster = tokens.adjuster()
    make: Any = make_payout
    settings = {"payment_timeout_seconds": 5.0, "payment_lease_seconds": 6.0}
    policy = await register(broker)
    incident = Incident(broker, policy)
    await sandbox.fault("slow", 1, delay_seconds=3.0)
    first: FastAPI = make(**settings)
    async with running(first) as payout:
        await incident.report()
        await incident.complete({IR: "80000"})
        await eventually(lambda: sandbox.requests(), timeout=20)  # the call is in flight
        claim = (await payout.get(f"/v1/incidents/{incident.incident_id}/claim",
                                  headers=adjuster)).json()
        assert claim["status"] == "approved"
    # payout stopped mid-call; the provider made the payment nonetheless
    async with running(make(**settings)) as payout:
        paid = await claim_when(payout, adjuster, incident.incident_id, "paid", timeout=30)
    assert paid["payment"]["attempts"] == 2
    assert len(await sandbox.payments(reference=paid["id"])) == 1
    assert {t["idempotency_key"] for t in await sandbox.requests()} == {paid["payment"]["id"]}


class ProviderCallThatNeverReturns:
    """A provider call that fails in a way no outcome is recorded for (a bug, a crash): each
    try is leased and its lease runs out."""

    def __init__(self) -> None:
        self.calls = 0

    async def pay(self, payment: Leased) -> Outcome:
        self.calls += 1
        raise RuntimeError("the call never came back")


async def test_a_payment_whose_tries_record_no_outcome_fails_once_they_are_used_up(
    payout_db: str, platform: PlatformSettings, sandbox: Sandbox,
) -> None:
    settings = PayoutSettings(database_url=payout_db, payment_provider_url=sandbox.url,
                              payment_timeout_seconds=1.0, payment_lease_seconds=2.0,
                              payment_max_attempts=3)
    app = create_app(settings, platform, run_workers=False)
    async with running(app, wait_for_consumer=False):
        incident = await reported_incident(app, retention=Decimal("0"))
        await apply(app, incident.completed({IR: "30000"}))  # approved automatically
        runtime = app.state.runtime
        clock = ManualClock()
        provider = ProviderCallThatNeverReturns()
        worker = PaymentWorker(runtime.uow, dataclasses.replace(
            runtime.resources["context"], clock=clock), provider, settings)  # type: ignore[arg-type]
        for _ in range(settings.payment_max_attempts):
            with pytest.raises(RuntimeError):
                await worker.process_due()
            clock.advance(timedelta(seconds=settings.payment_lease_seconds + 1))
        assert await worker.process_due() == 1  # no try left: it fails, not leased again
        assert await worker.process_due() == 0
        async with runtime.uow() as uow:
            payment = await uow.session.scalar(select(Payment).join(
                Claim, Claim.id == Payment.claim_id).where(
                Claim.incident_id == incident.incident_id))
            assert payment is not None
            assert (payment.state, payment.attempts) == ("failed", 3)
            assert "no outcome was recorded" in (payment.last_error or "")
            failed = await uow.session.scalar(select(func.count()).select_from(Outbox).where(
                Outbox.event_type == PaymentFailed.event_type,
                Outbox.partition_key == str(incident.incident_id)))
        assert failed == 1
        assert provider.calls == settings.payment_max_attempts


def test_a_payment_lease_no_longer_than_a_try_is_refused() -> None:
    with pytest.raises(ValueError, match="PAYOUT_PAYMENT_LEASE_SECONDS must exceed"):
        PayoutSettings(payment_timeout_seconds=30.0, payment_lease_seconds=30.0)
