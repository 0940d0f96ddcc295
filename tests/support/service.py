"""Running a service in-process for a test: its lifespan (relay, consumer, workers) and an
HTTP client on its ASGI app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from shared.auth import Role, TokenService
from shared.service import Runtime
from shared.settings import Environment, PlatformSettings

# Outside development a strong secret is required; this one signs test tokens only.
TEST_JWT_SECRET = "Q0X8WwN4WU1jsn8Ch51rlFZxUGFK4kDI4_Q15CaWNww"


def test_platform(bootstrap: str, **overrides: object) -> PlatformSettings:
    """Rate limits are off unless a test turns them on: every test client is one address."""
    settings: dict[str, object] = {"jwt_secret": TEST_JWT_SECRET, "rate_limits": False,
                                   **overrides}
    return PlatformSettings(env=Environment.test, kafka_bootstrap=bootstrap,
                            kafka_session_timeout_ms=2000, outbox_poll_seconds=0.2,
                            **settings)  # type: ignore[arg-type]


@contextmanager
def service_logs(caplog: pytest.LogCaptureFixture, logger: str,
                 level: int = logging.WARNING) -> Iterator[None]:
    """Capture `logger` while a service runs: its start-up replaced the root logger's handlers
    (JSON lines on stdout), pytest's capture among them, so listen on the logger itself."""
    target = logging.getLogger(logger)
    previous = target.level
    target.setLevel(level)
    target.addHandler(caplog.handler)
    try:
        yield
    finally:
        target.removeHandler(caplog.handler)
        target.setLevel(previous)


@asynccontextmanager
async def running(app: FastAPI, *, wait_for_consumer: bool = True
                  ) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan and yield a client; the consumer has joined its group."""
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        if wait_for_consumer and runtime.consumer is not None:
            await asyncio.wait_for(runtime.consumer.ready.wait(), timeout=30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


class Tokens:
    """Bearer headers for each role, signed like the services expect."""

    def __init__(self, platform: PlatformSettings) -> None:
        self._tokens = TokenService(platform)

    def policyholder(self, org_id: str) -> dict[str, str]:
        return self._bearer(role=Role.policyholder, sub=f"user@{org_id}", org_id=org_id)

    def vendor(self, vendor_id: str) -> dict[str, str]:
        return self._bearer(role=Role.vendor, sub=f"staff@{vendor_id}", vendor_id=vendor_id)

    def adjuster(self, sub: str = "adjuster-1", authority_limit: str = "1000000"
                 ) -> dict[str, str]:
        return self._bearer(role=Role.adjuster, sub=sub, authority_limit=Decimal(authority_limit))

    def operator(self, sub: str = "operator-1") -> dict[str, str]:
        return self._bearer(role=Role.operator, sub=sub)

    def _bearer(self, **claims: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens.issue(**claims)}"}  # type: ignore[arg-type]
