"""`make run` never goes on with a broker that lost events its databases saw in flight (the
development broker keeps topics in memory only), and starts as usual otherwise."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from cyberclaims.broker import BrokerLostEvents, check_kept_state, record_drained
from shared.db import create_engine
from shared.migrations import migrate
from shared.topics import CLAIMS
from tests.support.infra import tansu_broker
from tests.support.kafka import publish


@pytest.fixture
def intake_db(scratch_database: Callable[[str], str]) -> str:
    url = scratch_database(f"cyberclaims_test_broker_state_{uuid.uuid4().hex[:8]}")
    migrate("intake", url)
    return url


async def saw_an_event(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO inbox (consumer, event_id, event_type, received_at) "
                "VALUES ('intake', :id, 'x', :at)"), {"id": uuid.uuid4(), "at": datetime.now(UTC)})
    finally:
        await engine.dispose()


def test_a_new_broker_is_refused_when_the_last_run_did_not_stop_drained(
        intake_db: str, tmp_path: Path) -> None:
    mark = tmp_path / "broker-drained"
    with tansu_broker() as bootstrap:
        check_kept_state(bootstrap, {"intake": intake_db}, mark)  # new databases: fine

        asyncio.run(saw_an_event(intake_db))
        with pytest.raises(BrokerLostEvents, match=r"rm -rf \.data"):
            check_kept_state(bootstrap, {"intake": intake_db}, mark)

        record_drained(True, mark)
        check_kept_state(bootstrap, {"intake": intake_db}, mark)
        assert not mark.exists()  # the new run's events are in flight: a crash is caught again
        with pytest.raises(BrokerLostEvents):
            check_kept_state(bootstrap, {"intake": intake_db}, mark)


def test_a_broker_that_kept_its_events_is_accepted(intake_db: str, tmp_path: Path) -> None:
    asyncio.run(saw_an_event(intake_db))
    with tansu_broker() as bootstrap:
        asyncio.run(publish(bootstrap, CLAIMS.name, raw=b"{}"))
        check_kept_state(bootstrap, {"intake": intake_db}, tmp_path / "broker-drained")
