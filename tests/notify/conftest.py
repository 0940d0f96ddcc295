"""Notify under test: the app on its PostgreSQL database and the session broker, a real SMTP
server (aiosmtpd) and real HTTP receivers (uvicorn) started by the tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from cyberclaims.sandbox import smtp
from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.clock import Clock
from shared.events import Envelope, Event, JobDispatched, JobType, Priority
from shared.settings import Environment, PlatformSettings
from tests.support.infra import free_port
from tests.support.kafka import publish
from tests.support.service import Tokens

LOCAL_RECEIVERS = ("127.0.0.0/8", "::1")
"""The tests' receivers listen on loopback, which webhooks may call only when allow-listed."""

FAST = {
    "webhook_allowlist": LOCAL_RECEIVERS,
    "webhook_timeout_seconds": 2.0,
    "delivery_deadline_seconds": 2.5,
    "smtp_timeout_seconds": 2.0,
    "backoff_base_seconds": 0.05,
    "backoff_cap_seconds": 0.2,
    "send_lease_seconds": 3.0,
    "worker_poll_seconds": 0.05,
    "reminder_poll_seconds": 0.05,
}


# --- SMTP ----------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """The session's maildir. Each message is parsed once (again only if its size changed: the
    sink may still be writing it): tests poll it from the event loop notify runs in, and
    parsing the whole session's mail on every poll starved notify once the maildir held a
    few thousand messages."""

    host: str
    port: int
    maildir: Path
    _parsed: dict[Path, tuple[int, EmailMessage]] = field(default_factory=dict, repr=False)

    def messages(self) -> list[EmailMessage]:
        found = []
        for path in sorted(self.maildir.glob("*.eml")):
            size = path.stat().st_size
            cached = self._parsed.get(path)
            if cached is None or cached[0] != size:
                cached = (size, message_from_bytes(path.read_bytes(), policy=default))
                self._parsed[path] = cached
            found.append(cached[1])
        return found

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if address in str(m["To"])]


@pytest.fixture(scope="session")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailbox]:
    """A real SMTP server (the development sink, aiosmtpd) for the whole session."""
    maildir = tmp_path_factory.mktemp("mail")
    port = free_port()
    controller = smtp.start("127.0.0.1", port, maildir, echo=False)
    try:
        yield Mailbox("127.0.0.1", port, maildir)
    finally:
        controller.stop()


# --- HTTP receivers ------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A webhook endpoint: answers 500 `fail_first` times, then 200; records every request."""

    port: int
    fail_first: int = 0
    failing: bool = False
    requests: list[Received] = field(default_factory=list)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def successes(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        failed_so_far = sum(1 for r in self.requests if r.status != 200)
        status = 500 if self.failing or failed_so_far < self.fail_first else 200
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Received(headers, body, status))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})

    async def start(self) -> None:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False, timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        await wait_until(lambda: self.server is not None and self.server.started, timeout=10)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = self.task = None


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def make(fail_first: int = 0, *, start: bool = True) -> Receiver:
        receiver = Receiver(port=free_port(), fail_first=fail_first)
        started.append(receiver)
        if start:
            await receiver.start()
        return receiver

    yield make
    for receiver in started:
        await receiver.stop()


# --- the service ---------------------------------------------------------------------------------


@pytest.fixture
def notify_db(service_database: Callable[[str], str]) -> str:
    return service_database("notify")


@pytest.fixture
def make_notify(notify_db: str, platform: PlatformSettings,
                mailbox: Mailbox) -> Callable[..., FastAPI]:
    def make(clock: Clock | None = None, *, run_workers: bool = True,
             env: Environment | None = None, **overrides: Any) -> FastAPI:
        settings = NotifySettings(**{"database_url": notify_db, "smtp_host": mailbox.host,
                                     "smtp_port": mailbox.port, **FAST, **overrides})
        platform_here = platform.model_copy(update={"env": env}) if env else platform
        return create_app(settings, platform_here, clock, run_workers=run_workers)

    return make


# --- helpers -------------------------------------------------------------------------------------


async def wait_until(check: Callable[[], Any], *, timeout: float = 20.0,
                     interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s")
        await asyncio.sleep(interval)


async def emit(broker: str, event: Event, *, source: str = "/cyberclaims/triage",
               envelope: Envelope | None = None) -> Envelope:
    """Publish `event` as its producing service would (or re-publish `envelope`: a replay)."""
    envelope = envelope or Envelope.wrap(event, source=source, time=datetime.now(UTC))
    await publish(broker, event.topic.name, envelope, key=event.partition_key().encode())
    return envelope


def dispatched(vendor_id: str, *, incident_id: uuid.UUID | None = None,
               org_id: str = "org-x") -> JobDispatched:
    now = datetime.now(UTC)
    return JobDispatched(incident_id=incident_id or uuid.uuid4(), org_id=org_id,
                         job_id=uuid.uuid4(), job_type=JobType.forensics, at=now,
                         vendor_id=vendor_id, priority=Priority.P1,
                         accept_by=now + timedelta(minutes=15), attempt=1)


async def deliveries(client: httpx.AsyncClient, tokens: Tokens,
                     **filters: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/deliveries", params={"limit": 100, **filters},
                                headers=tokens.operator())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def subscribe(client: httpx.AsyncClient, headers: dict[str, str], url: str,
                    secret: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/subscriptions", json={"url": url, "secret": secret, **extra},
                                 headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
