"""`make run`'s databases with nothing configured, started as `make run` starts them
(`cyberclaims.dev.prepare_databases`): an embedded PostgreSQL from the wheel, a child of the
supervisor (as root: in a user namespace of its own), every service's database on it and
migrated to head, and its data kept when it is stopped and started again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from cyberclaims.dev import Supervisor, database_urls, embedded_postgres_port, prepare_databases
from cyberclaims.registry import available_services
from shared.db import create_engine
from shared.migrations import alembic_config
from tests.support.infra import free_port

KEPT = "kept_across_restarts"


@pytest.fixture
def nothing_configured(monkeypatch: pytest.MonkeyPatch) -> int:
    """No database URL nor server set: the embedded PostgreSQL, on a free port."""
    for entry in available_services():
        monkeypatch.delenv(f"{entry.name.upper()}_DATABASE_URL", raising=False)
    monkeypatch.delenv("CYBERCLAIMS_DATABASE_SERVER", raising=False)
    port = free_port()
    monkeypatch.setenv("CYBERCLAIMS_EMBEDDED_POSTGRES_PORT", str(port))
    return port


async def server_and_revision(url: str) -> tuple[int, str, bool]:
    """The server's version number, the database's Alembic revision, and whether `KEPT`
    (a table this test creates in intake's database) exists."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            version = int(await connection.scalar(text("SHOW server_version_num")))
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            kept = await connection.scalar(text("SELECT to_regclass(:name) IS NOT NULL"),
                                           {"name": KEPT})
            return version, revision, kept
    finally:
        await engine.dispose()


async def create_kept_table(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"CREATE TABLE {KEPT} (id int)"))
    finally:
        await engine.dispose()


def test_make_run_puts_every_service_on_an_embedded_postgresql_that_keeps_its_data(
    tmp_path: Path, nothing_configured: int
) -> None:
    services = available_services()
    urls = database_urls(services)
    assert urls == {name: f"postgresql+asyncpg://postgres@127.0.0.1:{nothing_configured}/{name}"
                    for name in urls}
    data = tmp_path / "postgres"
    for start in ("first", "again"):
        supervisor = Supervisor(echo=False)
        try:
            prepare_databases(supervisor, urls, embedded_postgres_port(services), data)
            assert [child.name for child, _ in supervisor.processes] == ["postgres"]
            for name, url in urls.items():
                version, revision, kept = asyncio.run(server_and_revision(url))
                assert version >= 150000
                assert revision == ScriptDirectory.from_config(
                    alembic_config(name, url)).get_current_head(), name
                if name == "intake":
                    assert kept == (start == "again"), "".join(supervisor.output)
            if start == "first":
                asyncio.run(create_kept_table(urls["intake"]))
        finally:
            supervisor.stop()
        [(_, server)] = supervisor.processes
        assert server.returncode == 0, "".join(supervisor.output)  # a clean, fast shutdown
    assert (data / "PG_VERSION").exists()
