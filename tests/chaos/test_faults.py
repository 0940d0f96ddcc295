"""Fault injection under load: every scenario plays whole claim lifecycles through the public
APIs while a fault strikes, waits for the system to recover on its own, then asks the oracle
whether any promise was broken (nothing lost, nothing applied twice, no claim stuck, no dead
letter, no consumer behind). Figures per scenario go to .data/chaos-figures.json."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.events import Event
from shared.kafka import read_from_beginning, retry_until_connected
from shared.topics import CATALOG
from tests.chaos.driver import Driver
from tests.chaos.oracle import at_rest, header, judge
from tests.chaos.system import SERVICE_NAMES, ChaosSystem

pytestmark = pytest.mark.slow

LIFECYCLES = 9
SETTLE_SECONDS = 150.0
# Over three times notify's session timeout and past every lease and deadline of CHAOS_ENV
# (8 s at most): its group evicts it and its sends expire, as in a longer stop.
SLOW_CONSUMER_SECONDS = 20.0

Fault = Callable[[ChaosSystem], Awaitable[None]]


async def in_thread(action: Callable[..., Any], *args: Any) -> Any:
    """Process control blocks; the users keep working meanwhile."""
    return await asyncio.to_thread(action, *args)


async def run_scenario(name: str, system: ChaosSystem, driver: Driver, fault: Fault,
                       figures: dict[str, dict[str, Any]], *, after: Fault | None = None) -> None:
    stop = asyncio.Event()
    users = asyncio.create_task(driver.work(stop))
    began = time.monotonic()
    try:
        playing = asyncio.create_task(driver.play(LIFECYCLES))
        await fault(system)
        lifecycles = await playing
        fault_over = time.monotonic()
        stuck = await driver.settle(lifecycles, SETTLE_SECONDS)
        if after is not None:
            await after(system)
        await wait_at_rest(system)
        recovered = time.monotonic() - fault_over
    finally:
        stop.set()
        await users
    verdict = await judge(system, lifecycles)
    figures[name] = {**verdict.figures(), "in": len(lifecycles),
                     "seconds_to_recover": round(recovered, 1),
                     "seconds_total": round(time.monotonic() - began, 1),
                     "transient_errors_seen_by_users": driver.transient_errors}
    assert not stuck and not verdict.failures(), (
        f"{name}: {verdict.failures()[:20]}\n" + "\n".join(
            f"--- {part} ({'running' if system.parts[part].running else 'NOT running'})\n"
            f"{system.logs(part, 25)}" for part in ["broker", "objects", *SERVICE_NAMES]))


async def test_sigkill_each_service_in_turn(system: ChaosSystem, driver: Driver,
                                            figures: dict[str, dict[str, Any]]) -> None:
    async def fault(system: ChaosSystem) -> None:
        for _ in range(2):
            for name in SERVICE_NAMES:
                await asyncio.sleep(1.0)
                await in_thread(system.kill, name)
                await in_thread(system.restart, name)

    await run_scenario("sigkill each service in turn, twice", system, driver, fault, figures)


async def test_sigkill_two_services_at_once(system: ChaosSystem, driver: Driver,
                                            figures: dict[str, dict[str, Any]]) -> None:
    pairs = [tuple(SERVICE_NAMES[i:i + 2]) for i in range(0, len(SERVICE_NAMES), 2)]

    async def fault(system: ChaosSystem) -> None:
        for pair in pairs:
            await asyncio.sleep(1.5)
            await in_thread(system.kill, *pair)
            await in_thread(system.restart, *pair)

    await run_scenario("sigkill two services at once", system, driver, fault, figures)


async def test_postgres_crash_restart(system: ChaosSystem, driver: Driver,
                                      figures: dict[str, dict[str, Any]]) -> None:
    async def fault(system: ChaosSystem) -> None:
        await asyncio.sleep(2.0)
        await in_thread(system.postgres.crash_restart)

    await run_scenario("postgres restarted -m immediate", system, driver, fault, figures)


async def test_broker_sigkill_and_restart(system: ChaosSystem, driver: Driver,
                                         figures: dict[str, dict[str, Any]]) -> None:
    async def fault(system: ChaosSystem) -> None:
        for _ in range(2):
            await asyncio.sleep(2.0)
            await in_thread(system.kill, "broker")
            await asyncio.sleep(2.0)
            await in_thread(system.restart_broker)

    await run_scenario("broker SIGKILLed and restarted, twice", system, driver, fault, figures)


async def test_payment_provider_killed_and_faulty(system: ChaosSystem, driver: Driver,
                                                  figures: dict[str, dict[str, Any]]) -> None:
    provider = system.urls["payments"]

    async def fault(system: ChaosSystem) -> None:
        await asyncio.sleep(1.0)
        await in_thread(system.kill, "payments")
        await asyncio.sleep(4.0)
        await in_thread(system.start, "payments")
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(50):
                try:
                    await client.get(provider + "/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            for mode, count, delay in (("fail", 3, None), ("timeout", 2, 4.0), ("slow", 2, 1.0)):
                await client.post(provider + "/control/faults",
                                  json={"mode": mode, "count": count, "delay_seconds": delay})

    await run_scenario("payment provider killed, then fail/timeout/slow", system, driver, fault,
                       figures)


async def test_webhook_receiver_down_then_up(system: ChaosSystem, driver: Driver,
                                             figures: dict[str, dict[str, Any]]) -> None:
    async def fault(system: ChaosSystem) -> None:
        system.receiver.stop()
        await asyncio.sleep(8.0)
        system.receiver.start()

    await run_scenario("webhook receiver down 8 s, then up", system, driver, fault, figures)


async def test_slow_consumer(system: ChaosSystem, driver: Driver,
                             figures: dict[str, dict[str, Any]]) -> None:
    async def fault(system: ChaosSystem) -> None:
        system.parts["notify"].signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(SLOW_CONSUMER_SECONDS)
        finally:
            system.parts["notify"].signal(signal.SIGCONT)

    await run_scenario(f"notify stopped {SLOW_CONSUMER_SECONDS:.0f} s under load", system,
                       driver, fault, figures)


async def test_poison_on_every_topic(system: ChaosSystem, driver: Driver,
                                     figures: dict[str, dict[str, Any]]) -> None:
    planted = system.planted_dead_letters

    async def fault(system: ChaosSystem) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=system.bootstrap)
        await retry_until_connected(producer.start, what="poisoner")
        try:
            for round_ in range(3):
                await asyncio.sleep(1.0)
                for topic in CATALOG:
                    for value, ce_type in poisons(topic.name):
                        event_id = str(uuid.uuid4())
                        planted.add(event_id)
                        headers = [("ce_id", event_id.encode()), ("ce_type", ce_type.encode()),
                                   ("ce_source", b"/chaos"), ("ce_specversion", b"1.0"),
                                   ("ce_time", b"2026-12-05T00:00:00Z")]
                        await producer.send_and_wait(topic.name, value, key=f"poison-{round_}".encode(),
                                                     headers=headers)
        finally:
            await producer.stop()

    await run_scenario("3 kinds of poison on every topic", system, driver, fault, figures)
    dead = {header(r.headers, "ce_id") for r in await read_from_beginning(
        system.bootstrap, [t.dead_letter for t in CATALOG])}
    assert dead & planted, "no poison reached a dead-letter topic"


def poisons(topic: str) -> list[tuple[bytes, str]]:
    """For each event type of the topic: not JSON, and JSON that breaks its contract; and once
    JSON of a type nobody knows."""
    types = sorted(name for name, event in Event.registry.items() if event.topic.name == topic)
    return [(b'{"hello": "world"}', "cyberclaims.chaos.unknown.v1"),
            *((b"\xff\xfe not json", t) for t in types),
            *((b'{"incident_id": 42, "amount": "lots"}', t) for t in types)]


async def test_duplicate_storm(system: ChaosSystem, driver: Driver,
                               figures: dict[str, dict[str, Any]]) -> None:
    async def no_fault(system: ChaosSystem) -> None:
        await asyncio.sleep(0)

    async def replay_everything(system: ChaosSystem) -> None:
        """Every consumer group back to offset 0 on every topic: each service sees every event
        it ever consumed again, and must apply none of them twice."""
        await in_thread(system.stop_services)
        for name in SERVICE_NAMES:
            await reset_offsets(system.bootstrap, f"cyberclaims-{name}")
        await in_thread(system.restart, *SERVICE_NAMES)

    await run_scenario("duplicate storm: every group reset to offset 0", system, driver,
                       no_fault, figures, after=replay_everything)


async def reset_offsets(bootstrap: str, group: str) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await retry_until_connected(consumer.start, what="offset reset")
    try:
        partitions = [TopicPartition(t.name, p) for t in CATALOG
                      for p in consumer.partitions_for_topic(t.name) or ()]
        consumer.assign(partitions)
        committed = {tp: await consumer.committed(tp) for tp in partitions}
        await consumer.commit({tp: 0 for tp, offset in committed.items() if offset})
    finally:
        await consumer.stop()


async def wait_at_rest(system: ChaosSystem, timeout: float = 90.0) -> None:
    """Until the system has nothing left to do; the oracle then says what is wrong, if the
    timeout passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await at_rest(system):
            return
        await asyncio.sleep(0.5)
