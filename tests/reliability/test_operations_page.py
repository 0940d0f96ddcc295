"""The operators' page in a real headless browser (Debian's chromium driven by Playwright, with
the adjuster console's helpers): an operator sees payout's dead letters and failed payments,
retries a payment from the keyboard alone and replays the dead letters, then redelivers notify's
failed delivery. Screenshots go to .data/screenshots/ with the console's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import expect

from services.payout import claims as payout_claims
from shared.events import Section
from tests.notify.conftest import Receiver, deliveries, dispatched, emit, subscribe, unique
from tests.payout.conftest import Incident, Sandbox, claim_when, eventually, register, serving
from tests.payout.test_console import CHROMIUM, bearer, chromium, console_page, snapshot, tab_to
from tests.support.service import Tokens

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is installed by tests/setup.py"),
]


async def test_an_operator_sees_each_list_and_acts_on_it(
        broker: str, make_payout: Callable[..., FastAPI], make_notify: Callable[..., FastAPI],
        receivers: Callable[..., Awaitable[Receiver]], sandbox: Sandbox, tokens: Tokens,
        monkeypatch: pytest.MonkeyPatch) -> None:
    adjuster, operator = tokens.adjuster(), tokens.operator("ops-lin")

    async def broken_handler(*_: object) -> None:
        raise OverflowError("date value out of range")

    async with serving(make_payout(payment_max_attempts=2), lifespan="on") as payout_url, \
            serving(make_notify(max_attempts=1), lifespan="on") as notify_url, \
            httpx.AsyncClient(base_url=payout_url) as payout, \
            httpx.AsyncClient(base_url=notify_url) as notify, chromium() as browser:
        frozen = Incident(broker, await register(broker))
        await frozen.report()
        frozen_claim = await claim_when(payout, adjuster, frozen.incident_id, "open", timeout=30)
        monkeypatch.setattr(payout_claims, "record_response", broken_handler)
        await frozen.complete({Section.incident_response: "80000"})

        async def marked() -> list[Any]:
            response = await payout.get("/v1/dead-letters", headers=operator)
            return [item for item in response.json()["items"]
                    if item["incident_id"] == str(frozen.incident_id)]

        await eventually(marked)
        monkeypatch.undo()

        unpaid = Incident(broker, await register(broker))
        await sandbox.fault("fail", 2)
        await unpaid.report()
        await unpaid.complete({Section.incident_response: "80000"})
        failed = await claim_when(payout, adjuster, unpaid.incident_id, "payment_failed", timeout=30)

        receiver = await receivers(start=False)  # nothing listens on its port yet
        vendor = unique("vendor")
        await subscribe(notify, tokens.vendor(vendor), receiver.url, "s" * 32)
        event = dispatched(vendor)
        await emit(broker, event)
        await eventually(lambda: deliveries(notify, tokens, incident_id=str(event.incident_id),
                                            channel="webhook", state="dead"))

        async with console_page(browser, payout_url, "/operations") as page:
            await page.fill("#token", bearer(operator))
            await page.click("#sign-in-button")
            await expect(page.locator("#who")).to_have_text("Signed in as ops-lin (operator)")
            await expect(page.locator("#service")).to_have_text("· payout")
            await expect(page.locator("#list-deliveries")).to_be_hidden()
            dead_letter = page.locator("#list-dead-letters tbody tr",
                                       has_text=f"claim {frozen_claim['id']}")
            await expect(dead_letter).to_contain_text("OverflowError")
            await expect(dead_letter).to_contain_text("cyberclaims.incident.response_completed.v1")
            payment = page.locator("#list-payments tbody tr", has_text=failed["id"])
            await expect(payment).to_contain_text("CNY ")
            await snapshot(page, "operations-payout")

            retry = f"#list-payments button[aria-label='Retry the payment of claim {failed['id']}']"
            await tab_to(page, retry)
            await page.keyboard.press("Enter")
            await expect(page.locator("#result-payments")).to_contain_text(
                f"Payment of claim {failed['id']}")
            await expect(page.locator("#result-payments")).to_be_focused()
            await expect(payment).to_have_count(0)
            paid = await claim_when(payout, adjuster, unpaid.incident_id, "paid")
            assert len(await sandbox.payments(reference=paid["id"])) == 1

            # The fix is deployed (monkeypatch undone above). Replay all replays every mark of
            # payout's database, which the session's other tests share: this one among them.
            marks = (await payout.get("/v1/dead-letters", headers=operator)).json()["total"]
            await page.click("#replay-all")
            await expect(page.locator("#result-dead-letters")).to_contain_text(
                f"Replayed {marks} event(s)")
            await eventually(lambda: _applied(payout, adjuster, frozen))

        await receiver.start()
        async with console_page(browser, notify_url, "/operations") as page:
            await page.fill("#token", bearer(operator))
            await page.click("#sign-in-button")
            await expect(page.locator("#service")).to_have_text("· notify")
            await expect(page.locator("#list-dead-letters")).to_be_hidden()
            delivery = page.locator("#list-deliveries tbody tr", has_text=vendor)
            await expect(delivery).to_contain_text("Connect")
            await snapshot(page, "operations-notify")
            await delivery.get_by_role("button", name="Redeliver").click()
            await expect(page.locator("#result-deliveries")).to_contain_text(
                f"to vendor:{vendor} scheduled again")
        await eventually(lambda: deliveries(notify, tokens, incident_id=str(event.incident_id),
                                            channel="webhook", state="delivered"))
        assert len(receiver.successes) == 1


async def _applied(payout: httpx.AsyncClient, adjuster: dict[str, str], incident: Incident
                   ) -> bool:
    claim = await claim_when(payout, adjuster, incident.incident_id,
                             ("open", "approved", "paid", "pending_approval"))
    return bool(claim["response_completed"]) and not claim["dead_letters"]
