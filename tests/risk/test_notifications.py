"""Exposure alert -> the policyholder is told at once (in-app feed, signed webhook, email to the
policy's contact), and again when the item turns overdue; operators when it is a tier D
policy's. risk and notify running on PostgreSQL and Tansu."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.notify.signing import verify
from shared.controls import Control
from shared.events import Envelope, ExposureAlerted, PolicyRegistered, RemediationOverdue
from shared.settings import PlatformSettings
from shared.topics import POLICIES
from tests.notify.conftest import LOCAL_RECEIVERS, Receiver
from tests.risk.conftest import Desk, eventually, policy_terms
from tests.risk.test_exposures import exposure
from tests.support.infra import free_port
from tests.support.kafka import publish, wait_until_consumed
from tests.support.service import running


@pytest.fixture
def notify_db(service_database: Callable[[str], str]) -> str:
    return service_database("notify")


@pytest.fixture
async def notify(notify_db: str, platform: PlatformSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = NotifySettings(database_url=notify_db, smtp_port=9, worker_poll_seconds=0.1,
                              operators_email=None, adjusters_email=None,
                              webhook_allowlist=LOCAL_RECEIVERS)
    async with running(create_notify(settings, platform)) as client:
        yield client


async def feed_kinds(client: httpx.AsyncClient, headers: dict[str, str], kind: str
                     ) -> list[dict[str, Any]]:
    response = await client.get("/v1/notifications?limit=100", headers=headers)
    assert response.status_code == 200, response.text
    return [n for n in response.json()["items"] if n["kind"] == kind]


async def test_an_exposure_alert_reaches_the_policyholder_and_so_does_its_overdue(
        desk: Desk, notify: httpx.AsyncClient) -> None:
    terms, vendor_id = await desk.assessed(in_place=list(Control))
    holder = desk.tokens.policyholder(terms.org_id)
    response = await desk.client.post("/v1/exposures", json=exposure(terms.policy_number),
                                      headers=desk.tokens.vendor(vendor_id))
    assert response.status_code == 201, response.text

    async def alerted() -> list[dict[str, Any]]:
        return await feed_kinds(notify, holder, "exposure_alert")

    [alert] = await eventually(alerted, what="the alert in the policyholder's feed")
    assert terms.policy_number in alert["title"]
    # staged with the feed item: a policy without a contact email gets no email
    assert await emails(notify, desk, f"org:{terms.org_id}") == []
    desk.clock.advance(timedelta(hours=72, seconds=1))
    await desk.remind()

    async def overdue() -> list[dict[str, Any]]:
        return await feed_kinds(notify, holder, "remediation_overdue")

    await eventually(overdue, what="the overdue notice in the policyholder's feed")


async def test_an_exposure_alert_and_its_overdue_reach_the_policyholders_webhook(
        desk: Desk, notify: httpx.AsyncClient) -> None:
    terms, vendor_id = await desk.assessed(in_place=list(Control))
    holder = desk.tokens.policyholder(terms.org_id)
    receiver, secret = Receiver(port=free_port()), "risk-webhook-secret-" + "s" * 16
    await receiver.start()
    try:
        subscribed = await notify.post("/v1/subscriptions",
                                       json={"url": receiver.url, "secret": secret},
                                       headers=holder)
        assert subscribed.status_code == 201, subscribed.text
        response = await desk.client.post("/v1/exposures", json=exposure(terms.policy_number),
                                          headers=desk.tokens.vendor(vendor_id))
        assert response.status_code == 201, response.text

        async def hooked(*types: str) -> list[dict[str, Any]] | None:
            bodies = [json.loads(r.body) for r in receiver.successes]
            return bodies if [b["type"] for b in bodies] == list(types) else None

        [alert] = await eventually(lambda: hooked(ExposureAlerted.event_type),
                                   what="the alert at the policyholder's webhook")
        assert alert["data"]["policy_number"] == terms.policy_number
        assert alert["data"]["item"]["control"] == "no_exposed_rdp_or_smb"
        desk.clock.advance(timedelta(hours=72, seconds=1))
        await desk.remind()
        await eventually(lambda: hooked(ExposureAlerted.event_type, RemediationOverdue.event_type),
                         what="the overdue notice at the policyholder's webhook")
        now = int(time.time())
        for request in receiver.successes:
            assert verify(secret, request.body, request.headers["x-cyberclaims-signature"], now=now)
    finally:
        await receiver.stop()


async def test_operators_hear_of_a_tier_d_policy_with_an_overdue_item(
        desk: Desk, notify: httpx.AsyncClient) -> None:
    terms, _ = await desk.assessed(in_place=[c for c in Control
                                             if c is not Control.mfa_remote_access][:3])
    desk.clock.advance(timedelta(days=87))
    await desk.remind()  # due in 3 days

    async def due_soon() -> list[dict[str, Any]]:
        return await feed_kinds(notify, desk.tokens.policyholder(terms.org_id),
                                "remediation_due_soon")

    await eventually(due_soon, what="the reminder 3 days before")
    desk.clock.advance(timedelta(days=3, seconds=1))
    await desk.remind()

    async def escalated() -> list[dict[str, Any]]:
        found = await feed_kinds(notify, desk.tokens.operator(), "remediation_escalated")
        return [n for n in found if terms.policy_number in n["title"]]

    await eventually(escalated, what="the operators' escalation")


async def emails(notify: httpx.AsyncClient, desk: Desk, recipient: str) -> list[tuple[str, str]]:
    """(target, kind) of the email deliveries to `recipient`, oldest first."""
    response = await notify.get("/v1/deliveries", params={"recipient": recipient,
                                                          "channel": "email", "limit": 100},
                                headers=desk.tokens.operator())
    assert response.status_code == 200, response.text
    return [(d["target"], d["kind"]) for d in reversed(response.json()["items"])]


async def test_risk_notifications_are_emailed_to_the_policys_contact(
        desk: Desk, notify: httpx.AsyncClient) -> None:
    terms = policy_terms(desk.clock.now(), contact_email="it@widget.example")
    sent = await publish(desk.broker, POLICIES.name,
                         Envelope.wrap(PolicyRegistered(policy=terms), source="/test",
                                       time=desk.clock.now()),
                         key=terms.policy_number.encode())
    await wait_until_consumed(desk.broker, "cyberclaims-notify", [sent])  # notify has its copy
    assessment = await eventually(lambda: desk.assessment_of(terms.policy_number),
                                  what="assessment requested")
    vendor_id = "vendor-mail"
    await desk.assign(terms, assessment.id, vendor_id)
    response = await desk.submit(assessment.id, vendor_id,
                                 in_place=[c for c in Control if c is not Control.mfa_email])
    assert response.status_code == 200, response.text
    holder = f"org:{terms.org_id}"
    alert = await desk.client.post("/v1/exposures", json=exposure(terms.policy_number),
                                   headers=desk.tokens.vendor(vendor_id))
    assert alert.status_code == 201, alert.text

    async def mailed(*kinds: str) -> list[tuple[str, str]] | None:
        found = await emails(notify, desk, holder)
        return found if [kind for _, kind in found] == list(kinds) else None

    await eventually(lambda: mailed("exposure_alert"), what="the alert emailed at once")
    desk.clock.advance(timedelta(hours=72, seconds=1))
    await desk.remind()
    await eventually(lambda: mailed("exposure_alert", "remediation_overdue"),
                     what="the alert's overdue notice emailed")
    desk.clock.advance(timedelta(days=87) - timedelta(hours=72, seconds=1))
    await desk.remind()  # MFA on email: due in 3 days
    found = await eventually(
        lambda: mailed("exposure_alert", "remediation_overdue", "remediation_due_soon"),
        what="the reminder 3 days before emailed")
    assert {target for target, _ in found} == {"it@widget.example"}
