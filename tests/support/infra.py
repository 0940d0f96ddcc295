"""Real infrastructure for the tests: a Tansu broker on a free port, one PostgreSQL database
per service (created fresh and migrated once per test session)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from cyberclaims.broker import broker_command, wait_for_port
from shared.kafka import ensure_topics
from shared.migrations import migrate
from tests.support.settings import postgres_admin_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def tansu_broker() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(broker_command(port), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        bootstrap = f"127.0.0.1:{port}"
        asyncio.run(ensure_topics(bootstrap))
        yield bootstrap
    finally:
        process.terminate()
        process.wait(timeout=10)


def fresh_database(name: str) -> str:
    """Drop and create `name`; returns its SQLAlchemy URL."""
    admin = postgres_admin_url()

    async def recreate() -> None:
        connection = await asyncpg.connect(admin.replace("+asyncpg", ""))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(recreate())
    return admin.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    async def drop() -> None:
        connection = await asyncpg.connect(postgres_admin_url().replace("+asyncpg", ""))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


def test_database_name(service: str) -> str:
    """Unique per test session, so suites run side by side never share a database."""
    return f"cyberclaims_test_{service}_{os.getpid()}"


def migrated_database(service: str) -> str:
    url = fresh_database(test_database_name(service))
    migrate(service, url)
    return url
