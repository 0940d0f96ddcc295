"""The sandbox payment provider keeps a bank's promises: one payment per idempotency key,
and faults on demand."""

from __future__ import annotations

import httpx
import pytest

from tests.payout.conftest import Sandbox

BODY = {"amount": "1200.50", "currency": "CNY", "reference": "claim-1"}


async def test_the_same_key_returns_the_same_payment(sandbox: Sandbox) -> None:
    client = sandbox.client
    first = await client.post("/v1/payments", json=BODY, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    again = await client.post("/v1/payments", json=BODY, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other_body = await client.post("/v1/payments", json={**BODY, "amount": "1.00"},
                                   headers={"Idempotency-Key": "k-1"})
    assert other_body.status_code == 422
    assert (await client.post("/v1/payments", json=BODY)).status_code == 400
    assert [p["id"] for p in await sandbox.payments()] == [first.json()["id"]]


async def test_faults_apply_to_the_next_requests_in_order(sandbox: Sandbox) -> None:
    await sandbox.fault("fail", 1)
    await sandbox.fault("slow", 1, delay_seconds=0.1)
    headers = {"Idempotency-Key": "k-2"}
    failed = await sandbox.client.post("/v1/payments", json=BODY, headers=headers)
    assert failed.status_code == 500
    assert await sandbox.payments() == []
    slow = await sandbox.client.post("/v1/payments", json=BODY, headers=headers)
    assert slow.status_code == 201
    await sandbox.fault("timeout", 1, delay_seconds=30)
    with pytest.raises(httpx.TimeoutException):  # the caller gives up; the payment stands
        await sandbox.client.post("/v1/payments", json=BODY, headers=headers, timeout=0.3)
    assert len(await sandbox.payments()) == 1
    assert [r["fault"] for r in await sandbox.requests()] == ["fail", "slow", "timeout"]
