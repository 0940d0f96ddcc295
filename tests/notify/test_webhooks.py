"""Webhooks to real HTTP receivers: signed, retried on a durable schedule, at most one success."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from services.notify.signing import verify
from shared.events import JobDispatched, NotificationDead, NotificationDelivered
from shared.topics import NOTIFICATIONS
from tests.notify.conftest import (
    Receiver,
    deliveries,
    dispatched,
    emit,
    subscribe,
    unique,
    wait_until,
)
from tests.support.kafka import wait_for_events
from tests.support.service import Tokens, running

Receivers = Callable[..., Awaitable[Receiver]]


def _secret() -> str:
    return f"whsec-{uuid.uuid4().hex}"


async def test_a_receiver_failing_three_times_gets_one_signed_delivery_even_on_replay(
    make_notify: Callable[..., FastAPI], receivers: Receivers, broker: str, tokens: Tokens,
) -> None:
    receiver = await receivers(fail_first=3)
    vendor, secret = unique("vendor"), _secret()
    async with running(make_notify()) as notify:
        subscription = await subscribe(notify, tokens.vendor(vendor), receiver.url, secret)
        assert "secret" not in subscription
        event = dispatched(vendor)
        envelope = await emit(broker, event)

        async def delivered_webhook() -> dict[str, Any] | None:
            rows = await deliveries(notify, tokens, incident_id=str(event.incident_id),
                                    channel="webhook")
            return rows[0] if rows and rows[0]["state"] == "delivered" else None

        webhook = await wait_until(delivered_webhook)
        # Replay the same event, then a marker on the same key: once the marker is handled, so
        # was the replay (per-key order).
        await emit(broker, event, envelope=envelope)
        marker = dispatched(unique("vendor"), incident_id=event.incident_id)
        await emit(broker, marker)
        await wait_until(lambda: _has_delivery(notify, tokens, str(event.incident_id),
                                               f"vendor:{marker.vendor_id}"))
        rows = await deliveries(notify, tokens, incident_id=str(event.incident_id),
                                recipient=f"vendor:{vendor}")

    assert sorted(row["channel"] for row in rows) == ["in_app", "webhook"]
    assert webhook["attempts"] == 4 and webhook["subscription_id"] == subscription["id"]
    assert webhook["target"] == subscription["id"] and webhook["next_attempt_at"] is None
    assert [r.status for r in receiver.requests] == [500, 500, 500, 200]
    now = int(time.time())
    for request in receiver.requests:
        signature = request.headers["x-cyberclaims-signature"]
        assert verify(secret, request.body, signature, now=now)
        assert not verify(_secret(), request.body, signature, now=now)
        assert not verify(secret, request.body + b" ", signature, now=now)
        assert request.headers["x-cyberclaims-delivery"] == webhook["id"]
        assert request.headers["x-cyberclaims-event"] == JobDispatched.event_type
    body = json.loads(receiver.successes[0].body)
    assert body["id"] == str(envelope.id) and body["type"] == JobDispatched.event_type
    assert body["specversion"] == "1.0" and body["source"] == "/cyberclaims/triage"
    assert body["data"]["job_id"] == str(event.job_id)
    assert body["data"]["accept_by"] == event.accept_by.isoformat().replace("+00:00", "Z")
    assert body["notification"]["delivery_id"] == webhook["id"]
    assert "Accept it by" in body["notification"]["summary"]

    # notify has stopped, and with it its relay: no other copy can follow the first.
    audit = await wait_for_events(broker, NOTIFICATIONS.name,
                                  lambda e: e.data.get("delivery_id") == webhook["id"])
    assert [e.type for e in audit] == [NotificationDelivered.event_type]
    assert audit[0].data["attempts"] == 4 and audit[0].correlationid == envelope.correlationid


async def _has_delivery(notify: Any, tokens: Tokens, incident_id: str, recipient: str) -> bool:
    return bool(await deliveries(notify, tokens, incident_id=incident_id, recipient=recipient))


async def test_a_receiver_down_past_every_try_leaves_the_delivery_dead_until_redelivered(
    make_notify: Callable[..., FastAPI], receivers: Receivers, broker: str, tokens: Tokens
) -> None:
    receiver = await receivers(start=False)  # nothing listens on its port yet
    vendor, secret = unique("vendor"), _secret()
    async with running(make_notify(max_attempts=3)) as notify:
        await subscribe(notify, tokens.vendor(vendor), receiver.url, secret)
        event = dispatched(vendor)
        await emit(broker, event)

        async def dead_webhook() -> dict[str, Any] | None:
            rows = await deliveries(notify, tokens, incident_id=str(event.incident_id),
                                    channel="webhook", state="dead")
            return rows[0] if rows else None

        dead = await wait_until(dead_webhook)
        assert dead["attempts"] == 3 and "Connect" in dead["last_error"]
        audit = await wait_for_events(broker, NOTIFICATIONS.name,
                                      lambda e: e.data.get("delivery_id") == dead["id"])
        assert audit[0].type == NotificationDead.event_type and audit[0].data["attempts"] == 3

        await receiver.start()
        response = await notify.post(f"/v1/deliveries/{dead['id']}/redeliver",
                                     headers=tokens.operator())
        assert response.status_code == 202, response.text
        assert response.json()["state"] == "pending" and response.json()["attempts"] == 0

        async def delivered() -> bool:
            rows = await deliveries(notify, tokens, incident_id=str(event.incident_id),
                                    channel="webhook", state="delivered")
            return bool(rows)

        await wait_until(delivered)
        again = await notify.post(f"/v1/deliveries/{dead['id']}/redeliver",
                                  headers=tokens.operator())
        assert again.status_code == 409
        forbidden = await notify.post(f"/v1/deliveries/{dead['id']}/redeliver",
                                      headers=tokens.vendor(vendor))
        assert forbidden.status_code == 403
        missing = await notify.post(f"/v1/deliveries/{uuid.uuid4()}/redeliver",
                                    headers=tokens.operator())
        assert missing.status_code == 404

    assert len(receiver.successes) == 1 == len(receiver.requests)
    assert verify(secret, receiver.requests[0].body,
                  receiver.requests[0].headers["x-cyberclaims-signature"], now=int(time.time()))


async def test_a_restart_in_the_middle_of_retries_resumes_the_schedule(
    make_notify: Callable[..., FastAPI], receivers: Receivers, broker: str, tokens: Tokens
) -> None:
    receiver = await receivers()
    receiver.failing = True
    vendor = unique("vendor")
    event = dispatched(vendor)
    first = make_notify(backoff_base_seconds=0.5, backoff_cap_seconds=0.5)
    async with running(first) as notify:
        await subscribe(notify, tokens.vendor(vendor), receiver.url, _secret())
        await emit(broker, event)

        async def failed_once() -> bool:
            rows = await deliveries(notify, tokens, incident_id=str(event.incident_id),
                                    channel="webhook")
            return bool(rows) and rows[0]["last_error"] is not None

        await wait_until(failed_once)
    # notify is down; the delivery waits in the database with its next try scheduled
    tries_before = len(receiver.requests)
    assert tries_before >= 1 and not receiver.successes
    async with running(make_notify(run_workers=False), wait_for_consumer=False) as api_only:
        rows = await deliveries(api_only, tokens, incident_id=str(event.incident_id),
                                channel="webhook")
        assert rows[0]["state"] == "pending" and rows[0]["next_attempt_at"] is not None
    receiver.failing = False

    async with running(make_notify()) as notify:

        async def delivered() -> dict[str, Any] | None:
            found = await deliveries(notify, tokens, incident_id=str(event.incident_id),
                                     channel="webhook", state="delivered")
            return found[0] if found else None

        webhook = await wait_until(delivered)
        feed = await notify.get("/v1/notifications", headers=tokens.vendor(vendor))

    assert len(receiver.successes) == 1
    assert webhook["attempts"] >= tries_before + 1
    assert feed.json()["total"] == 1  # the in-app notification was not made twice
