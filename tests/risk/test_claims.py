"""REMEDIATION_OVERDUE on a claim, risk and payout running on PostgreSQL and Tansu: an exposure
alert the policyholder let go overdue, then an incident through a vector that control guards
against, gets the question (the adjuster decides); the same with the item fixed before the
incident occurred does not. In the other order (the claim assessed before payout hears of the
overdue item) an undecided claim is assessed again and gets the question, and a decided one
keeps its decision and carries a note for the adjuster; both at once end in one of the two."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.payout.assessing import record_remediation
from services.payout.assessment import (
    AssessmentInputs,
    IncidentFacts,
    RemediationFact,
    coverage_questions,
)
from services.payout.claims import record_response
from services.payout.models import RemediationItem
from shared.controls import AttackVector, Control
from shared.events import (
    Attribution,
    Category,
    Contact,
    CoverageQuestion,
    Envelope,
    ExposureAlerted,
    ExposureKind,
    Finding,
    IncidentReported,
    IncidentResponseCompleted,
    JobType,
    PolicyTerms,
    RemediationOverdue,
    RemediationSource,
    Section,
    VendorVerifiedLoss,
)
from shared.events import RemediationItem as RemediationItemEvent
from shared.topics import INCIDENTS, RESPONSE, RISK
from tests.payout.conftest import make_payout, payout_db, sandbox  # noqa: F401 - fixtures
from tests.risk.conftest import Desk, eventually
from tests.risk.test_exposures import exposure
from tests.support.kafka import publish, wait_for_events
from tests.support.service import running

OVERDUE = CoverageQuestion.REMEDIATION_OVERDUE


@pytest.fixture
async def payout(make_payout: Callable[..., FastAPI]  # noqa: F811 - the imported fixture
                 ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = make_payout()
    async with running(app) as client:
        yield app, client


async def alerted(desk: Desk, payout_app: FastAPI) -> tuple[PolicyTerms, dict[str, Any], str]:
    """A policy (assessed 5 days ago, all controls in place) with an RDP exposure alert raised
    then, once payout has the item: (terms, item, vendor)."""
    real_now = datetime.now(UTC)
    desk.clock.set(real_now - timedelta(days=5))
    terms, vendor_id = await desk.assessed(
        in_place=list(Control), period_start=real_now - timedelta(days=200),
        period_end=real_now + timedelta(days=165))
    response = await desk.client.post("/v1/exposures", json=exposure(terms.policy_number),
                                      headers=desk.tokens.vendor(vendor_id))
    assert response.status_code == 201, response.text
    item = response.json()

    async def payout_has_it() -> bool:
        async with payout_app.state.runtime.uow() as uow:
            return await uow.session.get(RemediationItem, uuid.UUID(item["id"])) is not None

    await eventually(payout_has_it, what="payout has the remediation item")
    return terms, item, vendor_id


def incident_events(terms: PolicyTerms, incident_id: uuid.UUID, vector: AttackVector,
                    occurred_at: datetime, loss: str = "80000"
                    ) -> tuple[IncidentReported, IncidentResponseCompleted]:
    """An incident as intake and triage would publish it: reported, then the response's
    findings with the attack vector and a verified loss (80,000 less the 50,000 retention is
    approved automatically; above 100,000 it waits for an adjuster)."""
    reported = IncidentReported(
        incident_id=incident_id, org_id=terms.org_id, policy_number=terms.policy_number,
        category=Category.ransomware, title="Files encrypted", description="Ransom note.",
        occurred_at=occurred_at, discovered_at=occurred_at + timedelta(hours=1),
        reported_at=occurred_at + timedelta(hours=2),
        contact=Contact(name="Li Wei", email="li.wei@example.com", phone="+86 755 1234"),
        systems_down=True, outage_started_at=None, affected_hosts=12, records_exposed=None,
        data_types=[], ransom_demanded=None, funds_transferred=None)
    job_id, now = uuid.uuid4(), datetime.now(UTC)
    completed = IncidentResponseCompleted(
        incident_id=incident_id, org_id=terms.org_id, policy_number=terms.policy_number,
        completed_at=now, attribution=Attribution.criminal, verified_outage=None,
        findings=[Finding(job_id=job_id, job_type=JobType.forensics, vendor_id="forensics-a",
                          root_cause="RDP brute-forced", attack_vector=vector,
                          attribution=Attribution.criminal, contained_at=now,
                          records_confirmed=None)],
        verified_losses=[VendorVerifiedLoss(section=Section.incident_response,
                                            amount=Decimal(loss), description="invoice",
                                            vendor_id="forensics-a", job_id=job_id)])
    return reported, completed


async def incident_through(desk: Desk, terms: PolicyTerms, vector: AttackVector,
                           occurred_at: datetime, loss: str = "80000") -> uuid.UUID:
    incident_id = uuid.uuid4()
    reported, completed = incident_events(terms, incident_id, vector, occurred_at, loss)
    for event, topic in ((reported, INCIDENTS), (completed, RESPONSE)):
        await publish(desk.broker, topic.name,
                      Envelope.wrap(event, source="/test", time=datetime.now(UTC)),
                      key=str(incident_id).encode())
    return incident_id


async def assessed_claim(desk: Desk, client: httpx.AsyncClient, incident_id: uuid.UUID
                         ) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await client.get(f"/v1/incidents/{incident_id}/claim",
                                    headers=desk.tokens.adjuster())
        body = response.json() if response.status_code == 200 else None
        return body if body and body["status"] != "open" else None

    return await eventually(probe, what="claim assessed")


async def test_an_incident_through_an_overdue_control_gets_remediation_overdue(
        desk: Desk, payout: tuple[FastAPI, httpx.AsyncClient]) -> None:
    payout_app, client = payout
    terms, item, _ = await alerted(desk, payout_app)
    desk.clock.advance(timedelta(hours=72, seconds=1))
    await desk.remind()
    await wait_for_events(desk.broker, RISK.name,
                          lambda e: e.type == RemediationOverdue.event_type
                          and e.data["item"]["item_id"] == item["id"])
    incident_id = await incident_through(desk, terms, AttackVector.remote_desktop,
                                         datetime.now(UTC) - timedelta(days=1))
    claim = await assessed_claim(desk, client, incident_id)
    assert OVERDUE in claim["coverage_questions"]
    assert claim["status"] == "pending_approval"  # the adjuster decides; nothing is denied


async def test_the_same_incident_with_the_item_done_before_gets_no_question(
        desk: Desk, payout: tuple[FastAPI, httpx.AsyncClient]) -> None:
    payout_app, client = payout
    terms, item, vendor_id = await alerted(desk, payout_app)
    desk.clock.advance(timedelta(hours=48))
    done = await desk.client.post(f"/v1/remediation/{item['id']}/done",
                                  headers=desk.tokens.vendor(vendor_id))
    assert done.status_code == 200, done.text

    async def payout_has_done() -> bool:
        async with payout_app.state.runtime.uow() as uow:
            row = await uow.session.get(RemediationItem, uuid.UUID(item["id"]))
            return row is not None and row.done_at is not None

    await eventually(payout_has_done, what="payout knows the item is done")
    incident_id = await incident_through(desk, terms, AttackVector.remote_desktop,
                                         datetime.now(UTC) - timedelta(days=1))
    claim = await assessed_claim(desk, client, incident_id)
    assert claim["coverage_questions"] == []
    assert claim["status"] in ("approved", "paid")  # approved automatically, unlike above


async def test_an_incident_through_an_unrelated_vector_gets_no_question(
        desk: Desk, payout: tuple[FastAPI, httpx.AsyncClient]) -> None:
    payout_app, client = payout
    terms, _, _ = await alerted(desk, payout_app)
    desk.clock.advance(timedelta(hours=73))
    incident_id = await incident_through(desk, terms, AttackVector.email_phishing,
                                         datetime.now(UTC) - timedelta(days=1))
    claim = await assessed_claim(desk, client, incident_id)
    assert claim["coverage_questions"] == []
    assert claim["status"] in ("approved", "paid")  # approved automatically, unlike above


T0 = datetime(2026, 5, 1, tzinfo=UTC)


def inputs(vectors: list[AttackVector], *items: RemediationFact) -> AssessmentInputs:
    policy = PolicyTerms(
        policy_number="P", org_id="o", holder_name="h", industry="other", region="CN-GD",
        critical_infrastructure=False, currency="CNY", period_start=T0 - timedelta(days=100),
        period_end=T0 + timedelta(days=200), retroactive_date=None,
        aggregate_limit=Decimal(1), retention=Decimal(0), bi_waiting_period_hours=0,
        notice_period_hours=72, war_exclusion=False, sections={})
    return AssessmentInputs(
        policy=policy, incident=IncidentFacts(category=Category.ransomware, occurred_at=T0,
                                              discovered_at=T0, reported_at=T0),
        attribution=None, losses=[], outage_minutes=None, paid_by_section={},
        paid_total=Decimal(0), other_incidents=[], attack_vectors=vectors,
        remediation=list(items))


@pytest.mark.parametrize(("due", "done", "raised"), [
    (T0 - timedelta(seconds=1), None, True),
    (T0, None, False),                                          # due at the very moment
    (T0 - timedelta(days=1), T0 + timedelta(seconds=1), True),  # fixed only afterwards
    (T0 - timedelta(days=1), T0, False),                        # fixed by then
    (T0 + timedelta(days=1), None, False),                      # not yet due
])
@pytest.mark.parametrize("closed_by", ["done_at", "superseded_at"])
def test_remediation_overdue_boundaries(due: datetime, done: datetime | None,
                                        raised: bool, closed_by: str) -> None:
    """An item superseded by a later assessment is closed from then on, like one done."""
    item = RemediationFact(control=Control.mfa_remote_access, due_at=due,
                           **{"done_at": None, closed_by: done})
    assert (OVERDUE in coverage_questions(inputs([AttackVector.vpn], item))) is raised
    assert OVERDUE not in coverage_questions(inputs([AttackVector.other], item))


async def store_items(runtime: Any, policy_number: str, item: RemediationItemEvent) -> None:
    async with runtime.uow() as uow:
        cause = Envelope.wrap(ExposureAlerted(
            policy_number=policy_number, org_id="o", vendor_id="v",
            kind=ExposureKind.exposed_service, description="d", item=item,
            at=datetime.now(UTC)), source="/test", time=datetime.now(UTC))
        await record_remediation(uow, runtime.resources["context"],
                                                policy_number, [item], cause)
        await uow.commit()


async def complete(runtime: Any, completed: IncidentResponseCompleted) -> None:
    async with runtime.uow() as uow:
        cause = Envelope.wrap(completed, source="/test", time=datetime.now(UTC))
        await record_response(uow, runtime.resources["context"], completed,
                                             cause)
        await uow.commit()


async def test_items_and_the_response_at_once_never_deadlock_and_never_miss_the_question(
        desk: Desk, payout: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """The remediation items and the response's completion applied by two transactions at
    once, ten times, each starting first in turn: each ends without a deadlock, and either the
    claim's assessment read the overdue item and asks the question, or the claim was decided
    first (approved automatically) and carries the note for the adjuster."""
    payout_app, client = payout
    runtime = payout_app.state.runtime
    real_now = datetime.now(UTC)
    terms = (await desk.policy(period_start=real_now - timedelta(days=200),
                               period_end=real_now + timedelta(days=165)))[0]
    for attempt in range(10):
        incident_id = uuid.uuid4()
        reported, completed = incident_events(terms, incident_id, AttackVector.remote_desktop,
                                              real_now - timedelta(days=1))
        await publish(desk.broker, INCIDENTS.name,
                      Envelope.wrap(reported, source="/test", time=real_now),
                      key=str(incident_id).encode())
        await eventually(functools.partial(claim_of, desk, client, incident_id),
                         what="claim opened")
        both = [store_items(runtime, terms.policy_number, overdue_item(real_now)),
                complete(runtime, completed)]
        await asyncio.gather(*(both if attempt % 2 else reversed(both)))  # each starts first
        claim = await assessed_claim(desk, client, incident_id)
        history = await client.get(f"/v1/claims/{claim['id']}/assessments",
                                   headers=desk.tokens.adjuster())
        assessment = max(history.json(), key=lambda a: a["at"])
        read_the_item = any(r["control"] == "no_exposed_rdp_or_smb"
                            for r in assessment["inputs"]["remediation"])
        assert (OVERDUE in claim["coverage_questions"]) is read_the_item
        if read_the_item:
            assert (claim["status"], claim["remediation_note"]) == ("pending_approval", None)
        else:
            assert claim["status"] in ("approved", "paid")
            assert "no_exposed_rdp_or_smb" in claim["remediation_note"]


def overdue_item(now: datetime) -> RemediationItemEvent:
    """An RDP exposure due 3 days ago and never fixed: overdue at an incident a day ago."""
    return RemediationItemEvent(
        item_id=uuid.uuid4(), control=Control.no_exposed_rdp_or_smb,
        source=RemediationSource.exposure, title="RDP open", cvss_score=None,
        due_at=now - timedelta(days=3), done_at=None)


async def risk_says(desk: Desk, terms: PolicyTerms, item: RemediationItemEvent) -> None:
    """risk's exposure alert for `item`, published late (after the claim was assessed)."""
    alerted = ExposureAlerted(policy_number=terms.policy_number, org_id=terms.org_id,
                              vendor_id="monitor", kind=ExposureKind.exposed_service,
                              description="RDP reachable", item=item, at=item.due_at)
    await publish(desk.broker, RISK.name,
                  Envelope.wrap(alerted, source="/test", time=datetime.now(UTC)),
                  key=terms.policy_number.encode())


async def late_policy(desk: Desk) -> PolicyTerms:
    real_now = datetime.now(UTC)
    return (await desk.policy(period_start=real_now - timedelta(days=200),
                              period_end=real_now + timedelta(days=165)))[0]


async def test_an_undecided_claim_is_assessed_again_when_the_overdue_item_arrives_late(
        desk: Desk, payout: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = payout
    terms = await late_policy(desk)
    incident_id = await incident_through(desk, terms, AttackVector.remote_desktop,
                                         datetime.now(UTC) - timedelta(days=1), loss="200000")
    first = await assessed_claim(desk, client, incident_id)
    assert (first["status"], first["coverage_questions"]) == ("pending_approval", [])
    await risk_says(desk, terms, overdue_item(datetime.now(UTC)))

    async def asked() -> dict[str, Any] | None:
        claim = await claim_of(desk, client, incident_id)
        return claim if claim and OVERDUE in claim["coverage_questions"] else None

    claim = await eventually(asked, what="the claim assessed again with the question")
    assert claim["status"] == "pending_approval" and claim["assessment_id"] != first[
        "assessment_id"]
    assert claim["remediation_note"] is None


async def test_a_decided_claim_keeps_its_decision_and_carries_a_note_for_the_adjuster(
        desk: Desk, payout: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = payout
    terms = await late_policy(desk)
    incident_id = await incident_through(desk, terms, AttackVector.remote_desktop,
                                         datetime.now(UTC) - timedelta(days=1))
    first = await assessed_claim(desk, client, incident_id)
    assert first["status"] in ("approved", "paid") and first["coverage_questions"] == []
    await risk_says(desk, terms, overdue_item(datetime.now(UTC)))

    async def noted() -> dict[str, Any] | None:
        claim = await claim_of(desk, client, incident_id)
        return claim if claim and claim["remediation_note"] else None

    claim = await eventually(noted, what="the note on the decided claim")
    assert "REMEDIATION_OVERDUE" in claim["remediation_note"]
    assert "no_exposed_rdp_or_smb" in claim["remediation_note"]
    assert claim["status"] in ("approved", "paid")
    assert (claim["assessment_id"], claim["coverage_questions"]) == (first["assessment_id"], [])


async def test_payout_sees_an_item_superseded_by_a_reassessment(
        desk: Desk, payout: tuple[FastAPI, httpx.AsyncClient]) -> None:
    payout_app, _ = payout
    terms, vendor_id = await desk.assessed(
        in_place=[c for c in Control if c is not Control.no_exposed_rdp_or_smb])
    [item] = (await desk.risk(terms.policy_number)).json()["items"]
    requested = await desk.client.post(f"/v1/policies/{terms.policy_number}/assessments",
                                       headers=desk.tokens.operator())
    assert requested.status_code == 202, requested.text
    second = uuid.UUID(requested.json()["id"])
    await desk.assign(terms, second, vendor_id)
    assert (await desk.submit(second, vendor_id, in_place=list(Control))).status_code == 200

    async def superseded_in_payout() -> datetime | None:
        async with payout_app.state.runtime.uow() as uow:
            row = await uow.session.get(RemediationItem, uuid.UUID(item["id"]))
            return row.superseded_at if row is not None else None

    seen = await eventually(superseded_in_payout, what="payout knows the item superseded")
    assert seen == desk.clock.now()


async def claim_of(desk: Desk, client: httpx.AsyncClient, incident_id: uuid.UUID
                   ) -> dict[str, Any] | None:
    found = await client.get(f"/v1/incidents/{incident_id}/claim",
                             headers=desk.tokens.adjuster())
    return found.json() if found.status_code == 200 else None
