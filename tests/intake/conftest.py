from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.clock import Clock
from shared.events import Envelope
from shared.settings import PlatformSettings
from tests.support.service import Tokens, running

T = TypeVar("T")


@pytest.fixture
def intake_db(service_database: Callable[[str], str]) -> str:
    return service_database("intake")


@pytest.fixture
def make_intake(intake_db: str, platform: PlatformSettings) -> Callable[..., Any]:
    def make(clock: Clock | None = None, **options: bool) -> Any:
        return create_app(IntakeSettings(database_url=intake_db), platform, clock, **options)

    return make


@pytest.fixture
async def intake(make_intake: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(make_intake()) as client:
        yield client


@pytest.fixture
async def api(make_intake: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API alone (no relay, no consumer): for tests of validation and access rules."""
    async with running(make_intake(run_workers=False), wait_for_consumer=False) as client:
        yield client


@pytest.fixture
async def db(intake_db: str) -> AsyncIterator[AsyncEngine]:
    """A connection of the test's own to intake's database, to look at what was stored."""
    engine = create_async_engine(intake_db, poolclass=NullPool)
    yield engine
    await engine.dispose()


async def sql_rows(engine: AsyncEngine, statement: str, **params: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(text(statement), params)).all())


async def sql_value(engine: AsyncEngine, statement: str, **params: Any) -> Any:
    async with engine.connect() as connection:
        return await connection.scalar(text(statement), params)


@asynccontextmanager
async def trigger(engine: AsyncEngine, name: str, table: str, when: str, body: str, *,
                  returns: str = "NEW", kind: str = "TRIGGER", after: str = "") -> AsyncIterator[None]:
    """While open, the plpgsql `body` runs `when` (e.g. BEFORE INSERT) for each row of
    `table`, as trigger `name`."""
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body} RETURN {returns}; END $$")
        await connection.exec_driver_sql(f"CREATE {kind} {name} {when} ON {table} {after} "
                                         f"FOR EACH ROW EXECUTE FUNCTION {name}()")
    try:
        yield
    finally:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(f"DROP TRIGGER {name} ON {table}")
            await connection.exec_driver_sql(f"DROP FUNCTION {name}()")


def refused_at_commit(engine: AsyncEngine, title: str) -> AbstractAsyncContextManager[None]:
    """While open, a deferred trigger makes COMMIT itself fail for the outbox row of an
    incident titled `title`, after every row was written."""
    return trigger(engine, "test_refuse_outbox_at_commit", "outbox", "AFTER INSERT",
                   f"IF NEW.envelope -> 'data' ->> 'title' = '{title}' THEN "
                   "RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'check_violation'; "
                   "END IF;", returns="NULL", kind="CONSTRAINT TRIGGER",
                   after="DEFERRABLE INITIALLY DEFERRED")


def failing_for_org(engine: AsyncEngine, org_id: str) -> AbstractAsyncContextManager[None]:
    """While open, inserting an incident of `org_id` fails in the database with an error no
    constraint gives (plpgsql's raise_exception): input that passed validation yet fails."""
    return trigger(engine, "test_fail_for_org", "incidents", "BEFORE INSERT",
                   f"IF NEW.org_id = '{org_id}' THEN RAISE EXCEPTION 'poisoned report'; END IF;")


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0,
                     what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout}s")
        await asyncio.sleep(0.1)


async def produce(bootstrap: str, topic: str, value: bytes, *, key: bytes,
                  headers: list[tuple[str, bytes]] | None = None) -> RecordMetadata:
    """Publish raw bytes and return where they landed (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        metadata: RecordMetadata = await producer.send_and_wait(topic, value, key=key,
                                                                headers=headers or [])
        return metadata
    finally:
        await producer.stop()


async def produce_envelope(bootstrap: str, topic: str, envelope: Envelope, *,
                           key: str) -> RecordMetadata:
    return await produce(bootstrap, topic, envelope.to_kafka_value(), key=key.encode(),
                         headers=envelope.to_kafka_headers())


def policy_body(org_id: str, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "policy_number": f"POL-{uuid.uuid4().hex[:10]}",
        "org_id": org_id,
        "holder_name": "Shenzhen Widget Co.",
        "industry": "manufacturing",
        "region": "CN-GD",
        "period_start": (now - timedelta(days=200)).isoformat(),
        "period_end": (now + timedelta(days=165)).isoformat(),
        "aggregate_limit": "5000000.00",
        "retention": "50000.00",
        "sections": {"incident_response": {"sublimit": "200000"},
                     "business_interruption": {"sublimit": "300000"}},
    }
    body.update(overrides)
    return body


def report_body(policy_number: str, *, now: datetime | None = None,
                **overrides: Any) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    body: dict[str, Any] = {
        "policy_number": policy_number,
        "category": "ransomware",
        "title": "Files encrypted on the ERP server",
        "description": "Ransom note found on 12 hosts.",
        "occurred_at": (now - timedelta(hours=3)).isoformat(),
        "discovered_at": (now - timedelta(hours=2)).isoformat(),
        "contact": {"name": "Li Wei", "email": "li.wei@example.com", "phone": "+86 755 1234 5678"},
        "systems_down": True,
        "affected_hosts": 12,
    }
    body.update(overrides)
    return body


async def register(client: httpx.AsyncClient, tokens: Tokens, **overrides: Any) -> dict[str, Any]:
    """A fresh org with a registered policy: {org_id, policy_number, headers}."""
    org_id = f"org-{uuid.uuid4().hex[:8]}"
    body = policy_body(org_id, **overrides)
    response = await client.post("/v1/policies", json=body, headers=tokens.operator())
    assert response.status_code == 201, response.text
    return {"org_id": org_id, "policy_number": body["policy_number"],
            "headers": tokens.policyholder(org_id)}


async def report(client: httpx.AsyncClient, insured: dict[str, Any], **overrides: Any) -> str:
    """Report an incident on the insured's policy; returns its id."""
    response = await client.post(
        "/v1/incidents", json=report_body(insured["policy_number"], **overrides),
        headers={**insured["headers"], "Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 201, response.text
    incident_id: str = response.json()["id"]
    return incident_id


@pytest.fixture
async def insured(intake: httpx.AsyncClient, tokens: Tokens) -> dict[str, Any]:
    """A fresh org with a registered policy."""
    return await register(intake, tokens)
