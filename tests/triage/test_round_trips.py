"""What a vendor's accept and complete cost triage in round trips to its database: each is one
transaction whose answer (the job with its history) is read before it commits, and each row it
locks is locked by the statement that reads it. Counted, not timed (`make bench` times the
whole lifecycle)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from shared.clock import ManualClock
from shared.events import Category, PolicyRegistered
from shared.service import Runtime
from shared.topics import INCIDENTS, POLICIES
from tests.support.kafka import fetched, statements_run, transactions_begun
from tests.support.service import Tokens, running
from tests.triage.conftest import Desk, completion_report, envelope, incident_report, policy_terms


async def test_accept_and_complete_each_take_one_transaction_and_few_statements(
    make_triage: Callable[..., FastAPI], clock: ManualClock, tokens: Tokens, broker: str,
    region: str,
) -> None:
    app = make_triage(clock, run_workers=False)  # no relay or timer sharing the engine
    async with running(app, wait_for_consumer=False) as client:
        runtime: Runtime = app.state.runtime
        assert runtime.consumer is not None
        desk = Desk(app, client, tokens, broker, clock, region)
        vendor = await desk.vendor("solo", capabilities=["forensics"])
        terms = policy_terms(region, now=clock.now())
        report = incident_report(terms, clock.now(), category=Category.malware)
        await runtime.consumer.process_batch([
            *fetched(envelope(PolicyRegistered(policy=terms), clock.now()), topic=POLICIES.name),
            *fetched(envelope(report, clock.now()), topic=INCIDENTS.name)])
        [job] = (await desk.triaged(report.incident_id))["jobs"]
        assert job["vendor_id"] == vendor

        costs = {}
        for action, body in (("accept", None), ("complete", completion_report(clock.now()))):
            with statements_run(runtime.engine) as sent, \
                    transactions_begun(runtime.engine) as begun:
                response = await desk.act(job["id"], action, vendor, body)
            assert response.status_code == 200, response.text
            costs[action] = (len(begun), [statement.split()[0] for statement in sent])
        assert response.json()["status"] == "completed"
        assert [h["status"] for h in response.json()["history"]] == [
            "dispatched", "accepted", "completed"]

    # Before (2026-12-07): two transactions each, 8 and 14 statements.
    assert costs["accept"][0] == costs["complete"][0] == 1, costs
    assert len(costs["accept"][1]) <= 6, costs
    assert len(costs["complete"][1]) <= 12, costs
