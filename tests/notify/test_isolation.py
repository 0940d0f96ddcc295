"""One slow target never delays the others: a subscriber that trickles its answer a byte at a
time is cut off at the delivery deadline, and meanwhile another org's webhook and email go out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from tests.notify.conftest import (
    Mailbox,
    Receiver,
    deliveries,
    dispatched,
    emit,
    subscribe,
    unique,
    wait_until,
)
from tests.notify.test_email import reported
from tests.support.service import Tokens, running

PER_HOST = 2
# Org B's first tries hang until this deadline; org A's report must be consumed and delivered
# before it, also while the other test worker loads both cores (6 s was not always enough).
DEADLINE = 15.0


@dataclass
class Trickler:
    """A webhook receiver that reads the request, then answers one byte a second: a per-read
    timeout never fires, only a deadline on the whole try ends it. It counts a connection open
    until the sender hangs up. On its own loopback address (127.0.0.2), so it is a host of its
    own."""

    port: int = 0
    open_connections: int = 0
    most_at_once: int = 0
    connections: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.2:{self.port}/hooks"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.connections += 1
        self.most_at_once = max(self.most_at_once, self.open_connections)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                writer.write(bytes([byte]))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1), timeout=1.0) == b"":
                        break  # the sender hung up
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()


@pytest.fixture
async def trickler() -> AsyncIterator[Trickler]:
    receiver = Trickler()
    server = await asyncio.start_server(receiver.handle, "127.0.0.2", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    yield receiver
    server.close()
    await wait_until(lambda: receiver.open_connections == 0)


async def test_a_trickling_receiver_is_cut_off_and_delays_no_other_org(
    make_notify: Callable[..., FastAPI], receivers: Callable[..., Awaitable[Receiver]],
    trickler: Trickler, mailbox: Mailbox, broker: str, tokens: Tokens,
) -> None:
    hook_a = await receivers()
    org_a, vendor_b = unique("org"), unique("vendor")
    mail_a = f"{org_a}@example.com"
    app = make_notify(delivery_deadline_seconds=DEADLINE, send_lease_seconds=30.0,
                      webhook_connections_per_host=PER_HOST)
    async with running(app) as notify:
        await subscribe(notify, tokens.policyholder(org_a), hook_a.url, "a" * 20)
        await subscribe(notify, tokens.vendor(vendor_b), trickler.url, "b" * 20)
        slow = [dispatched(vendor_b) for _ in range(6)]
        for event in slow:
            await emit(broker, event)
        # org B's host has every connection it may have, each hanging on a trickle
        await wait_until(lambda: trickler.open_connections == PER_HOST)

        await emit(broker, reported(org_a, mail_a, "ERP down"))
        await wait_until(lambda: hook_a.successes and mailbox.to(mail_a))
        hanging_when_a_arrived = trickler.open_connections
        b_rows = await _webhooks(notify, tokens, f"vendor:{vendor_b}")
        b_failed_when_a_arrived = [row for row in b_rows if row["last_error"]]

        async def cut_off() -> list[dict[str, Any]]:
            rows = await _webhooks(notify, tokens, f"vendor:{vendor_b}")
            return [row for row in rows if "deadline" in (row["last_error"] or "")]

        failed = await wait_until(cut_off, timeout=60)

    assert hanging_when_a_arrived > 0  # A was delivered while B's tries still hung
    assert b_failed_when_a_arrived == []  # ... before B's first tries had even ended
    assert trickler.most_at_once <= PER_HOST  # B never had more than its host's share
    assert all(row["state"] == "pending" for row in failed)  # retried with backoff, as any failure
    assert f"the {DEADLINE:g} s deadline" in failed[0]["last_error"]


async def _webhooks(notify: Any, tokens: Tokens, recipient: str) -> list[dict[str, Any]]:
    return await deliveries(notify, tokens, recipient=recipient, channel="webhook")
