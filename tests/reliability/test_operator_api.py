"""The operators' API on PostgreSQL and the session's Tansu: a service lists the events it gave
up on and replays them once the fault is fixed (each applied once, however often replayed).
Payout's list of failed payments is shown in test_payment_retry.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.payout import claims as payout_claims
from shared import dlq
from shared.events import Section
from tests.payout.conftest import Incident, claim_when, eventually, register
from tests.support.service import Tokens, running


def duplicates_skipped(consumer: str) -> float:
    return REGISTRY.get_sample_value("cyberclaims_events_duplicate_total",
                                     {"consumer": consumer}) or 0.0


async def dead_letters(client: httpx.AsyncClient, tokens: Tokens) -> list[dict[str, Any]]:
    response = await client.get("/v1/dead-letters", headers=tokens.operator())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_poisoned_event_is_listed_then_replayed_after_the_fix_and_applied_once(
        broker: str, make_payout: Callable[..., FastAPI], tokens: Tokens,
        monkeypatch: pytest.MonkeyPatch) -> None:
    adjuster, operator = tokens.adjuster(), tokens.operator()
    incident = Incident(broker, await register(broker))

    async def broken_handler(*_: object) -> None:
        raise OverflowError("date value out of range")  # a bug that fails on this event's data

    async with running(make_payout()) as payout:
        await incident.report()
        claim = await claim_when(payout, adjuster, incident.incident_id, "open")
        monkeypatch.setattr(payout_claims, "record_response", broken_handler)
        completed = await incident.complete({Section.incident_response: "80000"})

        async def listed() -> list[dict[str, Any]]:
            return [item for item in await dead_letters(payout, tokens)
                    if item["event_id"] == str(completed.id)]

        [mark] = await eventually(listed)
        assert mark["event_type"] == completed.type and mark["consumer"] == "payout"
        assert mark["incident_id"] == str(incident.incident_id)
        assert mark["marked"] == [f"claim {claim['id']}"] and "OverflowError" in mark["error"]
        page = (await payout.get("/v1/dead-letters", params={"limit": 1},
                                 headers=operator)).json()
        assert page["limit"] == 1 and page["total"] >= 1 and len(page["items"]) == 1

        replay = f"/v1/dead-letters/{completed.id}/replay"
        assert (await payout.post(replay, headers=adjuster)).status_code == 403
        assert (await payout.get("/v1/dead-letters")).status_code == 401
        missing = await payout.post(f"/v1/dead-letters/{uuid.uuid4()}/replay", headers=operator)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        bad = await payout.post("/v1/dead-letters/not-an-id/replay", headers=operator)
        assert bad.status_code == 422 and "event_id" in bad.text
        too_many = await payout.get("/v1/dead-letters", params={"limit": 1000}, headers=operator)
        assert too_many.status_code == 422 and "limit" in too_many.text

        monkeypatch.undo()  # the fix is deployed
        skipped = duplicates_skipped("payout")
        first = await payout.post(replay, headers=operator)
        assert first.status_code == 202, first.text
        assert first.json() == {"replayed": [str(completed.id)], "gone": []}
        # The same dead letter replayed again (the CLI's way, which needs no mark): the event
        # twice on its topic, whether or not the first copy is applied yet.
        [letter] = [letter for letter in await dlq.read_all(broker)
                    if letter.header("ce_id") == str(completed.id)]
        assert await dlq.replay(broker, letter.id) == 1

        async def applied_and_skipped_once_more() -> bool:
            return not await listed() and duplicates_skipped("payout") > skipped

        await eventually(applied_and_skipped_once_more)
        applied = await claim_when(payout, adjuster, incident.incident_id,
                                   ("open", "approved", "paid", "pending_approval"))
        assert applied["response_completed"] is True and applied["dead_letters"] == []
        assert len(applied["losses"]) == 1
        assert (await payout.post(replay, headers=operator)).status_code == 404
        every = await payout.post("/v1/dead-letters/replay", headers=operator)
        assert every.status_code == 202 and str(completed.id) not in every.json()["replayed"]


async def test_the_operators_page_says_what_each_service_lists(
        make_payout: Callable[..., FastAPI], make_notify: Callable[..., FastAPI],
        tokens: Tokens) -> None:
    async with running(make_payout(), wait_for_consumer=False) as payout, \
            running(make_notify(), wait_for_consumer=False) as notify:
        for client, service, lists in ((payout, "payout", ["dead-letters", "payments"]),
                                       (notify, "notify", ["deliveries"])):
            me = await client.get("/v1/operations", headers=tokens.operator("ops-lin"))
            assert me.status_code == 200, me.text
            assert me.json() == {"service": service, "sub": "ops-lin", "role": "operator",
                                 "lists": lists}
            assert (await client.get("/v1/operations", headers=tokens.adjuster())).status_code == 403
            page = await client.get("/operations")
            assert page.status_code == 200 and "operations.js" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            for asset, media_type in (("operations.js", "text/javascript"),
                                      ("common.js", "text/javascript"), ("common.css", "text/css")):
                served = await client.get(f"/operations/{asset}")
                assert served.status_code == 200
                assert served.headers["content-type"].startswith(media_type)
            assert (await client.get("/operations/console.js")).status_code == 404
        assert (await notify.get("/v1/dead-letters", headers=tokens.operator())).status_code == 404
