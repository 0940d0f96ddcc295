"""A handler that fails on an event about a claim never freezes the claim silently: the
claim shows the dead-lettered event (API), operators get an alert (notify), and replaying the
dead letter after the fix applies it and clears the mark. `cyberclaims doctor` shows it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cyberclaims.doctor import collect
from services.payout import claims as payout_claims
from shared import dlq
from shared.clock import SystemClock
from shared.events import Section
from shared.topics import RESPONSE
from tests.payout.conftest import Incident, claim_when, eventually, register
from tests.support.service import Tokens, running


async def operator_alerts(client: httpx.AsyncClient, tokens: Tokens,
                          incident_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await client.get("/v1/notifications", params={"limit": 100},
                                headers=tokens.operator())
    assert response.status_code == 200, response.text
    return [item for item in response.json()["items"]
            if item["incident_id"] == str(incident_id)
            and item["kind"] == "event_dead_lettered_alert"]


async def test_a_dead_lettered_event_marks_the_claim_alerts_operators_and_replay_clears_it(
        broker: str, make_payout: Callable[..., FastAPI], make_notify: Callable[..., FastAPI],
        tokens: Tokens, monkeypatch: pytest.MonkeyPatch, payout_db: str) -> None:
    policy = await register(broker)
    incident = Incident(broker, policy)
    adjuster = tokens.adjuster()

    async def broken_handler(*_: object) -> None:
        raise OverflowError("date value out of range")  # a bug that fails on this event's data

    async with running(make_payout()) as payout, running(make_notify()) as notify:
        await incident.report()
        await claim_when(payout, adjuster, incident.incident_id, "open")
        monkeypatch.setattr(payout_claims, "record_response", broken_handler)
        completed = await incident.complete({Section.incident_response: "80000"})

        async def marked() -> dict[str, Any] | None:
            claim = await claim_when(payout, adjuster, incident.incident_id, "open")
            return claim if claim["dead_letters"] else None

        claim = await eventually(marked)
        [mark] = claim["dead_letters"]
        assert mark["event_id"] == str(completed.id)
        assert mark["event_type"] == completed.type and mark["consumer"] == "payout"
        assert "OverflowError" in mark["error"] and claim["response_completed"] is False

        [alert] = await eventually(lambda: operator_alerts(notify, tokens, incident.incident_id))
        assert f"claim {claim['id']}" in alert["body"] and "OverflowError" in alert["body"]

        report = await collect(broker, {"payout": payout_db}, SystemClock())
        assert report.dead_letters[RESPONSE.dead_letter] >= 1
        assert report.services["payout"].stuck["claims frozen by a dead-lettered event"] >= 1
        assert "cyberclaims-payout" in report.lag and "ATTENTION" in report.render()

        monkeypatch.undo()  # the fix is deployed
        [letter] = [letter for letter in await dlq.read_all(broker)
                    if letter.header("ce_id") == str(completed.id)]
        assert await dlq.replay(broker, letter.id) == 1

        async def applied() -> dict[str, Any] | None:
            claim = await claim_when(payout, adjuster, incident.incident_id,
                                     ("open", "approved", "paid", "pending_approval"))
            return None if claim["dead_letters"] or not claim["response_completed"] else claim

        claim = await eventually(applied)
        assert claim["payable"] is not None and Decimal(claim["payable"]) > 0
