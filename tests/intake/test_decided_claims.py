"""A policyholder cannot add a loss to a claim that is decided: intake refuses it (409) once the
decision has reached the incident, and a loss and the decision arriving at once are one of the
two orders (the incident row is locked by both); payout judges a loss that crossed the decision
on its way (tests/payout/test_races.py). Real PostgreSQL; the decision applied by intake's own
handler in a transaction of its own, as its consumer would, while the HTTP call runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.handlers import record_on_timeline
from shared.events import ClaimApproved, ClaimEvent, Envelope, LateLossRejected, Section
from shared.service import Runtime
from tests.intake.conftest import register, report, sql_value
from tests.support.service import Tokens, running

LOSS = {"section": "incident_response", "amount": "18000", "description": "Forensics"}
ROUNDS = 15


async def decide(app: FastAPI, incident_id: str, org_id: str) -> None:
    """The claim's approval, applied as intake's consumer applies it."""
    await apply(app, ClaimApproved(incident_id=uuid.UUID(incident_id), org_id=org_id,
                                   claim_id=uuid.uuid4(), at=datetime.now(UTC),
                                   amount=Decimal("90000"), approvers=["adjuster:test"],
                                   automatic=False, reason=None))


async def apply(app: FastAPI, event: ClaimEvent) -> None:
    """A claim's event, applied as intake's consumer applies it."""
    runtime: Runtime = app.state.runtime
    async with runtime.uow() as uow:
        await record_on_timeline(uow, event, Envelope.wrap(event, source="/cyberclaims/payout",
                                                             time=event.at))
        await uow.commit()


async def submit(client: httpx.AsyncClient, insured: dict[str, Any], incident_id: str
                 ) -> httpx.Response:
    return await client.post(f"/v1/incidents/{incident_id}/losses", json=LOSS,
                             headers=insured["headers"])


@pytest.fixture
async def holder(make_intake: Any, tokens: Tokens
                 ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, dict[str, Any]]]:
    """Intake's API without its consumer (the test applies the decision), and a policyholder."""
    app = make_intake(run_workers=False)
    async with running(app, wait_for_consumer=False) as client:
        yield app, client, await register(client, tokens)


async def test_a_loss_on_a_decided_claim_is_refused_and_leaves_nothing_behind(
    holder: tuple[FastAPI, httpx.AsyncClient, dict[str, Any]], db: AsyncEngine,
) -> None:
    app, client, insured = holder
    incident_id = await report(client, insured)
    assert (await submit(client, insured, incident_id)).status_code == 201
    await decide(app, incident_id, insured["org_id"])

    refused = await submit(client, insured, incident_id)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "claim on this incident is decided (claim approved)" in refused.json()["detail"]
    assert await sql_value(db, "SELECT count(*) FROM losses WHERE incident_id = :id",
                           id=uuid.UUID(incident_id)) == 1
    assert await sql_value(
        db, "SELECT count(*) FROM outbox WHERE event_type = 'cyberclaims.loss.submitted.v1' "
            "AND partition_key = :id", id=incident_id) == 1
    timeline = (await client.get(f"/v1/incidents/{incident_id}",
                                 headers=insured["headers"])).json()["timeline"]
    assert [e["type"] for e in timeline].count("loss.submitted") == 1


async def test_a_loss_and_the_decision_at_once_are_one_order_or_the_other(
    holder: tuple[FastAPI, httpx.AsyncClient, dict[str, Any]], db: AsyncEngine,
) -> None:
    app, client, insured = holder
    for round_ in range(2 * ROUNDS):
        incident_id = await report(client, insured)
        loss = submit(client, insured, incident_id)
        decision = decide(app, incident_id, insured["org_id"])
        first, second = (loss, decision) if round_ % 2 == 0 else (decision, loss)
        results = await asyncio.gather(first, second)
        [response] = [r for r in results if isinstance(r, httpx.Response)]
        stored = await sql_value(db, "SELECT count(*) FROM losses WHERE incident_id = :id",
                                 id=uuid.UUID(incident_id))
        assert (response.status_code, stored) in ((201, 1), (409, 0)), round_


async def test_a_loss_payout_rejected_as_late_is_on_the_timeline_and_the_status_stays(
    holder: tuple[FastAPI, httpx.AsyncClient, dict[str, Any]],
) -> None:
    """A loss that crossed the decision on its way: payout rejects it and says so
    (`LateLossRejected`); the policyholder reads why on the incident, whose claim stays
    decided as it was."""
    app, client, insured = holder
    incident_id = await report(client, insured)
    assert (await submit(client, insured, incident_id)).status_code == 201
    await decide(app, incident_id, insured["org_id"])
    loss_id = uuid.uuid4()
    reason = "submitted after the claim was approved: it is not part of this claim's decision"
    await apply(app, LateLossRejected(
        incident_id=uuid.UUID(incident_id), org_id=insured["org_id"], claim_id=uuid.uuid4(),
        at=datetime.now(UTC), loss_id=loss_id, section=Section.incident_response,
        amount=Decimal("18000"), hourly_loss=None, claim_status="approved", reason=reason))

    incident = (await client.get(f"/v1/incidents/{incident_id}",
                                 headers=insured["headers"])).json()
    assert incident["status"] == "claim_approved"
    [entry] = [e for e in incident["timeline"] if e["type"] == "claim.late_loss_rejected"]
    assert entry["summary"] == f"Loss {loss_id} rejected: {reason}"
