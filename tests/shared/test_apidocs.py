"""Every service's `/docs` in a real headless browser with no network but the service itself:
Swagger UI comes from the installed package, not a CDN (shared/apidocs.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from playwright.async_api import Route, expect

from cyberclaims.registry import SERVICES
from tests.payout.conftest import serving
from tests.payout.test_console import CHROMIUM, chromium

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is installed by tests/setup.py"),
]


def only(base: str, elsewhere: list[str]) -> Callable[[Route], Awaitable[None]]:
    """A route handler letting requests to `base` through and cutting (and noting) the rest."""

    async def handle(route: Route) -> None:
        if route.request.url.startswith(base):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort("internetdisconnected")

    return handle


async def test_every_services_docs_show_its_operations_without_the_internet() -> None:
    async with chromium() as browser:
        for entry in SERVICES:
            app = entry.create_app()
            async with serving(app) as url:
                page = await browser.new_page()
                elsewhere: list[str] = []
                refused: list[str] = []
                await page.route("**/*", only(url, elsewhere))
                page.on("console", lambda message, refused=refused: refused.append(message.text)
                        if "Content Security Policy" in message.text else None)
                await page.goto(f"{url}/docs")
                operations = page.locator(".opblock-summary-path")
                await expect(page.locator(".information-container .title")).to_contain_text(
                    app.title)
                await expect(operations.first).to_be_visible()
                an_operation = next(path for path in app.openapi()["paths"])
                await expect(page.locator(f'.opblock-summary-path[data-path="{an_operation}"]')
                             .first).to_be_visible()
                assert not elsewhere, f"{entry.name}'s /docs reached beyond the service"
                assert not refused, f"{entry.name}'s /docs broke its own CSP: {refused}"
                await page.close()


async def test_docs_assets_are_only_the_pages_files() -> None:
    app = SERVICES[0].create_app()
    async with serving(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            page = await client.get("/docs")
            assert page.status_code == 200
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            assert "<script>" not in page.text  # no inline script: the CSP admits none
            bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
            assert bundle.status_code == 200
            assert bundle.headers["content-type"].startswith("text/javascript")
            for other in ("index.html", "swagger-ui.js.map", "..%2Fapp.py"):
                missing = await client.get(f"/docs/assets/{other}")
                assert missing.status_code == 404, other
                assert missing.headers["content-type"] == "application/problem+json"
            assert "/docs" not in (await client.get("/openapi.json")).json()["paths"]
