"""Alembic, per service: migrations are an explicit step (`cyberclaims migrate SERVICE`),
never run at import or at application start-up."""

from __future__ import annotations

import asyncio
import importlib.resources
import zlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

# Each service has its own database, so one key serves them all.
MIGRATION_LOCK_KEY = zlib.crc32(b"cyberclaims:migrations")


def alembic_config(service: str, database_url: str) -> Config:
    location = Path(str(importlib.resources.files(f"services.{service}") / "migrations"))
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def migrate(service: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def run_env(metadata: MetaData) -> None:
    """The body of every service's migrations/env.py (online, async engines)."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"

    def _run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            # Every pod of a Deployment migrates in its init container, several at once in a
            # rollout; Alembic takes no lock of its own. The first holds this one until it
            # commits; the others then find the database at head and do nothing.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()

    async def _online() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool, hide_parameters=True)
        async with engine.connect() as connection:
            await connection.run_sync(_run)
        await engine.dispose()

    asyncio.run(_online())
