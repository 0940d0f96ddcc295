"""Every pod migrates its database in an init container before it starts (deploy/k8s), so a
rollout or a scale-out runs `cyberclaims migrate` several times at once: the runs take turns
on a PostgreSQL advisory lock, and all but the first find nothing to do."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.managers import SyncManager
from threading import Barrier

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.migrations import alembic_config, migrate

AT_ONCE = 3


def _migrate_when_all_are_ready(url: str, barrier: Barrier) -> str:
    barrier.wait(timeout=60)
    migrate("intake", url)
    return "migrated"


@pytest.fixture
def database(scratch_database: Callable[[str], str]) -> str:
    return scratch_database(f"cyberclaims_test_concurrent_migrations_{os.getpid()}")


@pytest.mark.slow
def test_init_containers_migrating_at_once_all_succeed(database: str) -> None:
    context = get_context("spawn")  # processes, as pods are: each its own engine and loop
    manager: SyncManager
    with context.Manager() as manager, context.Pool(AT_ONCE) as pool:
        barrier = manager.Barrier(AT_ONCE)
        outcomes = pool.starmap(_migrate_when_all_are_ready, [(database, barrier)] * AT_ONCE)
    assert outcomes == ["migrated"] * AT_ONCE
    assert asyncio.run(_versions(database)) == [ScriptDirectory.from_config(
        alembic_config("intake", database)).get_current_head()]


async def _versions(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(
                text("SELECT version_num FROM alembic_version"))).scalars())
    finally:
        await engine.dispose()
