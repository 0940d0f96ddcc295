"""The insights page in a real headless browser (Debian's chromium driven by Playwright):
sign in with an actuary's token and see the table, the triangle and the three charts, with the
page under the same security headers as the console (its script runs under that CSP)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from shared.auth import Role
from shared.pages import PAGE_HEADERS
from tests.insights.conftest import World, publish_all
from tests.insights.test_experience import K, consumed, simulated
from tests.payout.conftest import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is installed by tests/setup.py"),
]


async def test_an_actuary_sees_the_experience_the_triangle_and_the_charts(world: World) -> None:
    _, events = simulated(seed=59)
    await publish_all(world.broker, events)
    app = world.app(min_organisations=K)
    token = world.bearer(Role.actuary)["Authorization"].removeprefix("Bearer ")
    async with serving(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        await consumed(client, app.state.runtime, len(events))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                      args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                response = await page.goto(f"{url}/insights")
                assert response is not None
                assert response.headers["content-security-policy"] == \
                    PAGE_HEADERS["Content-Security-Policy"]
                assert response.headers["x-frame-options"] == "DENY"
                assert response.headers["cache-control"] == "no-store"
                await page.fill("#token", token)
                await page.fill("#group-by", "industry")
                await page.click("#show")
                rows = page.locator("#experience-table tbody tr.published")
                await expect(rows.first).to_be_visible()
                assert await rows.count() >= 2
                assert await page.locator("#frequency-chart rect.bar").count() >= 2
                assert await page.locator("#severity-chart rect.median").count() >= 2
                assert await page.locator("#development-chart polyline.curve").count() >= 4
                assert await page.locator("#triangle tbody tr").count() >= 4
                await page.fill("#token", "not-a-token")
                await page.click("#show")
                await expect(page.locator("#error")).to_contain_text("invalid token")
            finally:
                await browser.close()
