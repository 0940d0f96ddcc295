"""The adjuster console in a real headless browser (Debian's chromium driven by Playwright): an
adjuster's day from the queues to the payment, with the mouse and with the keyboard alone.
Each test writes screenshots of the pages it visits to .data/screenshots/ (see the README)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright, expect

from shared.events import Section
from tests.payout.conftest import (
    Incident,
    Sandbox,
    apply,
    claim_when,
    register,
    reported_incident,
    serving,
)
from tests.payout.test_console_api import LARGE_POLICY, triaged, with_finding
from tests.support.service import AdjusterRegistrar, Tokens

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".data" / "screenshots"
IR, BI = Section.incident_response, Section.business_interruption

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is installed by tests/setup.py"),
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    # Assertions wait up to 15 s, not Playwright's 5: on a busy 2-core machine the first paint
    # of a page (Swagger UI's 1.5 MB bundle) has taken longer than 5 s.
    expect.set_options(timeout=15_000)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                  args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def console(app: FastAPI, *adjusters: dict[str, str]
                  ) -> AsyncIterator[tuple[str, httpx.AsyncClient, Browser]]:
    """The app served over real HTTP, a client of its API (`adjusters` registered in payout's
    registry, as an operator would before they sign in), and a browser."""
    async with serving(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as api, \
            chromium() as browser:
        api.event_hooks["request"].append(AdjusterRegistrar(api).register)
        for headers in adjusters:
            assert (await api.get("/v1/me", headers=headers)).status_code == 200
        yield url, api, browser


@asynccontextmanager
async def console_page(browser: Browser, url: str, path: str = "/console") -> AsyncIterator[Page]:
    """A fresh tab (its own session storage) on the console (or another page of the service);
    fails the test if the page's own script broke or was refused by its content security
    policy."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text else None)
    await page.goto(f"{url}{path}")
    try:
        yield page
    finally:
        await context.close()
    assert problems == []


async def snapshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def sign_in(page: Page, headers: dict[str, str], sub: str) -> None:
    await page.fill("#token", bearer(headers))
    await page.click("#sign-in-button")
    await expect(page.locator("#who")).to_contain_text(f"Signed in as {sub} (adjuster)")


async def open_from_queue(page: Page, queue: str, search: str, claim_id: str) -> None:
    await page.fill("#search-text", search)
    await page.click("#search-button")
    link = page.locator(f"#queue-{queue} tr[data-claim='{claim_id}'] a")
    await expect(link).to_be_visible()
    await link.click()
    await expect(page.locator("#claim-id")).to_have_text(claim_id)


async def claim_id(api: httpx.AsyncClient, headers: dict[str, str], incident: Incident) -> str:
    response = await api.get(f"/v1/incidents/{incident.incident_id}/claim", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def holder() -> str:
    return f"Console Holder {uuid.uuid4().hex[:8]}"


async def test_an_adjuster_verifies_a_bi_loss_sets_the_outage_and_approves(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("console-chen", "1000000")
    name = holder()
    async with console(quiet_payout, adjuster) as (url, api, browser):
        incident = await reported_incident(quiet_payout, holder_name=name)
        interruption = incident.submitted(BI, hourly_loss="10000")
        await apply(quiet_payout, interruption)
        await apply(quiet_payout, incident.completed({IR: "60000"}))  # no verified outage
        claim = await claim_id(api, adjuster, incident)

        async with console_page(browser, url) as page:
            await snapshot(page, "01-sign-in")
            await sign_in(page, adjuster, "console-chen")
            await expect(page.locator("#who")).to_contain_text("authority limit CNY 1,000,000.00")
            await page.fill("#search-text", name)
            await page.click("#search-button")
            await expect(page.locator(f"#queue-verification tr[data-claim='{claim}']")).to_contain_text(
                "losses to verify; the outage hours")
            await snapshot(page, "02-queues")
            await open_from_queue(page, "verification", name, claim)
            await expect(page.locator("#policy")).to_contain_text(name)
            await expect(page.locator("#incident")).to_contain_text("Files encrypted")
            loss = page.locator(f"#losses tr[data-loss='{interruption.loss_id}']")
            await expect(loss).to_contain_text("CNY 10,000.00 an hour")

            # problem+json next to the field: a verification needs a note.
            await loss.locator("form.verify button").click()
            await expect(loss.locator("form.verify [data-error-for='note']")).not_to_be_empty()
            await loss.locator("form.verify input[name='note']").fill("checked against the ledger")
            await loss.locator("form.verify button").click()
            await expect(page.locator("#loss-message")).to_have_text("Loss verified.")
            await expect(loss).to_contain_text("verified")

            await expect(page.locator("#outage-figure")).to_have_text("No outage figure yet.")
            await page.fill("#outage-hours", "20.1234")
            await page.fill("#outage-note", "per the ERP logs")
            await page.click("#set-outage")
            await expect(page.locator("[data-error-for='outage_hours']")).to_contain_text(
                "whole number of minutes")
            await page.fill("#outage-hours", "20")
            await page.click("#set-outage")
            await expect(page.locator("#outage-message")).to_have_text("Outage set.")
            await expect(page.locator("#outage-figure")).to_contain_text(
                "20 hours, set by an adjuster: per the ERP logs")
            # 10,000 x (20 - 8 waiting hours) + 60,000 - 50,000 retention
            await expect(page.locator("#claim-payable")).to_have_text("CNY 130,000.00")
            await expect(page.locator("#claim-status")).to_have_text("pending approval")
            await expect(page.locator("#history tbody tr")).to_have_count(1)
            await snapshot(page, "03-claim")

            # A better figure re-assesses the claim; the history says what changed.
            await page.fill("#outage-hours", "22")
            await page.fill("#outage-note", "the ERP came back two hours later")
            await page.click("#set-outage")
            await expect(page.locator("#claim-payable")).to_have_text("CNY 150,000.00")
            await expect(page.locator("#history tbody tr").nth(1)).to_contain_text(
                "payable CNY 130,000.00 → CNY 150,000.00; outage 1200 → 1320 minutes")
            await page.click("#approve")
            await expect(page.locator("#decision-message")).to_have_text(
                "Claim approved: CNY 150,000.00")
            await expect(page.locator("#approvals tbody tr")).to_contain_text("adjuster:console-chen")
            await snapshot(page, "04-claim-approved")


async def test_a_second_adjuster_approves_a_large_claim(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    first, second = tokens.adjuster("console-li", "5000000"), tokens.adjuster("console-wang", "5000000")
    name = holder()
    async with console(quiet_payout, first, second) as (url, api, browser):
        incident = await reported_incident(quiet_payout, holder_name=name, **LARGE_POLICY)
        await apply(quiet_payout, incident.completed({IR: "1250000"}))
        claim = await claim_id(api, first, incident)

        async with console_page(browser, url) as page:
            await sign_in(page, first, "console-li")
            await open_from_queue(page, "approval", name, claim)
            await expect(page.locator("#claim-payable")).to_have_text("CNY 1,200,000.00")
            await expect(page.locator("#claim-approvals")).to_have_text("0 of 2")
            await page.click("#approve")
            await expect(page.locator("#decision-message")).to_have_text(
                "Approval recorded; a second adjuster must approve.")
            await expect(page.locator("#authority-note")).to_have_text(
                "You approved this claim; a second adjuster must approve it.")
            await expect(page.locator("#approve")).to_be_disabled()

        async with console_page(browser, url) as page:
            await sign_in(page, second, "console-wang")
            await page.fill("#search-text", name)
            await page.click("#search-button")
            await expect(page.locator(f"#queue-approval tr[data-claim='{claim}']")).to_contain_text(
                "yes, you can approve")
            await open_from_queue(page, "approval", name, claim)
            await expect(page.locator("#approvals tbody tr")).to_have_count(1)
            await page.click("#approve")
            await expect(page.locator("#decision-message")).to_have_text(
                "Claim approved: CNY 1,200,000.00")
            await expect(page.locator("#approvals tbody tr")).to_have_count(2)
            await expect(page.locator("#claim-approvals")).to_have_text("2 of 2")
            await snapshot(page, "05-large-claim-approved")
            await page.click("#nav-queues")
            await expect(page.locator(f"#queue-decided tr[data-claim='{claim}']")).to_be_visible()


async def test_an_adjuster_without_enough_authority_sees_why(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    junior = tokens.adjuster("console-junior", "1000000")
    name = holder()
    async with console(quiet_payout, junior) as (url, api, browser):
        incident = await reported_incident(quiet_payout, holder_name=name, **LARGE_POLICY)
        await apply(quiet_payout, triaged(incident))
        await apply(quiet_payout, with_finding(incident.completed({IR: "1250000"}),
                                               "unpatched VPN appliance"))
        claim = await claim_id(api, junior, incident)

        async with console_page(browser, url) as page:
            await sign_in(page, junior, "console-junior")
            await page.fill("#search-text", name)
            await page.click("#search-button")
            row = page.locator(f"#queue-approval tr[data-claim='{claim}']")
            await expect(row).to_be_visible()
            await expect(row).not_to_contain_text("yes, you can approve")
            await open_from_queue(page, "approval", name, claim)
            await expect(page.locator("#authority-note")).to_have_text(
                "You cannot approve or deny this claim: its payable CNY 1,200,000.00 is above "
                "your authority limit CNY 1,000,000.00. An adjuster with a higher limit must "
                "decide.")
            await expect(page.locator("#approve")).to_be_disabled()
            await expect(page.locator("#deny")).to_be_disabled()
            await expect(page.locator("#incident")).to_contain_text("P1")
            await expect(page.locator("#incident")).to_contain_text("serious")
            await expect(page.locator("#findings")).to_contain_text("unpatched VPN appliance")
            await expect(page.locator("#findings-summary")).to_contain_text("Attribution: criminal")
            await snapshot(page, "06-beyond-authority")


async def test_an_adjuster_rejects_and_verifies_for_less_re_assesses_and_denies_in_their_time_zone(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("console-zhou", "1000000")
    name = holder()
    async with console(quiet_payout, adjuster) as (url, api, browser):
        incident = await reported_incident(quiet_payout, holder_name=name)
        overstated, partly = incident.submitted(IR, amount="20000"), incident.submitted(IR, amount="40000")
        await apply(quiet_payout, overstated)
        await apply(quiet_payout, partly)
        await apply(quiet_payout, incident.completed({IR: "150000"}))
        claim = await claim_id(api, adjuster, incident)
        reported_at = incident.reported().reported_at

        def shown(zone: str) -> str:
            return reported_at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")

        async with console_page(browser, url) as page:
            await sign_in(page, adjuster, "console-zhou")
            await open_from_queue(page, "verification", name, claim)
            await expect(page.locator("#tz")).to_have_value("Asia/Shanghai")
            await expect(page.locator("#incident")).to_contain_text(
                shown("Asia/Shanghai"))

            rejected = page.locator(f"#losses tr[data-loss='{overstated.loss_id}']")
            await rejected.locator("form.reject button").click()
            await expect(rejected.locator("form.reject [data-error-for='reason']")).not_to_be_empty()
            await rejected.locator("form.reject input[name='reason']").fill("no invoice behind it")
            await rejected.locator("form.reject button").click()
            await expect(page.locator("#loss-message")).to_have_text("Loss rejected.")
            await expect(rejected).to_contain_text("rejected")
            await expect(rejected).to_contain_text("no invoice behind it")

            verified = page.locator(f"#losses tr[data-loss='{partly.loss_id}']")
            await verified.locator("form.verify input[name='amount']").fill("30000")
            await verified.locator("form.verify input[name='note']").fill("a quarter was a prior upgrade")
            await verified.locator("form.verify button").click()
            await expect(page.locator("#loss-message")).to_have_text("Loss verified.")
            await expect(verified).to_contain_text("CNY 30,000.00")
            # 150,000 + 30,000 incident response - 50,000 retention
            await expect(page.locator("#claim-payable")).to_have_text("CNY 130,000.00")
            await expect(page.locator("#claim-status")).to_have_text("pending approval")

            await page.click("#reassess")
            await expect(page.locator("#decision-message")).to_have_text(
                "Re-assessed: payable CNY 130,000.00")

            await page.select_option("#tz", "Europe/London")
            await expect(page.locator("#incident")).to_contain_text(
                shown("Europe/London"))

            await page.click("#deny")
            await expect(page.locator("#decision [data-error-for='reason']")).not_to_be_empty()
            await page.fill("#reason", "the policyholder withdrew the claim")
            await page.click("#deny")
            await expect(page.locator("#decision-message")).to_have_text("Claim denied.")
            await expect(page.locator("#claim-status")).to_have_text("denied")
            await snapshot(page, "07-rejected-verified-denied")


async def test_the_console_works_from_the_keyboard_alone(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("console-keys", "1000000")
    name = holder()
    async with console(quiet_payout, adjuster) as (url, api, browser):
        incident = await reported_incident(quiet_payout, holder_name=name)
        await apply(quiet_payout, incident.completed({IR: "150000"}))
        claim = await claim_id(api, adjuster, incident)

        async with console_page(browser, url) as page:
            await tab_to(page, "#token")
            await page.keyboard.type(bearer(adjuster))
            await tab_to(page, "#sign-in-button")
            await page.keyboard.press("Enter")
            await expect(page.locator("#who")).to_contain_text("Signed in as console-keys")
            await tab_to(page, "#search-text")
            await page.keyboard.type(name)
            await page.keyboard.press("Enter")
            await expect(page.locator(f"#queue-approval tr[data-claim='{claim}']")).to_be_visible()
            await tab_to(page, f"#queue-approval tr[data-claim='{claim}'] a")
            await page.keyboard.press("Enter")
            await expect(page.locator("#claim-id")).to_have_text(claim)
            await tab_to(page, "#amount")
            await page.keyboard.type("90000")
            await tab_to(page, "#approve")
            await page.keyboard.press("Enter")
            # Less than payable needs a reason: the problem is shown by the reason field,
            # which takes the focus.
            await expect(page.locator("[data-error-for='reason']")).to_contain_text("needs a reason")
            await expect(page.locator("#reason")).to_be_focused()
            await page.keyboard.type("the recovery invoice is partly a prior upgrade")
            await tab_to(page, "#approve")
            await page.keyboard.press("Enter")
            await expect(page.locator("#decision-message")).to_have_text(
                "Claim approved: CNY 90,000.00")
            await expect(page.locator("#claim-closed-remainder")).to_contain_text(
                "Closed remainder CNY 10,000.00")
            await snapshot(page, "08-keyboard-partial-approval")


async def test_the_queues_page_through_what_the_search_found_until_the_token_fails(
    quiet_payout: FastAPI, tokens: Tokens,
) -> None:
    adjuster = tokens.adjuster("console-pages", "1000000")
    name = holder()
    async with console(quiet_payout, adjuster) as (url, _, browser):
        for _ in range(12):
            incident = await reported_incident(quiet_payout, holder_name=name)
            await apply(quiet_payout, incident.completed({IR: "150000"}))
        async with console_page(browser, url) as page:
            await sign_in(page, adjuster, "console-pages")
            await page.fill("#search-text", name)
            await page.click("#search-button")
            queue = page.locator("#queue-approval")
            await expect(queue.locator(".range")).to_have_text("1 to 10 of 12")
            await expect(queue.locator("tbody tr")).to_have_count(10)
            await expect(queue.locator(".prev")).to_be_disabled()
            await queue.locator(".next").click()
            await expect(queue.locator(".range")).to_have_text("11 to 12 of 12")
            await expect(queue.locator("tbody tr")).to_have_count(2)
            await expect(queue.locator(".next")).to_be_disabled()
            await queue.locator(".prev").click()
            await expect(queue.locator(".range")).to_have_text("1 to 10 of 12")

            # A token that no longer works sends the adjuster back to sign in, saying why.
            await page.evaluate("sessionStorage.setItem('cyberclaims.adjuster.token', 'stale')")
            await page.click("#search-button")
            await expect(page.locator("#sign-in-panel")).to_be_visible()
            await expect(page.locator("[data-error-for='token']")).to_contain_text(
                "Your sign-in has expired")
            await expect(page.locator("#who")).to_be_empty()


async def tab_to(page: Page, selector: str, *, most: int = 80) -> None:
    """Press Tab until `selector` has the focus (as a keyboard user would)."""
    target = page.locator(selector)
    for _ in range(most):
        if await target.evaluate("node => node === document.activeElement"):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} was not reached with Tab")


async def test_a_claim_approved_in_the_console_is_paid_once(
    make_payout: Callable[..., FastAPI], broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    """The whole path with the real consumer, relay and payment worker behind the page."""
    adjuster = tokens.adjuster("console-adjuster", "1000000")
    name = holder()
    async with console(make_payout(), adjuster) as (url, api, browser):
        policy = await register(broker, holder_name=name)
        incident = Incident(broker, policy)
        await incident.report()
        await incident.complete({IR: "150000"})
        claim: dict[str, Any] = await claim_when(api, adjuster, incident.incident_id,
                                                 "pending_approval", timeout=30)
        async with console_page(browser, url) as page:
            await sign_in(page, adjuster, "console-adjuster")
            await open_from_queue(page, "approval", name, claim["id"])
            await expect(page.locator("#breakdown tbody tr").first).to_contain_text(
                "incident response")
            await page.click("#approve")
            await expect(page.locator("#decision-message")).to_have_text(
                "Claim approved: CNY 100,000.00")
            paid = await claim_when(api, adjuster, incident.incident_id, "paid")
            await page.reload()
            await expect(page.locator("#payment")).to_contain_text("succeeded")
            await snapshot(page, "09-paid")
        assert [a["adjuster"] for a in paid["approvals"]] == ["adjuster:console-adjuster"]
        assert len(await sandbox.payments(reference=paid["id"])) == 1
