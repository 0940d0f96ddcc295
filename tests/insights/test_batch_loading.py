"""A fetch of events costs insights a fixed number of statements, however many incidents and
claims it carries: the records it changes are read in one statement per table after the
version row's lock (`service.load_batch`), and the new ones go in at commit."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from cyberclaims.simulate import SimClaim, book
from services.insights.models import ClaimRecord, IncidentRecord
from shared.events import ClaimOpened, Envelope, IncidentReported
from shared.service import Runtime
from tests.insights.conftest import World, claim_events
from tests.support.kafka import assert_same_texts, fetched, statements_run
from tests.support.service import running


async def _fetch(runtime: Runtime, claims: list[SimClaim]) -> list[str]:
    """Each claim's report and claim opened applied as one fetch; the statements it took
    (each executemany once)."""
    events = [event for claim in claims for _, event in claim_events(claim)
              if isinstance(event, IncidentReported | ClaimOpened)]
    envelopes = [Envelope.wrap(event, source="/test", time=datetime.now(UTC)) for event in events]
    assert runtime.consumer is not None
    with statements_run(runtime.engine) as sent:
        await runtime.consumer.process_batch(fetched(*envelopes, topic="cyberclaims.incidents"))
    async with runtime.uow() as uow:
        incidents = await uow.session.scalar(select(func.count()).select_from(IncidentRecord)
                                             .where(IncidentRecord.incident_id.in_(
                                                 [e.incident_id for e in events])))
        opened = await uow.session.scalar(select(func.count()).select_from(ClaimRecord)
                                          .where(ClaimRecord.claim_id.in_(
                                              [e.claim_id for e in events
                                               if isinstance(e, ClaimOpened)])))
    assert incidents == opened == len(claims)
    return sent


async def test_a_fetch_takes_as_many_statements_for_30_incidents_as_for_3(world: World) -> None:
    claims = book(300, 1, 33, start=datetime(2025, 1, 1, tzinfo=UTC)).claims
    app = world.app(run_workers=False)
    async with running(app, wait_for_consumer=False):
        few = await _fetch(app.state.runtime, claims[:3])
        many = await _fetch(app.state.runtime, claims[3:33])
    assert len(many) == len(few), (few, many)
    assert_same_texts(few, many)
