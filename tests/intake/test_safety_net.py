"""Intake's safety net: an incident triage never answered has its report's event sent again,
the same event (one id, so a triage that did take it skips it), at most once per threshold,
counted and logged; an incident triage answered is left alone. Real PostgreSQL and Tansu; the
service's clock is moved by hand."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cyberclaims.doctor import collect
from services.intake.app import SAFETY_NET, create_app
from services.intake.safety_net import UntriagedIncidents
from services.intake.settings import IntakeSettings
from shared.clock import ManualClock
from shared.events import Envelope, IncidentReported
from shared.migrations import migrate
from shared.repairs import STUCK_REPAIRED
from shared.settings import PlatformSettings
from shared.topics import INCIDENTS, RESPONSE
from tests.intake.conftest import eventually, produce_envelope, register, report, sql_value
from tests.intake.test_consuming import triaged
from tests.support.kafka import relayed_events
from tests.support.service import Tokens, running

STUCK_AFTER = timedelta(minutes=10)


@dataclass
class Intake:
    client: httpx.AsyncClient
    clock: ManualClock
    net: UntriagedIncidents
    db: AsyncEngine
    database_url: str


@pytest.fixture
def own_database(scratch_database: Callable[[str], str]) -> str:
    """A database of its own: the session's holds every other suite's untriaged incidents."""
    url = scratch_database(f"cyberclaims_test_intake_net_{os.getpid()}")
    migrate("intake", url)
    return url


@pytest.fixture
async def intake(own_database: str, platform: PlatformSettings) -> AsyncIterator[Intake]:
    clock = ManualClock()
    settings = IntakeSettings(database_url=own_database,
                              stuck_after_seconds=STUCK_AFTER.total_seconds(),
                              safety_net_interval_seconds=3600)  # passes run by hand
    app = create_app(settings, platform, clock)
    db = create_async_engine(own_database, poolclass=NullPool)
    async with running(app) as client:
        yield Intake(client, clock, app.state.runtime.resources[SAFETY_NET], db, own_database)
    await db.dispose()


def _repaired() -> float:
    return STUCK_REPAIRED.labels("intake", "incident_untriaged")._value.get()


async def _all_sent(db: AsyncEngine) -> bool:
    return await sql_value(db, "SELECT count(*) FROM outbox WHERE state <> 'sent'") == 0


async def _triage(broker: str, intake: Intake, insured: dict[str, Any], incident_id: str) -> None:
    """Triage's answer, as triage publishes it, applied by intake."""
    await produce_envelope(broker, RESPONSE.name,
                           triaged(incident_id, insured["org_id"], insured["policy_number"]),
                           key=incident_id)
    await eventually(lambda: sql_value(
        intake.db, "SELECT status = 'triaged' FROM incidents WHERE id = :id",
        id=uuid.UUID(incident_id)), what=f"the triage of {incident_id} applied")


async def _reports_sent(broker: str, intake: Intake, incident_id: str) -> list[Envelope]:
    return await relayed_events(broker, INCIDENTS.name, intake.db, incident_id,
                                lambda e: e.type == IncidentReported.event_type
                                and e.data["incident_id"] == incident_id)


async def test_an_untriaged_incident_is_offered_to_triage_again_once_per_threshold(
        intake: Intake, tokens: Tokens, broker: str) -> None:
    insured: dict[str, Any] = await register(intake.client, tokens)
    silent = await report(intake.client, insured)
    answered = await report(intake.client, insured)
    await _triage(broker, intake, insured, answered)
    await eventually(lambda: _all_sent(intake.db), what="the reports relayed")
    before = _repaired()

    assert await intake.net.repair_stuck() == 0  # nothing is late yet
    intake.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    doctor = await collect(broker, {"intake": intake.database_url}, intake.clock)
    assert doctor.services["intake"].stuck == {"incidents with no triage for over ten minutes": 1}
    assert await intake.net.repair_stuck() == 1  # the silent one, not the answered one
    assert await intake.net.repair_stuck() == 0  # offered: not again until a threshold passes
    await eventually(lambda: _all_sent(intake.db), what="the report sent again")
    first, again = await _reports_sent(broker, intake, silent)
    assert again.id == first.id and again == first  # the same event: triage's inbox knows it
    assert len(await _reports_sent(broker, intake, answered)) == 1

    intake.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    assert await intake.net.repair_stuck() == 1  # still silent: offered once more
    await eventually(lambda: _all_sent(intake.db), what="the report sent a third time")
    await _triage(broker, intake, insured, silent)
    intake.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    assert await intake.net.repair_stuck() == 0  # answered at last: left alone
    assert _repaired() == before + 2
