"""The HTTP edge of every service (intake's app stands for all: the edge is shared): no body is
read before the caller is authenticated, bodies and headers are bounded, writes and failed
authentications are rate limited, and every response says `nosniff`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from services.payout.app import create_app as payout_app
from shared.auth import Role
from shared.problems import PROBLEM_JSON
from shared.settings import MEBIBYTE
from shared.signing import TokenSigner
from tests.payout.conftest import serving
from tests.support.service import TEST_ISSUER, Tokens, running
from tests.support.service import test_platform as platform_settings

CHUNK = 64 * 1024


class CountingBody:
    """A streamed (chunked) request body that counts how much of it the service pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += CHUNK
            yield b"x" * CHUNK


@asynccontextmanager
async def edge(database_url: str, broker: str, *,
               address: str = "203.0.113.7", **platform: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = platform_settings(broker, **platform)
    app = create_app(IntakeSettings(database_url=database_url), settings,
                     run_workers=False)
    async with running(app, wait_for_consumer=False):
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
def intake_db(service_database: Callable[[str], str]) -> str:
    return service_database("intake")


def forged() -> dict[str, str]:
    """An operator token signed with another key."""
    signed_elsewhere = TokenSigner.generate(issuer=TEST_ISSUER)
    return {"Authorization": f"Bearer {signed_elsewhere.issue(role=Role.operator, sub='x')}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


@pytest.mark.parametrize("path", ["/v1/incidents", "/v1/policies"])
async def test_an_unauthenticated_50_mb_body_is_refused_without_being_read(
        intake_db: str, broker: str, path: str) -> None:
    async with edge(intake_db, broker) as client:
        for headers in ({}, forged(), {"Authorization": "Bearer not-a-jwt"}):
            body = CountingBody(50 * MEBIBYTE)
            response = await client.post(path, content=body,
                                         headers={**headers, "Content-Type": "application/json"})
            assert_problem(response, 401)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert body.pulled == 0  # receive() never called: nothing buffered
        announced = CountingBody(50 * MEBIBYTE)
        response = await client.post(path, content=announced, headers={
            "Content-Length": str(50 * MEBIBYTE), "Content-Type": "application/json"})
        assert_problem(response, 413)  # refused by its length, whoever sends it
        assert announced.pulled == 0


async def test_over_real_http_the_refusal_comes_before_the_body(
        intake_db: str, broker: str, tokens: Tokens) -> None:
    """uvicorn stops reading a body its app does not ask for: the 401 (or the 413, once the
    limit is passed) arrives while the client is still sending a 50 MB chunked body."""
    app = create_app(IntakeSettings(database_url=intake_db), platform_settings(broker),
                     run_workers=False)
    async with serving(app, lifespan="on") as url:
        port = int(url.rsplit(":", 1)[1])
        assert await sent_before_answer(port, {}) == (401, True)
        assert await sent_before_answer(port, tokens.operator()) == (413, True)


async def sent_before_answer(port: int, headers: dict[str, str]) -> tuple[int, bool]:
    """Send a chunked 50 MB POST until the answer's status line arrives: its status, and
    whether it came before half of it had been sent (the rest of what was sent sits in the
    kernel's socket buffers, some MiB on loopback)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST /v1/policies HTTP/1.1\r\nHost: test\r\nContent-Type: application/json"
                 f"\r\nTransfer-Encoding: chunked\r\n{head}\r\n".encode())
    answer = asyncio.create_task(reader.readline())
    chunk = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
    sent = 0
    try:
        while sent < 50 * MEBIBYTE and not answer.done():
            writer.write(chunk)
            await writer.drain()
            sent += CHUNK
    except ConnectionError:
        pass  # the server closed the connection: it read no further
    status = int((await asyncio.wait_for(answer, timeout=30)).split()[1])
    writer.close()
    return status, sent < 25 * MEBIBYTE


@pytest.mark.parametrize("path", ["/v1/incidents", "/v1/policies"])
async def test_an_authenticated_oversize_body_gets_413(
        intake_db: str, broker: str, tokens: Tokens, path: str) -> None:
    caller = tokens.policyholder("org-edge") if path == "/v1/incidents" else tokens.operator()
    headers = {**caller, "Content-Type": "application/json", "Idempotency-Key": "k-1"}
    async with edge(intake_db, broker) as client:
        announced = await client.post(path, content=b"x" * (MEBIBYTE + 1), headers=headers)
        assert "1048576 bytes" in assert_problem(announced, 413)["detail"]

        streamed = CountingBody(50 * MEBIBYTE)
        response = await client.post(path, content=streamed, headers=headers)
        assert_problem(response, 413)
        assert streamed.pulled <= MEBIBYTE + CHUNK  # refused as soon as the limit was passed

        within = await client.post(path, content=b"{" + b" " * (MEBIBYTE - 1), headers=headers)
        assert_problem(within, 422)  # read, and found to be broken JSON


async def test_the_body_limit_is_configurable(intake_db: str,
                                              broker: str, tokens: Tokens) -> None:
    async with edge(intake_db, broker, max_body_bytes=100) as client:
        response = await client.post("/v1/policies", content=b"{" + b" " * 100,
                                     headers={**tokens.operator(),
                                              "Content-Type": "application/json"})
        assert_problem(response, 413)


async def test_oversize_headers_get_431(intake_db: str,
                                        broker: str, tokens: Tokens) -> None:
    async with edge(intake_db, broker) as client:
        response = await client.get("/v1/incidents", headers={**tokens.operator(),
                                                              "X-Padding": "p" * 17_000})
        assert_problem(response, 431)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert (await client.get("/v1/incidents", headers=tokens.operator())).status_code == 200


async def test_failed_authentication_from_one_address_soon_gets_429(
        intake_db: str, broker: str, tokens: Tokens) -> None:
    """2,000 forged tokens: 30 are answered 401, the rest 429; a valid token from an address
    that used up its burst waits too."""
    async with edge(intake_db, broker, rate_limits=True, failed_auth_burst=30,
                    failed_auth_rate=0.01) as client:
        statuses = [(await client.get("/v1/incidents", headers=forged())).status_code
                    for _ in range(2000)]
        assert statuses[:30] == [401] * 30
        assert set(statuses[30:]) == {429}
        refused = await client.get("/v1/incidents", headers=forged())
        assert_problem(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1
    async with edge(intake_db, broker, rate_limits=True, failed_auth_burst=1,
                    address="198.51.100.1") as client:
        await client.get("/v1/incidents")
        assert (await client.get("/v1/incidents", headers=tokens.operator())).status_code == 429


async def test_writes_are_limited_per_principal_and_per_address(
        intake_db: str, broker: str, tokens: Tokens) -> None:
    bad_body = {"Content-Type": "application/json"}
    async with edge(intake_db, broker, rate_limits=True, principal_write_burst=5,
                    principal_write_rate=0.01) as client:
        first = tokens.operator("ops-a")
        statuses = [(await client.post("/v1/policies", content=b"{}",
                                       headers={**first, **bad_body})).status_code
                    for _ in range(8)]
        assert statuses == [422] * 5 + [429] * 3
        refused = await client.post("/v1/policies", content=b"{}", headers={**first, **bad_body})
        assert int(assert_problem(refused, 429)["status"]) == 429
        assert int(refused.headers["Retry-After"]) >= 1
        reads = await client.get("/v1/incidents", headers=first)
        assert reads.status_code == 200  # reads are not writes
        other = await client.post("/v1/policies", content=b"{}",
                                  headers={**tokens.operator("ops-b"), **bad_body})
        assert other.status_code == 422  # another principal has its own bucket
    async with edge(intake_db, broker, rate_limits=True, address_write_burst=3,
                    address_write_rate=0.01) as client:
        statuses = [(await client.post("/v1/policies", content=b"{}",
                                       headers={**tokens.operator(f"ops-{i}"), **bad_body})
                     ).status_code for i in range(5)]
        assert statuses == [422] * 3 + [429] * 2


async def test_every_response_says_nosniff_and_metrics_need_an_operator(
        intake_db: str, broker: str, tokens: Tokens) -> None:
    async with edge(intake_db, broker) as client:
        for response in (await client.get("/healthz"), await client.get("/nowhere"),
                         await client.get("/v1/incidents")):
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        not_allowed = await client.patch("/v1/incidents", headers=tokens.operator())
        assert_problem(not_allowed, 405)
        assert not_allowed.headers["Allow"]  # Starlette names the first matching route's methods
        assert_problem(await client.get("/metrics"), 401)
        assert_problem(await client.get("/metrics", headers=tokens.policyholder("org-m")), 403)
        scraped = await client.get("/metrics", headers=tokens.operator("prometheus"))
        assert scraped.status_code == 200
        assert "cyberclaims_http_requests_total" in scraped.text



async def test_the_console_is_never_framed_cached_or_given_other_scripts() -> None:
    """(The console's browser tests, tests/payout/test_console.py, show the policy admits the
    page's own script, served from the package.)"""
    app = payout_app(run_workers=False)  # the console needs nothing the lifespan builds
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        response = await client.get("/console")
    assert response.status_code == 200
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = dict(d.strip().split(" ", 1) for d in
                  response.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'"
