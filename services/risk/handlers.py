"""Risk's event handlers: its copy of policies (new policies and renewals ask for an
assessment), and who holds each assessment job at triage."""

from __future__ import annotations

from collections.abc import Mapping

from services.risk import policies
from services.risk.context import RiskContext
from services.risk.policies import JOB_STATUS
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import Envelope, Event, JobEvent, PolicyRegistered, PolicyUpdated


def handlers(ctx: RiskContext) -> Mapping[type[Event], Handler]:
    async def policy_registered(uow: UnitOfWork, event: PolicyRegistered,
                                envelope: Envelope) -> None:
        await policies.record_policy(uow.session, ctx, event.policy, version=1, cause=envelope)

    async def policy_updated(uow: UnitOfWork, event: PolicyUpdated, envelope: Envelope) -> None:
        await policies.record_policy(uow.session, ctx, event.policy, version=event.version,
                                     cause=envelope)

    async def job_changed(uow: UnitOfWork, event: JobEvent, _: Envelope) -> None:
        await policies.follow_job(uow.session, ctx, event)

    table: dict[type[Event], Handler] = {PolicyRegistered: policy_registered,
                                         PolicyUpdated: policy_updated}
    table.update({job_event: job_changed for job_event in JOB_STATUS})
    return table
