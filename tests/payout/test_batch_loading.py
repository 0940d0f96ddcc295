"""A fetch of events costs payout a fixed number of statements, however many incidents it
carries: the claims of its incidents are locked, their reports read and triage's gradings of
them locked in one statement each (`claims.load_batch`), and what the handlers add goes in at
commit, one statement per table."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import func, select

from services.payout.models import Claim, IncidentTriage
from services.payout.models import Incident as StoredIncident
from shared.events import IncidentTriaged, PolicyRegistered, Priority, RegulatoryGrade
from shared.service import Runtime
from shared.topics import INCIDENTS, RESPONSE
from tests.payout.conftest import Incident, apply, now, policy_terms, wrap
from tests.support.kafka import assert_same_texts, fetched, statements_run
from tests.support.service import running


def triaged(incident: Incident) -> IncidentTriaged:
    return IncidentTriaged(
        incident_id=incident.incident_id, org_id=incident.policy.org_id,
        policy_number=incident.policy.policy_number, priority=Priority.P1,
        regulatory_grade=RegulatoryGrade.general, regulatory_deadline=None, jobs=[],
        triaged_at=now())


async def _reports(app: FastAPI, count: int) -> tuple[list[str], set[object]]:
    """`count` reports on one policy and triage's grading of each, applied as one fetch: the
    statements it took and the incidents it opened claims for."""
    runtime: Runtime = app.state.runtime
    assert runtime.consumer is not None
    terms = policy_terms()
    await apply(app, PolicyRegistered(policy=terms))
    incidents = [Incident("unused", terms) for _ in range(count)]
    fetch = [*fetched(*(wrap(incident.reported(), "/cyberclaims/intake") for incident in incidents),
                      topic=INCIDENTS.name),
             *fetched(*(wrap(triaged(incident), "/cyberclaims/triage") for incident in incidents),
                      topic=RESPONSE.name)]
    with statements_run(runtime.engine) as sent:
        await runtime.consumer.process_batch(fetch)
    ids = [incident.incident_id for incident in incidents]
    async with runtime.uow() as uow:
        opened = set(await uow.session.scalars(
            select(Claim.incident_id).where(Claim.incident_id.in_(ids))))
        stored = await uow.session.scalar(
            select(func.count()).select_from(StoredIncident).where(StoredIncident.id.in_(ids)))
        graded = await uow.session.scalar(
            select(func.count()).select_from(IncidentTriage)
            .where(IncidentTriage.incident_id.in_(ids)))
    assert opened == set(ids) and stored == graded == count
    with statements_run(runtime.engine) as replayed:
        await runtime.consumer.process_batch(fetch)
    assert len(replayed) == 1, replayed  # the inbox claim finds them all applied
    return sent, opened


async def test_a_fetch_of_reports_takes_as_many_statements_for_30_incidents_as_for_3(
    quiet_payout: FastAPI,
) -> None:
    async with running(quiet_payout, wait_for_consumer=False):
        few, _ = await _reports(quiet_payout, 3)
        many, _ = await _reports(quiet_payout, 30)
    assert len(many) == len(few), (few, many)
    assert_same_texts(few, many)
    assert len(many) <= 8, many
