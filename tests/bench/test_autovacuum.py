"""The benchmarks' stand-in for autovacuum: where the server runs without it, the benchmark's
databases are still vacuumed and analyzed, as production's are, and like autovacuum it takes
only the tables that changed past its thresholds."""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg
import pytest

from bench.system import AutovacuumStandIn, autovacuum_description
from tests.support.infra import drop_databases, fresh_database


async def _maintained(dsn: str, table: str) -> tuple[object, object]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = $1", table)
        return row["last_vacuum"], row["last_analyze"]
    finally:
        await connection.close()


def test_the_stand_in_vacuums_and_analyzes_the_changed_tables_while_autovacuum_is_off() -> None:
    name = f"cyberclaims_test_autovacuum_{os.getpid()}"
    dsn = fresh_database(name).replace("postgresql+asyncpg://", "postgresql://")
    try:
        async def create_table() -> None:
            connection = await asyncpg.connect(dsn)
            try:
                await connection.execute("CREATE TABLE reports (id bigint PRIMARY KEY)")
                await connection.execute("CREATE TABLE untouched (id bigint PRIMARY KEY)")
                # past autovacuum's thresholds on an empty table: 50 dead rows, 50 changed
                await connection.execute("INSERT INTO reports SELECT generate_series(1, 200)")
                await connection.execute("DELETE FROM reports WHERE id <= 100")
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
            while None in asyncio.run(_maintained(dsn, "reports")):
                assert time.monotonic() < deadline, "not vacuumed and analyzed within 20 s"
                time.sleep(0.2)
        finally:
            stand_in.stop()
        assert asyncio.run(_maintained(dsn, "untouched")) == (None, None)
        assert "stand-in" in autovacuum_description()
    finally:
        drop_databases(name)
