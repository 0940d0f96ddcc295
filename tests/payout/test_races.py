"""Two inputs that lead to a claim's assessment arriving at once (issue 24, item 1), and the
safety net that repairs what stopped moving anyway; real PostgreSQL, inputs really concurrent:
an adjuster's HTTP call and payout's event handler (or two handlers, as two consumers of the
group would run them) in their own transactions, started together in both orders."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from cyberclaims.doctor import STALE_SECONDS, service_health
from services.payout.app import create_app
from services.payout.context import Context
from services.payout.models import (
    Assessment,
    Claim,
    Incident,
    LossItem,
    Outbox,
    Payment,
    Policy,
)
from services.payout.safety_net import StuckClaimsAndPayments, unassessed_ready_claims
from services.payout.settings import PayoutSettings
from shared.clock import ManualClock
from shared.events import (
    LateLossRejected,
    PolicyRegistered,
    PolicyUpdated,
    Section,
    SectionTerms,
)
from shared.repairs import STUCK_REPAIRED
from shared.service import Runtime
from shared.settings import PlatformSettings
from tests.payout.conftest import Incident as IncidentStory
from tests.payout.conftest import Sandbox, apply, policy_terms, reported_incident
from tests.support.service import Tokens, running

IR, BI = Section.incident_response, Section.business_interruption
ITERATIONS = 15

Race = Callable[[FastAPI, httpx.AsyncClient, dict[str, str]],
                Awaitable[tuple[IncidentStory, Callable[[], Awaitable[Any]],
                                Callable[[], Awaitable[Any]]]]]


async def _claim_id(client: httpx.AsyncClient, headers: dict[str, str],
                    incident: IncidentStory) -> str:
    response = await client.get(f"/v1/incidents/{incident.incident_id}/claim", headers=headers)
    return str(response.json()["id"])


async def _claim_with_loss(app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str],
                           section: Section, **claimed: str) -> tuple[IncidentStory, str, str]:
    """(incident, claim id, loss id): a reported incident with one policyholder loss."""
    incident = await reported_incident(app)
    loss = incident.submitted(section, **claimed)
    await apply(app, loss)
    return incident, await _claim_id(client, headers, incident), str(loss.loss_id)


async def verify_vs_response(app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
                             ) -> tuple[IncidentStory, Callable[[], Awaitable[Any]],
                                        Callable[[], Awaitable[Any]]]:
    """The issue's case: the adjuster verifies the last loss as the vendors complete."""
    incident, claim_id, loss_id = await _claim_with_loss(app, client, headers, IR, amount="30000")

    async def verify() -> None:
        response = await client.post(f"/v1/claims/{claim_id}/losses/{loss_id}/verify",
                                     headers=headers, json={"note": "invoice checked"})
        assert response.status_code == 200, response.text

    return incident, verify, lambda: apply(app, incident.completed({IR: "60000"}))


async def outage_vs_response(app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
                             ) -> tuple[IncidentStory, Callable[[], Awaitable[Any]],
                                        Callable[[], Awaitable[Any]]]:
    """The adjuster sets the outage of a verified per-hour loss as the vendors complete."""
    incident, claim_id, loss_id = await _claim_with_loss(app, client, headers, BI,
                                                         hourly_loss="1000")
    verified = await client.post(f"/v1/claims/{claim_id}/losses/{loss_id}/verify",
                                 headers=headers, json={"note": "rate checked"})
    assert verified.status_code == 200, verified.text

    async def set_outage() -> None:
        response = await client.put(f"/v1/claims/{claim_id}/outage", headers=headers,
                                    json={"outage_hours": "30", "note": "ERP logs"})
        assert response.status_code == 200, response.text

    return incident, set_outage, lambda: apply(app, incident.completed({IR: "60000"}))


async def verify_vs_policy_update(app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
                                  ) -> tuple[IncidentStory, Callable[[], Awaitable[Any]],
                                             Callable[[], Awaitable[Any]]]:
    """The adjuster verifies the last loss as a new version of the policy arrives (the two
    take the claim and the policy locks: in the same order, or they deadlock)."""
    incident, claim_id, loss_id = await _claim_with_loss(app, client, headers, IR, amount="30000")
    await apply(app, incident.completed({IR: "60000"}))
    renewed = incident.policy.model_copy(update={"retention": Decimal("40000")})

    async def verify() -> None:
        response = await client.post(f"/v1/claims/{claim_id}/losses/{loss_id}/verify",
                                     headers=headers, json={"note": "invoice checked"})
        assert response.status_code == 200, response.text

    return incident, verify, lambda: apply(app, PolicyUpdated(policy=renewed, version=2))


async def policy_vs_response(app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
                             ) -> tuple[IncidentStory, Callable[[], Awaitable[Any]],
                                        Callable[[], Awaitable[Any]]]:
    """The policy arrives after the incident, as the vendors complete."""
    policy = policy_terms()
    incident = IncidentStory("unused", policy)
    await apply(app, incident.reported())
    return (incident, lambda: apply(app, PolicyRegistered(policy=policy)),
            lambda: apply(app, incident.completed({IR: "60000"})))


@pytest.mark.parametrize("race", [verify_vs_response, outage_vs_response, policy_vs_response,
                                  verify_vs_policy_update])
async def test_two_inputs_at_once_always_assess_the_claim(
    quiet_payout: FastAPI, tokens: Tokens, race: Race,
) -> None:
    adjuster = tokens.adjuster("racer", "5000000")
    async with running(quiet_payout, wait_for_consumer=False) as client:
        for iteration in range(2 * ITERATIONS):
            incident, one, other = await race(quiet_payout, client, adjuster)
            first, second = (one, other) if iteration % 2 == 0 else (other, one)
            await asyncio.gather(first(), second())
            response = await client.get(f"/v1/incidents/{incident.incident_id}/claim",
                                        headers=adjuster)
            claim = response.json()
            assert claim["assessment_id"] is not None, (iteration, claim)
            assert claim["status"] in ("approved", "pending_approval"), (iteration, claim)


async def test_one_adjusters_concurrent_approvals_are_one_approval_and_409s(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("eager", "5000000")
    async with running(quiet_payout, wait_for_consumer=False) as client:
        for payable_claimed in ("250000", "2050000"):  # one approver, then two
            incident = await reported_incident(
                quiet_payout, sections={IR: SectionTerms(sublimit=Decimal("5000000"))})
            await apply(quiet_payout, incident.completed({IR: payable_claimed}))
            claim_id = await _claim_id(client, adjuster, incident)
            statuses = await asyncio.gather(*(
                client.post(f"/v1/claims/{claim_id}/approve", headers=adjuster, json={})
                for _ in range(4)))
            assert sorted(r.status_code for r in statuses) == [200, 409, 409, 409]



async def test_an_approval_and_a_policy_update_at_once_pay_what_the_terms_of_the_time_allow(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    """A claim awaiting approval (70,000 payable) as the policy's aggregate is lowered to
    60,000. Approval first: 70,000 under the terms it was assessed on, paid once; the update
    finds the claim decided. Update first: the claim is assessed again at 60,000 and the
    approval (of the payable, no amount named) approves that. Never more than the terms in
    force when the approval committed, never two payments, never a 500."""
    adjuster = tokens.adjuster("terms-racer", "5000000")
    async with running(quiet_payout, wait_for_consumer=False) as client:
        for iteration in range(2 * ITERATIONS):
            incident = await reported_incident(quiet_payout)
            await apply(quiet_payout, incident.completed({IR: "120000"}))
            claim_id = await _claim_id(client, adjuster, incident)
            lowered = incident.policy.model_copy(update={"aggregate_limit": Decimal("60000")})

            async def approve(claim_id: str = claim_id) -> None:
                response = await client.post(f"/v1/claims/{claim_id}/approve", headers=adjuster,
                                             json={})
                assert response.status_code == 200, response.text

            update = apply(quiet_payout, PolicyUpdated(policy=lowered, version=2))
            first, second = (approve(), update) if iteration % 2 == 0 else (update, approve())
            await asyncio.gather(first, second)
            claim = (await client.get(f"/v1/claims/{claim_id}", headers=adjuster)).json()
            assert claim["status"] == "approved", (iteration, claim)
            assert claim["approved_amount"] == claim["payable"], (iteration, claim)
            assert claim["approved_amount"] in ("70000.00", "60000.00"), (iteration, claim)
            async with quiet_payout.state.runtime.uow() as uow:
                payments = (await uow.session.scalars(
                    select(Payment.amount).where(Payment.claim_id == uuid.UUID(claim_id)))).all()
            assert [str(amount) for amount in payments] == [claim["approved_amount"]], iteration


@pytest.mark.parametrize("decision", ["approve", "deny"])
async def test_a_loss_and_the_claims_decision_at_once_never_leave_the_loss_undecided(
    quiet_payout: FastAPI, tokens: Tokens, decision: str,
) -> None:
    """A policyholder's loss arrives as the adjuster decides the pending claim. Loss first: an
    approval is refused (409: verify it first), a denial rejects it with the claim. Decision
    first: the loss is recorded rejected, as submitted after the decision. Never a decided
    claim with a loss nobody will ever look at. Each order alone, then both at once."""
    adjuster = tokens.adjuster("decider", "5000000")
    body = {} if decision == "approve" else {"reason": "not a covered event"}
    decided_status = "approved" if decision == "approve" else "denied"
    async with running(quiet_payout, wait_for_consumer=False) as client:

        async def pending_claim() -> tuple[IncidentStory, str]:
            incident = await reported_incident(
                quiet_payout, sections={IR: SectionTerms(sublimit=Decimal("5000000"))})
            await apply(quiet_payout, incident.completed({IR: "250000"}))
            return incident, await _claim_id(client, adjuster, incident)

        async def decide(claim_id: str) -> int:
            response = await client.post(f"/v1/claims/{claim_id}/{decision}", headers=adjuster,
                                         json=body)
            return response.status_code

        async def outcome(incident: IncidentStory, loss_id: uuid.UUID
                          ) -> tuple[str, str, str, list[str]]:
            """The claim's status, the loss's state and note, and the loss ids of the
            `LateLossRejected` events staged for the policyholder."""
            claim = (await client.get(f"/v1/incidents/{incident.incident_id}/claim",
                                      headers=adjuster)).json()
            [item] = [i for i in claim["losses"] if i["id"] == str(loss_id)]
            async with quiet_payout.state.runtime.uow() as uow:
                told = (await uow.session.scalars(select(Outbox.envelope).where(
                    Outbox.event_type == LateLossRejected.event_type,
                    Outbox.partition_key == str(incident.incident_id)))).all()
            return (claim["status"], item["state"], item["note"] or "",
                    [envelope["data"]["loss_id"] for envelope in told])

        loss_first = (("pending_approval", "unverified", "") if decision == "approve" else
                      (decided_status, "rejected", "the claim was denied: not a covered event"))

        def decision_first(loss_id: uuid.UUID) -> tuple[str, str, str, list[str]]:
            return (decided_status, "rejected",
                    f"submitted after the claim was {decided_status}: it is not part of this "
                    "claim's decision", [str(loss_id)])

        incident, claim_id = await pending_claim()
        loss = incident.submitted(IR, amount="40000")
        await apply(quiet_payout, loss)
        assert await decide(claim_id) == (409 if decision == "approve" else 200)
        assert await outcome(incident, loss.loss_id) == (*loss_first, [])

        incident, claim_id = await pending_claim()
        loss = incident.submitted(IR, amount="40000")
        assert await decide(claim_id) == 200
        await apply(quiet_payout, loss)
        assert await outcome(incident, loss.loss_id) == decision_first(loss.loss_id)

        for iteration in range(2 * ITERATIONS):
            incident, claim_id = await pending_claim()
            loss = incident.submitted(IR, amount="40000")
            first, second = ((decide(claim_id), apply(quiet_payout, loss)) if iteration % 2 == 0
                             else (apply(quiet_payout, loss), decide(claim_id)))
            await asyncio.gather(first, second)
            assert await outcome(incident, loss.loss_id) in (
                (*loss_first, []), decision_first(loss.loss_id)), iteration


# --- the safety net -------------------------------------------------------------------------------


@dataclasses.dataclass
class NetUnderTest:
    runtime: Runtime
    clock: ManualClock
    net: StuckClaimsAndPayments
    woken: list[bool]


@pytest.fixture
async def safety_net(payout_db: str, sandbox: Sandbox, platform: PlatformSettings
                     ) -> AsyncIterator[NetUnderTest]:
    """A safety net on its own manual clock, over payout running without workers."""
    settings = PayoutSettings(database_url=payout_db, payment_provider_url=sandbox.url,
                              stuck_after_seconds=300)
    app = create_app(settings, platform, run_workers=False)
    async with running(app, wait_for_consumer=False):
        runtime: Runtime = app.state.runtime
        clock = ManualClock()
        ctx: Context = dataclasses.replace(runtime.resources["context"], clock=clock)
        woken: list[bool] = []
        net = StuckClaimsAndPayments(runtime.uow, ctx, settings,
                                     wake_payments=lambda: woken.append(True))
        yield NetUnderTest(runtime, clock, net, woken)


def _repaired(kind: str) -> float:
    return STUCK_REPAIRED.labels("payout", kind)._value.get()


async def _completed_claim(runtime: Runtime, since: datetime, **loss: Any) -> uuid.UUID:
    """A claim with every input in (policy, incident, response, one verified loss) written
    straight to the database as of `since`, as if no path had assessed it."""
    policy = policy_terms()
    story = IncidentStory("unused", policy)
    reported = story.reported()
    claim_id = uuid.uuid4()
    async with runtime.uow() as uow:
        uow.session.add(Policy(policy_number=policy.policy_number, org_id=policy.org_id,
                               version=1, terms=policy.model_dump(mode="json"), updated_at=since))
        uow.session.add(Incident(
            id=story.incident_id, policy_number=policy.policy_number, org_id=policy.org_id,
            category=reported.category.value, occurred_at=reported.occurred_at,
            discovered_at=reported.discovered_at, reported_at=reported.reported_at))
        uow.session.add(Claim(id=claim_id, incident_id=story.incident_id,
                              policy_number=policy.policy_number, org_id=policy.org_id,
                              status="open", opened_at=since, updated_at=since,
                              response_completed_at=since, attribution="criminal"))
        await uow.session.flush()
        uow.session.add(LossItem(id=uuid.uuid4(), claim_id=claim_id, state="verified",
                                 description="verified", submitted_at=since, **loss))
        await uow.commit()
    return claim_id


async def test_the_safety_net_assesses_a_stuck_claim_exactly_once(
        safety_net: NetUnderTest, payout_db: str) -> None:
    runtime, net = safety_net.runtime, safety_net.net
    since = safety_net.clock.now() - timedelta(minutes=10)
    stuck = await _completed_claim(runtime, since, source="vendor", section=IR.value,
                                   amount=Decimal("80000"))
    waiting = await _completed_claim(runtime, since, source="policyholder", section=BI.value,
                                     hourly_loss=Decimal("1000"))  # for the outage figure
    before = _repaired("claim_unassessed")
    # `cyberclaims doctor` counts what the net would assess: its `stale` set to the net's cutoff.
    doctor_now = safety_net.clock.now() - net.stuck_after + timedelta(seconds=STALE_SECONDS)
    counted = "claims ready to assess but unassessed"
    doctor_before = (await service_health("payout", payout_db, doctor_now)).stuck[counted]
    async with runtime.uow() as uow:
        ready = set(await uow.session.scalars(unassessed_ready_claims(since)))
    assert stuck in ready and waiting not in ready
    assert doctor_before >= 1

    assert await net.repair_stuck() >= 1  # the database is shared: others may be stuck too
    await net.repair_stuck()
    assert (await service_health("payout", payout_db, doctor_now)).stuck[counted] < doctor_before
    async with runtime.uow() as uow:
        claim = await uow.session.get(Claim, stuck)
        assert claim is not None
        assert claim.status == "approved"  # 80,000 - 50,000 retention: auto-approved
        assessments = list(await uow.session.scalars(
            select(Assessment).where(Assessment.claim_id == stuck)))
        assert [a.requested_by for a in assessments] == ["safety-net"]  # once, in two passes
        left_alone = await uow.session.get(Claim, waiting)
        assert left_alone is not None and left_alone.status == "open"
    assert _repaired("claim_unassessed") >= before + 1


async def test_the_safety_net_resumes_an_overdue_payment_and_leaves_one_in_flight(
    safety_net: NetUnderTest,
) -> None:
    runtime, clock, net = safety_net.runtime, safety_net.clock, safety_net.net
    start = clock.now()
    payments = {"overdue": (uuid.uuid4(), start - timedelta(minutes=6)),
                "in_flight": (uuid.uuid4(), start + timedelta(seconds=20))}
    async with runtime.uow() as uow:
        for payment_id, next_attempt_at in payments.values():
            claim_id = uuid.uuid4()
            uow.session.add(Claim(id=claim_id, incident_id=uuid.uuid4(), policy_number="P",
                                  org_id="org", status="approved", opened_at=start,
                                  updated_at=start))
            await uow.session.flush()
            uow.session.add(Payment(id=payment_id, claim_id=claim_id, amount=Decimal("100"),
                                    currency="CNY", state="pending", attempts=1,
                                    next_attempt_at=next_attempt_at, created_at=start))
        await uow.commit()
    before = _repaired("payment_requested")

    await net.repair_stuck()
    async with runtime.uow() as uow:
        overdue = await uow.session.get(Payment, payments["overdue"][0])
        in_flight = await uow.session.get(Payment, payments["in_flight"][0])
        assert overdue is not None and in_flight is not None
        assert overdue.next_attempt_at == start  # due now, same row: same idempotency key
        assert (overdue.state, overdue.attempts) == ("pending", 1)
        assert in_flight.next_attempt_at == payments["in_flight"][1]  # not touched
    assert safety_net.woken
    assert _repaired("payment_requested") >= before + 1
    # Resumed once: due now is not overdue, so a second pass leaves it alone.
    clock.advance(timedelta(seconds=1))
    await net.repair_stuck()
    async with runtime.uow() as uow:
        overdue = await uow.session.get(Payment, payments["overdue"][0])
        assert overdue is not None and overdue.next_attempt_at == start
