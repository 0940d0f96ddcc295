"""The adjuster console in a real headless browser (Debian's chromium driven by Playwright):
sign in with a token, pick a claim from the approval queue, read its breakdown, approve it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from shared.events import Section
from tests.payout.conftest import Incident, Sandbox, claim_when, register, serving
from tests.support.service import Tokens

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is installed by tests/setup.py"),
]


async def test_an_adjuster_approves_a_claim_in_the_console(
    make_payout: Any, broker: str, tokens: Tokens, sandbox: Sandbox,
) -> None:
    adjuster = tokens.adjuster("console-adjuster", "1000000")
    token = adjuster["Authorization"].removeprefix("Bearer ")
    async with serving(make_payout(), lifespan="on") as url, \
            httpx.AsyncClient(base_url=url) as api:
        policy = await register(broker)
        incident = Incident(broker, policy)
        await incident.report()
        await incident.complete({Section.incident_response: "150000"})
        claim = await claim_when(api, adjuster, incident.incident_id, "pending_approval", timeout=30)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                      args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{url}/console")
                await page.fill("#token", token)
                await page.click("#sign-in-button")
                row = page.locator(f"#queue tr[data-claim='{claim['id']}']")
                await expect(row).to_be_visible()
                await row.click()
                await expect(page.locator("#claim-id")).to_have_text(claim["id"])
                await expect(page.locator("#claim-payable")).to_have_text("100000.00")
                await expect(page.locator("#breakdown tbody tr").first).to_contain_text(
                    "incident_response")
                await page.click("#approve")
                await expect(page.locator("#decision-message")).to_contain_text(
                    "Claim approved: 100000.00")
                await expect(row).to_have_count(0)  # gone from the queue
            finally:
                await browser.close()

        decided = await claim_when(api, adjuster, incident.incident_id, ("approved", "paid"))
        assert [a["adjuster"] for a in decided["approvals"]] == ["adjuster:console-adjuster"]
        paid = await claim_when(api, adjuster, incident.incident_id, "paid")
        assert len(await sandbox.payments(reference=paid["id"])) == 1
