"""Webhook targets (server-side request forgery): only public addresses, checked when subscribing
and again before every send; one active subscription per owner and URL, however many requests
race; a cap on subscriptions per owner."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from services.notify.channels import SendFailed, WebhookSender
from services.notify.models import Subscription
from services.notify.signing import verify
from services.notify.targets import BusyOwner, TargetPolicy
from shared.settings import Environment
from tests.notify.conftest import (
    Receiver,
    deliveries,
    dispatched,
    emit,
    subscribe,
    unique,
    wait_until,
)
from tests.support.service import Tokens, running

SECRET = "whsec-0123456789abcdef"

INTERNAL = [
    "http://127.0.0.1:8003/v1/claims",  # a sibling service
    "http://127.0.0.1:5432/",  # PostgreSQL
    "http://127.0.0.1:1025/",  # SMTP
    "http://localhost:9092/",  # the broker, by a name that resolves to loopback
    "http://0.0.0.0:8004/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::]/",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://2130706433/",
    "http://127.1/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://10.0.0.5/hooks",
    "http://172.16.0.1/hooks",
    "http://192.168.1.10/hooks",
    "http://100.64.0.1/hooks",  # carrier-grade NAT
    "http://224.0.0.1/hooks",  # multicast
    "http://240.0.0.1/hooks",  # reserved
    "http://[fe80::1]/hooks",
    "http://[fc00::1]/hooks",
    "http://[64:ff9b::7f00:1]/hooks",  # NAT64 of 127.0.0.1
    "http://[2002:7f00:1::]/hooks",  # 6to4 of 127.0.0.1
    "http://user:pass@93.184.216.34/hooks",
    "http://token@93.184.216.34/hooks",
    "ftp://93.184.216.34/hooks",
    "gopher://93.184.216.34:25/",
    "file:///etc/passwd",
]
PUBLIC = "http://93.184.216.34/hooks"


async def refused(notify: httpx.AsyncClient, headers: dict[str, str], url: str) -> str:
    response = await notify.post("/v1/subscriptions", json={"url": url, "secret": SECRET},
                                 headers=headers)
    assert response.status_code == 422, (url, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["url"], (url, response.text)
    message: str = errors[0]["message"]
    return message


async def test_internal_and_odd_urls_are_refused_when_subscribing(
    make_notify: Callable[..., FastAPI], tokens: Tokens
) -> None:
    vendor = unique("vendor")
    app = make_notify(run_workers=False, webhook_allowlist=())
    async with running(app, wait_for_consumer=False) as notify:
        messages = {url: await refused(notify, tokens.vendor(vendor), url) for url in INTERNAL}
        accepted = await subscribe(notify, tokens.vendor(vendor), PUBLIC, SECRET)
        listed = await notify.get("/v1/subscriptions", headers=tokens.vendor(vendor))

    assert [s["id"] for s in listed.json()["items"]] == [accepted["id"]]  # nothing half-written
    assert "loopback" in messages["http://127.0.0.1:8003/v1/claims"]
    assert "localhost resolves to 127.0.0.1 (loopback)" in messages["http://localhost:9092/"]
    assert "127.0.0.1 inside, loopback" in messages["http://[::ffff:127.0.0.1]/"]
    assert "link-local" in messages["http://169.254.169.254/latest/meta-data/"]
    assert "four decimal numbers" in messages["http://2130706433/"]
    assert "credentials" in messages["http://user:pass@93.184.216.34/hooks"]


async def test_production_requires_https_and_the_allow_list_admits_named_hosts_and_networks(
    make_notify: Callable[..., FastAPI], tokens: Tokens
) -> None:
    vendor = unique("vendor")
    production = make_notify(run_workers=False, webhook_allowlist=(), env=Environment.production)
    async with running(production, wait_for_consumer=False) as notify:
        message = await refused(notify, tokens.vendor(vendor), PUBLIC)
        https = await subscribe(notify, tokens.vendor(vendor), PUBLIC.replace("http:", "https:"),
                                SECRET)
    assert "https is required" in message and https["url"].startswith("https://93.184.216.34")

    allowing = make_notify(run_workers=False, webhook_allowlist=("10.1.0.0/16", "localhost"))
    async with running(allowing, wait_for_consumer=False) as notify:
        for url in ("http://10.1.2.3/hooks", "http://localhost:9/hooks"):
            await subscribe(notify, tokens.vendor(vendor), url, SECRET)
        await refused(notify, tokens.vendor(vendor), "http://10.2.0.1/hooks")
        await refused(notify, tokens.vendor(vendor), "http://127.0.0.1:9/hooks")
        await refused(notify, tokens.vendor(vendor), "http://127.1:9/hooks")  # odd, whatever


async def test_a_host_that_now_resolves_to_loopback_is_refused_before_the_send(
    make_notify: Callable[..., FastAPI], receivers: Callable[..., Awaitable[Receiver]],
    broker: str, tokens: Tokens,
) -> None:
    """DNS rebinding: the subscription's host was public when it subscribed (here: written
    straight to the database), and resolves to the receiver on loopback when notify sends."""
    receiver = await receivers()
    vendor = unique("vendor")
    app = make_notify(webhook_allowlist=())
    async with running(app) as notify:
        async with app.state.runtime.uow() as uow:
            uow.session.add(Subscription(
                id=uuid.uuid4(), owner=f"vendor:{vendor}",
                url=f"http://localhost:{receiver.port}/hooks", secret=SECRET, event_types=None,
                active=True, created_by="test", created_at=datetime.now(UTC), deleted_at=None))
            await uow.commit()
        event = dispatched(vendor)
        await emit(broker, event)

        async def dead() -> list[dict[str, Any]]:
            return await deliveries(notify, tokens, incident_id=str(event.incident_id),
                                    channel="webhook", state="dead")

        rows = await wait_until(dead)

    assert receiver.requests == []
    assert rows[0]["attempts"] == 1  # no retry can make it public
    assert "refused: localhost resolves to 127.0.0.1 (loopback)" in rows[0]["last_error"]


async def test_the_send_connects_to_the_checked_address_and_names_the_host(
    make_notify: Callable[..., FastAPI], receivers: Callable[..., Awaitable[Receiver]],
    broker: str, tokens: Tokens,
) -> None:
    receiver = await receivers()
    vendor = unique("vendor")
    async with running(make_notify(webhook_allowlist=("localhost",))) as notify:
        url = f"http://localhost:{receiver.port}/hooks"
        await subscribe(notify, tokens.vendor(vendor), url, SECRET)
        await emit(broker, dispatched(vendor))
        await wait_until(lambda: receiver.successes)

    request = receiver.successes[0]
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert verify(SECRET, request.body, request.headers["x-cyberclaims-signature"],
                  now=int(time.time()))


async def test_identical_subscriptions_racing_make_one(
    make_notify: Callable[..., FastAPI], tokens: Tokens, notify_db: str
) -> None:
    vendor = unique("vendor")
    app = make_notify(run_workers=False, database_url=notify_db)
    body = {"url": "http://127.0.0.1:9/racing", "secret": SECRET}
    async with running(app, wait_for_consumer=False) as notify:
        responses = await asyncio.gather(*(
            notify.post("/v1/subscriptions", json=body, headers=tokens.vendor(vendor))
            for _ in range(6)))
        async with app.state.runtime.uow() as uow:
            rows = await uow.session.scalar(select(func.count()).select_from(Subscription).where(
                Subscription.owner == f"vendor:{vendor}"))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    assert rows == 1
    conflict = next(r for r in responses if r.status_code == 409).json()
    assert conflict["errors"][0]["field"] == "url"


@pytest.mark.parametrize("racing", [False, True])
async def test_an_owner_has_at_most_the_configured_number_of_subscriptions(
    make_notify: Callable[..., FastAPI], tokens: Tokens, racing: bool, notify_db: str
) -> None:
    vendor = unique("vendor")
    as_vendor = tokens.vendor(vendor)
    app = make_notify(run_workers=False, max_subscriptions_per_owner=2,
                      database_url=notify_db)
    async with running(app, wait_for_consumer=False) as notify:

        async def create(n: int) -> httpx.Response:
            return await notify.post("/v1/subscriptions", headers=as_vendor, json={
                "url": f"http://127.0.0.1:9/hooks/{n}", "secret": SECRET})

        if racing:
            responses = list(await asyncio.gather(*(create(n) for n in range(5))))
        else:
            responses = [await create(n) for n in range(3)]
        created = [r.json()["id"] for r in responses if r.status_code == 201]
        deleted = await notify.delete(f"/v1/subscriptions/{created[0]}", headers=as_vendor)
        after_delete = await create(99)
        for_other_owner = await notify.post("/v1/subscriptions", headers=tokens.operator(), json={
            "url": "http://127.0.0.1:9/hooks/0", "secret": SECRET, "owner": unique("vendor:v")})

    assert len(created) == 2
    assert {r.status_code for r in responses} == {201, 409}
    refusal = next(r for r in responses if r.status_code == 409).json()
    assert "the most allowed" in refusal["detail"]
    assert deleted.status_code == 204 and after_delete.status_code == 201
    assert for_other_owner.status_code == 201


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) that names `localhost` only."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
async def tls_receiver(certificate: tuple[Path, Path]
                       ) -> AsyncIterator[tuple[int, ssl.SSLContext, list[str]]]:
    """An https receiver with that certificate: (port, a client context trusting it, the
    server names clients asked for)."""
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    names: list[str] = []

    def record_name(_socket: ssl.SSLObject, name: str, _context: ssl.SSLContext) -> None:
        names.append(name)

    server_context.sni_callback = record_name  # type: ignore[assignment]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    yield server.sockets[0].getsockname()[1], ssl.create_default_context(cafile=cert), names
    server.close()


async def test_https_connects_to_the_checked_address_and_verifies_the_host_name(
    tls_receiver: tuple[int, ssl.SSLContext, list[str]],
) -> None:
    port, trusting, names = tls_receiver
    targets = TargetPolicy(("localhost", "127.0.0.1"), require_https=True, lookups=2)
    async with httpx.AsyncClient(verify=trusting, timeout=5) as client:
        sender = WebhookSender(client, targets)

        async def send(url: str) -> None:
            await sender.send(url=url, secret=SECRET, delivery_id=str(uuid.uuid4()),
                              event_type="cyberclaims.job.dispatched.v1", payload={"a": 1},
                              timestamp=int(time.time()))

        await send(f"https://localhost:{port}/hooks")
        with pytest.raises(SendFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await send(f"https://127.0.0.1:{port}/hooks")  # the certificate does not name it
    targets.close()

    assert names[0] == "localhost"


async def test_one_owners_hanging_name_server_stalls_neither_other_owners_nor_the_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A look-up the subscribe request stopped waiting for goes on in its thread until the
    resolver gives up: an owner subscribing to made-up names on a name server that never answers
    gets 429 once two of its look-ups are running, and other owners' subscribing and every send
    still resolve at once."""
    answer = threading.Event()

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host.startswith("slow."):
            answer.wait(30)
            raise socket.gaierror("the name server never answered")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    targets = TargetPolicy((), require_https=False, lookups=2, checks=3, checks_per_owner=2)
    try:
        for n in range(2):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await targets.check(f"http://slow.{n}.example/hooks", "vendor:mallory")
        with pytest.raises(BusyOwner):
            await targets.check("http://slow.2.example/hooks", "vendor:mallory")
        async with asyncio.timeout(5):
            assert (await targets.check("http://fine.example/hooks", "vendor:alice")).host \
                == "fine.example"
            assert str((await targets.resolve("http://fine.example/hooks")).address) \
                == "93.184.216.34"
        answer.set()  # the name server gives up: the owner may look up again
        for _ in range(100):
            with contextlib.suppress(BusyOwner):
                await targets.check("http://fine.example/hooks", "vendor:mallory")
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the owner's finished look-ups still count")
    finally:
        answer.set()
        targets.close()
