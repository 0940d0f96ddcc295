"""An incident's events arrive on different topics, so different consumers (pods) may apply
them at the same moment: both orders, and both at once, give the same row. A rebuild applies
a claim's events beside the live consumer, so they may come in any order: the same row too."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import func, select

from cyberclaims.simulate import book
from services.insights import handlers, service
from services.insights.models import ClaimRecord, Inbox, IncidentRecord
from shared.consumer import EventConsumer
from shared.events import ClaimAssessed, ClaimOpened, Envelope, Event
from shared.service import Runtime
from tests.insights.conftest import World, claim_events
from tests.support.kafka import fetched
from tests.support.service import running


def consumer(runtime: Runtime) -> EventConsumer:
    """A second consumer of the service's, as another pod runs it (its batch loading too)."""
    return EventConsumer(name="insights", group_id="unused", bootstrap="unused",
                         handlers=handlers.handlers(), uow=runtime.uow, inbox_model=Inbox,
                         dead_letters=runtime.publisher, clock=runtime.clock, max_attempts=1,
                         load_batch=service.load_batch)


def envelopes(events: list[Event]) -> list[Envelope]:
    return [Envelope.wrap(event, source="/test", time=datetime.now(UTC)) for event in events]


@pytest.mark.parametrize("order", ["report first", "response first", "at once"])
async def test_an_incidents_report_and_response_arriving_together(world: World, order: str) -> None:
    claims = book(300, 1, 5, start=datetime(2025, 1, 1, tzinfo=UTC)).claims
    lives = [[event for _, event in claim_events(claim)[:3]] for claim in claims]
    reports = [life[0] for life in lives]
    on_incidents = [fetched(*envelopes([report]), topic="cyberclaims.incidents")
                    for report in reports]
    on_response = [fetched(*envelopes(life[1:]), topic="cyberclaims.response") for life in lives]
    app = world.app(run_workers=False)
    async with running(app, wait_for_consumer=False):
        runtime: Runtime = app.state.runtime
        first, second = consumer(runtime), consumer(runtime)

        async def apply(mine: EventConsumer, batches: list[list[ConsumerRecord[bytes, bytes]]]
                        ) -> None:
            for batch in batches:
                await mine.process_batch(batch)

        if order == "report first":
            await apply(first, on_incidents)
            await apply(second, on_response)
        elif order == "response first":
            await apply(second, on_response)
            await apply(first, on_incidents)
        else:  # incident by incident, each one's report and response at the same moment
            for report, response in zip(on_incidents, on_response, strict=True):
                await asyncio.gather(first.process_batch(report), second.process_batch(response))
        async with runtime.uow() as uow:
            rows = {row.incident_id: row for row in (await uow.session.scalars(
                select(IncidentRecord))).all()}
            applied = await uow.session.scalar(select(func.count()).select_from(Inbox))
    assert applied == 3 * len(claims)  # each once, none dead-lettered (max_attempts=1: no retry)
    for claim, report in zip(claims, reports, strict=True):
        row = rows[report.incident_id]  # type: ignore[attr-defined]
        assert (row.category, row.occurred_at, row.reported_at) == (
            claim.category.value, claim.occurred_at, claim.reported_at)
        assert (row.first_dispatched_at, row.contained_at) == (claim.dispatched_at,
                                                               claim.contained_at)
        assert row.attack_vector == claim.attack_vector
        assert row.outage_seconds == (None if claim.outage_hours is None else
                                      int(timedelta(hours=claim.outage_hours).total_seconds()))


@pytest.mark.parametrize("newer_first", [True, False], ids=["newer first", "older first"])
async def test_the_reserve_basis_is_the_latest_assessments_whatever_the_order(
        world: World, newer_first: bool) -> None:
    """A rebuild racing the live consumer can apply an older assessment after a newer one:
    the reserve basis only moves forward in event time, so it is the newer's either way."""
    [claim, *_] = book(40, 1, 9, start=datetime(2025, 1, 1, tzinfo=UTC)).claims
    opened, newer = (event for _, event in claim_events(claim)[3:5])
    assert isinstance(opened, ClaimOpened) and isinstance(newer, ClaimAssessed)
    older = newer.model_copy(update={"at": newer.at - timedelta(days=3),
                                     "payable": newer.payable + Decimal(1000),
                                     "assessment_id": uuid.uuid4()})
    first, then = (newer, older) if newer_first else (older, newer)
    app = world.app(run_workers=False)
    async with running(app, wait_for_consumer=False):
        runtime: Runtime = app.state.runtime
        live, rebuilding = consumer(runtime), consumer(runtime)
        await live.process_batch(fetched(*envelopes([opened, first]), topic="cyberclaims.claims"))
        await rebuilding.process_batch(fetched(*envelopes([then]), topic="cyberclaims.claims"))
        async with runtime.uow() as uow:
            row = await uow.session.get(ClaimRecord, newer.claim_id)
    assert row is not None
    assert row.reserve_basis == newer.payable
    assert row.reserve_basis_at == newer.at
