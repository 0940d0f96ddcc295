"""Operators find a failed payment in their list and retry it once the provider is fixed: the
same payment, under the same idempotency key, so a claim is never paid twice (not even by two
retries at once)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from cyberclaims.doctor import collect
from shared.clock import SystemClock
from shared.events import Section
from tests.payout.conftest import Incident, Sandbox, claim_when, register
from tests.support.service import Tokens, running

FAILED = "payments failed (retry: cyberclaims payments retry CLAIM_ID)"


async def failed_payments(payout: httpx.AsyncClient, operator: dict[str, str],
                          claim_id: str) -> list[dict[str, Any]]:
    """The claim's payment in the operators' list of failed payments (`[]`: not failed)."""
    response = await payout.get("/v1/payments", params={"state": "failed", "limit": 100},
                                headers=operator)
    assert response.status_code == 200, response.text
    return [item for item in response.json()["items"] if item["claim_id"] == claim_id]


async def test_an_operator_retries_a_failed_payment_once_with_the_same_idempotency_key(
        broker: str, make_payout: Callable[..., FastAPI], sandbox: Sandbox, tokens: Tokens,
        payout_db: str) -> None:
    adjuster, operator = tokens.adjuster(), tokens.operator()
    async with running(make_payout(payment_max_attempts=2)) as payout:
        incident = Incident(broker, await register(broker))
        await sandbox.fault("fail", 2)
        await incident.report()
        await incident.complete({Section.incident_response: "80000"})
        failed = await claim_when(payout, adjuster, incident.incident_id, "payment_failed")
        retry = f"/v1/claims/{failed['id']}/payment/retry"
        [listed] = await failed_payments(payout, operator, failed["id"])
        assert listed["id"] == failed["payment"]["id"] and listed["attempts"] == 2
        assert listed["amount"] == failed["payment"]["amount"] and listed["currency"] == "CNY"
        assert listed["incident_id"] == str(incident.incident_id) and listed["last_error"]
        assert (await payout.get("/v1/payments", headers=adjuster)).status_code == 403
        wrong = await payout.get("/v1/payments", params={"state": "lost"}, headers=operator)
        assert wrong.status_code == 422 and "state" in wrong.text

        report = await collect(broker, {"payout": payout_db}, SystemClock())
        assert report.services["payout"].stuck[FAILED] >= 1 and not report.healthy

        assert (await payout.post(retry, headers=adjuster)).status_code == 403
        assert (await payout.post(retry)).status_code == 401
        missing = await payout.post(f"/v1/claims/{uuid.uuid4()}/payment/retry", headers=operator)
        assert missing.status_code == 404

        first, second = await asyncio.gather(payout.post(retry, headers=operator),
                                             payout.post(retry, headers=operator))
        assert sorted([first.status_code, second.status_code]) == [200, 409]
        assert await failed_payments(payout, operator, failed["id"]) == []
        paid = await claim_when(payout, adjuster, incident.incident_id, "paid")
        assert (await payout.post(retry, headers=operator)).status_code == 409

        assert len(await sandbox.payments(reference=paid["id"])) == 1
        tries = await sandbox.requests(reference=paid["id"])
        assert [t["fault"] for t in tries] == ["fail", "fail", None]
        assert {t["idempotency_key"] for t in tries} == {paid["payment"]["id"]}
