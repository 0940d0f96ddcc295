"""The benchmarks' stand-in for autovacuum: where the server runs without it, the benchmark's
databases are still vacuumed and analyzed, as production's are."""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg
import pytest

from bench.system import AutovacuumStandIn, autovacuum_description
from tests.support.infra import drop_databases, fresh_database


async def _maintained(dsn: str) -> tuple[object, object]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = 'reports'")
        return row["last_vacuum"], row["last_analyze"]
    finally:
        await connection.close()


def test_the_stand_in_vacuums_and_analyzes_each_database_while_autovacuum_is_off() -> None:
    name = f"cyberclaims_test_autovacuum_{os.getpid()}"
    dsn = fresh_database(name).replace("postgresql+asyncpg://", "postgresql://")
    try:
        async def create_table() -> None:
            connection = await asyncpg.connect(dsn)
            try:
                await connection.execute("CREATE TABLE reports (id bigint PRIMARY KEY)")
            finally:
                await connection.close()

        asyncio.run(create_table())
        stand_in = AutovacuumStandIn(interval=0.2)
        stand_in.databases.append(dsn)
        if not stand_in.start():
            assert autovacuum_description() == "PostgreSQL's autovacuum"
            pytest.skip("this server runs autovacuum itself")
        try:
            deadline = time.monotonic() + 20
            while None in asyncio.run(_maintained(dsn)):
                assert time.monotonic() < deadline, "not vacuumed and analyzed within 20 s"
                time.sleep(0.2)
        finally:
            stand_in.stop()
        assert "stand-in" in autovacuum_description()
    finally:
        drop_databases(name)
