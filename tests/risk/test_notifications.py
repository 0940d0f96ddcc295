"""Exposure alert -> the policyholder is told at once (in-app feed; webhooks follow the same
routes), and again when the item turns overdue; operators when it is a tier D policy's. risk
and notify running on PostgreSQL and Tansu."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from shared.controls import Control
from shared.settings import PlatformSettings
from tests.risk.conftest import Desk, eventually
from tests.risk.test_exposures import exposure
from tests.support.service import running


@pytest.fixture
def notify_db(service_database: Callable[[str], str]) -> str:
    return service_database("notify")


@pytest.fixture
async def notify(notify_db: str, platform: PlatformSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = NotifySettings(database_url=notify_db, smtp_port=9, worker_poll_seconds=0.1,
                              operators_email=None, adjusters_email=None)
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
    desk.clock.advance(timedelta(hours=72, seconds=1))
    await desk.remind()

    async def overdue() -> list[dict[str, Any]]:
        return await feed_kinds(notify, holder, "remediation_overdue")

    await eventually(overdue, what="the overdue notice in the policyholder's feed")


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
