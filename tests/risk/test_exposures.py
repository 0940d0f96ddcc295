"""Exposure alerts and reminders with the injectable clock: an alert is due in 72 hours, the
timer stages 'due soon' and 'overdue' once each, and a tier D policy's overdue item escalates."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from services.risk import reads
from services.risk.models import RiskProfile
from shared.controls import Control
from shared.events import (
    ExposureAlerted,
    RemediationDone,
    RemediationDueSoon,
    RemediationEscalated,
    RemediationOverdue,
)
from shared.topics import RISK
from tests.risk.conftest import Desk
from tests.support.kafka import relayed_events, wait_for_events


def exposure(policy_number: str, **overrides: Any) -> dict[str, Any]:
    body = {"policy_number": policy_number, "kind": "exposed_service",
            "control": "no_exposed_rdp_or_smb", "title": "RDP open on 203.0.113.7:3389",
            "description": "Shodan shows RDP reachable from the internet."}
    return body | overrides


def of_item(event_type: str, item_id: str) -> Any:
    return lambda e: e.type == event_type and e.data["item"]["item_id"] == item_id


async def test_an_exposure_alert_is_due_in_72_hours_and_turns_overdue(desk: Desk) -> None:
    terms, vendor_id = await desk.assessed(in_place=list(Control))
    response = await desk.client.post("/v1/exposures", json=exposure(terms.policy_number),
                                      headers=desk.tokens.vendor(vendor_id))
    assert response.status_code == 201, response.text
    item = response.json()
    assert datetime.fromisoformat(item["due_at"]) == desk.clock.now() + timedelta(hours=72)
    assert (item["state"], item["source"]) == ("open", "exposure")
    [alert] = await wait_for_events(desk.broker, RISK.name,
                                    of_item(ExposureAlerted.event_type, item["id"]))
    assert alert.data["org_id"] == terms.org_id

    created = desk.clock.now()
    await desk.remind()
    # the alert told the policyholder: it counts as the 'due soon' reminder
    assert await desk.reminded(item["id"]) == (created, None)
    desk.clock.advance(timedelta(hours=72))
    await desk.remind()
    assert await desk.reminded(item["id"]) == (created, None)  # due now, not yet overdue
    desk.clock.advance(timedelta(seconds=1))
    await desk.remind()
    overdue_at = desk.clock.now()
    desk.clock.advance(timedelta(hours=1))
    await desk.remind()
    assert await desk.reminded(item["id"]) == (created, overdue_at)  # once
    [overdue] = await relayed_events(desk.broker, RISK.name, desk.runtime.engine,
                                     terms.policy_number,
                                     of_item(RemediationOverdue.event_type, item["id"]))
    assert overdue.data["tier"] == "A"
    risk = (await desk.risk(terms.policy_number, desk.tokens.policyholder(terms.org_id))).json()
    assert [i["state"] for i in risk["items"]] == ["overdue"]


async def test_due_soon_three_days_before_then_done_stops_reminders(desk: Desk) -> None:
    terms, vendor_id = await desk.assessed(
        in_place=[c for c in Control if c is not Control.mfa_email])
    [item] = (await desk.risk(terms.policy_number)).json()["items"]
    desk.clock.advance(timedelta(days=87) - timedelta(seconds=1))
    await desk.remind()
    assert await desk.reminded(item["id"]) == (None, None)
    desk.clock.advance(timedelta(seconds=1))
    await desk.remind()
    assert await desk.reminded(item["id"]) == (desk.clock.now(), None)
    await wait_for_events(desk.broker, RISK.name, of_item(RemediationDueSoon.event_type,
                                                          item["id"]))
    done = await desk.client.post(f"/v1/remediation/{item['id']}/done",
                                  headers=desk.tokens.vendor(vendor_id))
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "done"
    again = await desk.client.post(f"/v1/remediation/{item['id']}/done",
                                   headers=desk.tokens.operator())
    assert again.json()["done_at"] == done.json()["done_at"]
    await wait_for_events(desk.broker, RISK.name, of_item(RemediationDone.event_type, item["id"]))
    desk.clock.advance(timedelta(days=10))
    await desk.remind()
    assert (await desk.reminded(item["id"]))[1] is None  # done: never overdue


async def test_a_tier_d_policy_with_an_overdue_item_escalates_to_operators(desk: Desk) -> None:
    terms, _ = await desk.assessed(in_place=[])
    risk = (await desk.risk(terms.policy_number)).json()
    assert risk["tier"] == "D"
    desk.clock.advance(timedelta(days=91))
    await desk.remind()
    escalations = await wait_for_events(
        desk.broker, RISK.name,
        lambda e: e.type == RemediationEscalated.event_type
        and e.data["policy_number"] == terms.policy_number, count=len(Control))
    assert {e.data["item"]["control"] for e in escalations} == {c.value for c in Control}


async def test_the_portfolio_counts_tiers_and_overdue_items(desk: Desk) -> None:
    region = f"ZZ-{uuid.uuid4().hex[:6]}"  # a segment of this test's own
    await desk.assessed(in_place=list(Control), industry="energy", region=region)
    await desk.assessed(in_place=[], industry="energy", region=region)
    await desk.policy(industry="energy", region=region)
    desk.clock.advance(timedelta(days=91))
    portfolio = await desk.client.get("/v1/risk/portfolio", headers=desk.tokens.underwriter())
    assert portfolio.status_code == 200, portfolio.text
    [segment] = [s for s in portfolio.json()["segments"] if s["region"] == region]
    assert segment == {"industry": "energy", "region": region, "policies": 3,
                       "tiers": {"A": 1, "D": 1, "unassessed": 1},
                       "overdue_items": len(Control), "policies_with_overdue": 1}


async def test_the_portfolio_holds_when_a_policy_moves_to_a_new_segment_meanwhile(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy update (new industry or region) committed right after the portfolio's first
    statement: at READ COMMITTED a second statement would see the policy in a segment the first
    never saw. The portfolio reads one snapshot and still adds up."""
    region, moved_to = (f"ZZ-{uuid.uuid4().hex[:6]}" for _ in range(2))
    terms, _ = await desk.assessed(in_place=[], industry="energy", region=region)
    desk.clock.advance(timedelta(days=91))
    moved: list[str] = []

    async def move_the_policy() -> None:
        async with desk.runtime.uow() as other:
            await other.session.execute(update(RiskProfile)
                                        .where(RiskProfile.policy_number == terms.policy_number)
                                        .values(region=moved_to))
            await other.commit()
        moved.append(moved_to)

    async with desk.runtime.uow() as uow:
        execute = uow.session.execute

        async def execute_then_move(*args: Any, **kwargs: Any) -> Any:
            result = await execute(*args, **kwargs)
            if not moved:
                await move_the_policy()
            return result

        monkeypatch.setattr(uow.session, "execute", execute_then_move)
        portfolio = await reads.portfolio(uow, desk.context)
    assert moved == [moved_to]
    [segment] = [s for s in portfolio.segments if s.region in (region, moved_to)]
    assert (segment.region, segment.policies, segment.tiers) == (region, 1, {"D": 1})
    assert (segment.overdue_items, segment.policies_with_overdue) == (len(Control), 1)
