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


class TansuProcess:
    """A Tansu broker on `port` that a test may stop and start again on the same port (an
    outage). Memory only: a restarted broker has lost every topic and consumer group."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(broker_command(self.port), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@contextmanager
def tansu_broker() -> Iterator[str]:
    broker = TansuProcess(free_port())
    try:
        broker.start()
        asyncio.run(ensure_topics(broker.bootstrap))
        yield broker.bootstrap
    finally:
        broker.stop()


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
