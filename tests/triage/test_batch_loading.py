"""A fetch of reports costs triage one statement per report (taking its vendors' slots) and a
fixed number besides, however many it carries: the reports' incidents and policies are read
up front in one statement per table (`incidents.load_batch`), the vendors are locked once,
and what the reports add goes in at commit, one statement per table."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy import func, select

from services.triage.models import Incident, IncidentStatus
from shared.clock import ManualClock
from shared.events import Category, PolicyRegistered
from shared.service import Runtime
from shared.topics import INCIDENTS, POLICIES
from tests.support.kafka import assert_same_texts, fetched, statements_run
from tests.support.service import Tokens, running
from tests.triage.conftest import Desk, envelope, incident_report, policy_terms


async def test_a_fetch_of_reports_takes_one_statement_per_report_and_a_fixed_few_besides(
    make_triage: Callable[..., FastAPI], clock: ManualClock, tokens: Tokens, broker: str,
    region: str,
) -> None:
    app = make_triage(clock, run_workers=False)
    async with running(app, wait_for_consumer=False) as client:
        runtime: Runtime = app.state.runtime
        consumer = runtime.consumer
        assert consumer is not None
        await Desk(app, client, tokens, broker, clock, region).vendor("big", capacity=1000)
        terms = policy_terms(region, now=clock.now())
        await consumer.process_batch(fetched(envelope(PolicyRegistered(policy=terms), clock.now()),
                                             topic=POLICIES.name))
        sent = {}
        for count in (3, 30):
            reports = [incident_report(terms, clock.now(), category=Category.malware)
                       for _ in range(count)]
            with statements_run(runtime.engine) as sent[count]:
                await consumer.process_batch(fetched(
                    *(envelope(report, clock.now()) for report in reports), topic=INCIDENTS.name))
            async with runtime.uow() as uow:
                triaged = await uow.session.scalar(select(func.count()).select_from(Incident).where(
                    Incident.id.in_([report.incident_id for report in reports]),
                    Incident.status == IncidentStatus.triaged))
            assert triaged == count

    # Before batch loading (2026-12-07): two statements per report (its policy and whether it
    # is known, then its slots).
    assert len(sent[30]) - len(sent[3]) == 27, (sent[3], sent[30])
    assert_same_texts(sent[3], sent[30])
