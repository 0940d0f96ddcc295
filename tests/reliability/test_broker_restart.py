"""Services outlive a broker restart without being restarted: the consumer rejoins its group
and keeps consuming, the relay keeps publishing.

This test's broker keeps its topics in memory (`make run`'s keeps them in a local object
store: tests/reliability/test_broker_state.py), so what was on it is gone after the restart;
the test reads only what is published after it. Not tested here: events staged while the
broker is down. A relay that reaches the new broker before the topics are
created makes Tansu create them itself with 4 partitions instead of the catalog's 6."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from cyberclaims.broker import broker_command, wait_for_port
from services.payout.app import create_app
from services.payout.settings import PayoutSettings
from shared.events import ClaimOpened, Envelope
from shared.kafka import ensure_topics
from shared.topics import CLAIMS
from tests.payout.conftest import Incident, Sandbox, claim_when, register
from tests.support import service as support
from tests.support.infra import free_port
from tests.support.kafka import wait_for_events
from tests.support.service import Tokens, running


class Broker:
    """A Tansu broker on a fixed port that a test can kill and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(broker_command(self.port), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def restartable() -> Iterator[Broker]:
    broker = Broker()
    broker.start()
    asyncio.run(ensure_topics(broker.bootstrap))
    try:
        yield broker
    finally:
        if broker.process is not None and broker.process.poll() is None:
            broker.process.terminate()
            broker.process.wait(timeout=10)


def about(incident: Incident, event_type: str) -> Callable[[Envelope], bool]:
    return lambda e: e.subject == str(incident.incident_id) and e.type == event_type


async def test_the_consumer_and_the_relay_carry_on_after_a_broker_restart(
        restartable: Broker, payout_db: str, sandbox: Sandbox, tokens: Tokens) -> None:
    bootstrap = restartable.bootstrap
    settings: dict[str, Any] = {"database_url": payout_db, "payment_provider_url": sandbox.url}
    app: FastAPI = create_app(PayoutSettings(**settings), support.test_platform(bootstrap))
    adjuster = tokens.adjuster()
    async with running(app) as payout:
        before = Incident(bootstrap, await register(bootstrap))
        await before.report()
        await claim_when(payout, adjuster, before.incident_id, "open")

        restartable.kill()
        restartable.start()
        await ensure_topics(bootstrap)  # a memory broker: the topics are gone with it

        after = Incident(bootstrap, await register(bootstrap))
        await after.report()
        await claim_when(payout, adjuster, after.incident_id, "open", timeout=60)
        await asyncio.wait_for(wait_for_events(
            bootstrap, CLAIMS.name, about(after, ClaimOpened.event_type), timeout=60), 70)
