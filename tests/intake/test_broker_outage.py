"""A broker outage does not take the front door down: /readyz checks what intake needs to
answer (its database), a report is accepted while Kafka is down (the outbox buffers it) and
published once the broker is back; broker health shows as the cyberclaims_broker_up gauge.

The outage is a proxy in front of the broker closing, not the broker stopping: a restarted
memory-only Tansu has lost its topics, and the relay, reconnecting at once, had them
auto-created with the wrong partition count before the test could create them again."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.events import IncidentReported
from shared.kafka import ensure_topics
from shared.topics import INCIDENTS
from tests.intake.conftest import eventually, register, report_body
from tests.support import service as support
from tests.support.infra import BrokerProxy, TansuProcess, free_port
from tests.support.kafka import wait_for_events
from tests.support.service import Tokens, running


@pytest.fixture
async def broker_behind_proxy() -> AsyncIterator[BrokerProxy]:
    """A broker of this test's own, which every client reaches through a proxy the test
    closes (the outage) and opens again."""
    proxy = BrokerProxy(free_port(), target_port=free_port())
    broker = TansuProcess(proxy.target_port, advertised_port=proxy.port)
    await proxy.open()
    try:
        await asyncio.to_thread(broker.start)
        await ensure_topics(broker.bootstrap)
        yield proxy
    finally:
        await proxy.close()
        broker.stop()


@pytest.fixture
async def intake_on_own_broker(broker_behind_proxy: BrokerProxy, intake_db: str
                               ) -> AsyncIterator[tuple[httpx.AsyncClient, Tokens]]:
    platform = support.test_platform(f"127.0.0.1:{broker_behind_proxy.port}",
                                     broker_probe_seconds=0.2)
    async with running(create_app(IntakeSettings(database_url=intake_db), platform)) as client:
        yield client, Tokens()


async def broker_up(client: httpx.AsyncClient, tokens: Tokens) -> float:
    metrics = await client.get("/metrics", headers=tokens.operator())
    assert metrics.status_code == 200, metrics.text
    [value] = re.findall(r'^cyberclaims_broker_up\{service="intake"\} (\S+)$', metrics.text,
                         re.MULTILINE)
    return float(value)


def gauge_is(client: httpx.AsyncClient, tokens: Tokens, value: float
             ) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await broker_up(client, tokens) == value
    return check


async def test_a_report_is_accepted_while_kafka_is_down_and_published_when_it_returns(
    broker_behind_proxy: BrokerProxy, intake_on_own_broker: tuple[httpx.AsyncClient, Tokens]
) -> None:
    client, tokens = intake_on_own_broker
    insured = await register(client, tokens)
    await eventually(gauge_is(client, tokens, 1.0), what="cyberclaims_broker_up 1")

    await broker_behind_proxy.close()
    await eventually(gauge_is(client, tokens, 0.0), what="cyberclaims_broker_up 0")
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "checks": {"database": "ok"}}
    accepted = await client.post(
        "/v1/incidents", json=report_body(insured["policy_number"], title="during the outage"),
        headers={**insured["headers"], "Idempotency-Key": "outage-1"})
    assert accepted.status_code == 201, accepted.text
    incident_id = accepted.json()["id"]

    await broker_behind_proxy.open()
    [published] = await wait_for_events(
        f"127.0.0.1:{broker_behind_proxy.port}", INCIDENTS.name,
        lambda e: e.type == IncidentReported.event_type and e.subject == incident_id,
        timeout=90)
    assert published.data["title"] == "during the outage"
    await eventually(gauge_is(client, tokens, 1.0), what="cyberclaims_broker_up 1 again")
