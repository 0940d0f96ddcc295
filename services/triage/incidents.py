"""Incident intake and triage: policies and reported incidents (from events), their priority
and regulatory grade, the response jobs they open, and when an incident's response is done."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.triage import rules
from services.triage.context import JobSubject, TriageContext, emit
from services.triage.dispatch import lock_vendors, offer_new_jobs
from services.triage.models import Incident, IncidentStatus, Job, JobStatus, Policy
from services.triage.rules import IncidentFacts
from shared.consumer import ids_in
from shared.db import TransactionRows, UnitOfWork
from shared.events import (
    Category,
    CompletionReport,
    Envelope,
    Finding,
    IncidentReported,
    IncidentResponseCompleted,
    IncidentTriaged,
    JobType,
    OpenedJob,
    PolicyTerms,
    VendorVerifiedLoss,
)

REPORTED = IncidentReported.event_type


async def load_batch(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    """Before a fetch's reports are triaged: their incidents (whether each is known already)
    and their policies, one statement per table, so each report then reads nothing of its own
    and what the fetch adds goes in at commit, one statement per table."""
    reports = [envelope for envelope in envelopes if envelope.type == REPORTED]
    policy_numbers = {number for envelope in reports
                      if isinstance(number := envelope.data.get("policy_number"), str)}
    rows = TransactionRows.of(uow.session)
    await rows.load(uow.session, Incident, ids_in(reports, "incident_id"))
    await rows.load(uow.session, Policy, policy_numbers)


async def record_policy(session: AsyncSession, ctx: TriageContext, terms: PolicyTerms,
                        version: int) -> None:
    """Keep the newest version of a policy. Incidents that arrived before it (the policies
    topic is not ordered with the incidents topic) are triaged by the next timer pass; those
    after it in the same fetch find it in the transaction's rows."""
    rows = TransactionRows.of(session)
    policy = await rows.get(session, Policy, terms.policy_number, for_update=True)
    if policy is not None and policy.version >= version:
        return  # an older or repeated version
    if policy is None:
        policy = Policy(policy_number=terms.policy_number)
        rows.add(session, policy, terms.policy_number)
    policy.org_id = terms.org_id
    policy.region = terms.region
    policy.critical_infrastructure = terms.critical_infrastructure
    policy.version = version
    policy.terms = terms.model_dump(mode="json")
    policy.updated_at = ctx.clock.now()


async def receive_incident(session: AsyncSession, ctx: TriageContext, event: IncidentReported,
                           envelope: Envelope) -> None:
    """Store the report; triage it now if the policy is known, else when its policy arrives.

    Without autoflush: nothing the triage reads is a row it adds, so what the incidents of a
    fetch add is inserted at commit, one statement per table, instead of in a flush before
    each incident's first query; each job is inserted once, already dispatched. The incident
    and its policy come from the transaction's rows (`load_batch` read a fetch's in one
    statement per table), where an incident staged earlier in the fetch is found too."""
    rows = TransactionRows.of(session)
    with session.no_autoflush:
        if await rows.get(session, Incident, event.incident_id) is not None:
            return  # the same incident again (a replay under another event id)
        policy = await rows.get(session, Policy, event.policy_number)
        incident = Incident(
            id=event.incident_id, org_id=event.org_id, policy_number=event.policy_number,
            correlation_id=envelope.correlationid, category=event.category.value,
            systems_down=event.systems_down, records_exposed=event.records_exposed,
            affected_hosts=event.affected_hosts, funds_transferred=event.funds_transferred,
            discovered_at=event.discovered_at, reported_at=event.reported_at,
            status=IncidentStatus.awaiting_policy,
        )
        rows.add(session, incident, incident.id)
        if policy is not None:
            await triage_incident(session, ctx, incident, policy, envelope, ctx.clock.now())


def incident_facts(incident: Incident, critical_infrastructure: bool) -> IncidentFacts:
    return IncidentFacts(
        category=Category(incident.category), systems_down=incident.systems_down,
        critical_infrastructure=critical_infrastructure, discovered_at=incident.discovered_at,
        records_exposed=incident.records_exposed or 0, affected_hosts=incident.affected_hosts or 0,
        funds_transferred=incident.funds_transferred or Decimal(0),
    )


async def triage_incident(session: AsyncSession, ctx: TriageContext, incident: Incident, policy: Policy,
                  cause: Envelope | None, now: datetime) -> None:
    """Grade the incident, open its playbook's jobs and offer each to the best vendor."""
    facts = incident_facts(incident, policy.critical_infrastructure)
    priority = rules.priority(facts)
    grade = rules.regulatory_grade(facts)
    incident.status = IncidentStatus.triaged
    incident.region = policy.region
    incident.critical_infrastructure = policy.critical_infrastructure
    incident.priority = priority.value
    incident.regulatory_grade = grade.value
    incident.regulatory_deadline = rules.regulatory_deadline(facts, grade, ctx.times)
    incident.triaged_at = now
    jobs = [Job(id=uuid.uuid4(), incident_id=incident.id, position=position,
                job_type=job_type.value, priority=priority.value, region=policy.region,
                status=JobStatus.unassigned, attempt=0, created_at=now, updated_at=now)
            for position, job_type in enumerate(rules.playbook(facts, priority))]
    session.add_all(jobs)
    emit(session, ctx, IncidentTriaged(
        incident_id=incident.id, org_id=incident.org_id, policy_number=incident.policy_number,
        priority=priority, regulatory_grade=grade, regulatory_deadline=incident.regulatory_deadline,
        jobs=[OpenedJob(job_id=job.id, job_type=JobType(job.job_type)) for job in jobs],
        triaged_at=now,
    ), incident, cause)
    pool = await lock_vendors(session, {job.job_type for job in jobs}, policy.region)
    await offer_new_jobs(session, ctx, jobs, incident, pool, now, cause=cause)


async def complete_incident_if_done(session: AsyncSession, ctx: TriageContext,
                                     incident: JobSubject, now: datetime) -> None:
    """Once every job is completed or cancelled: the findings, outage and losses for payout."""
    if not isinstance(incident, Incident) or incident.status != IncidentStatus.triaged:
        return
    jobs = list(await session.scalars(
        select(Job).where(Job.incident_id == incident.id).order_by(Job.position)
    ))
    if any(job.status not in (JobStatus.completed, JobStatus.cancelled) for job in jobs):
        return
    done = [(job, CompletionReport.model_validate(job.report)) for job in jobs
            if job.status == JobStatus.completed and job.report is not None]
    findings = [Finding(job_id=job.id, job_type=JobType(job.job_type), vendor_id=job.vendor_id or "",
                        root_cause=report.root_cause, attack_vector=report.attack_vector,
                        attribution=report.attribution, contained_at=report.contained_at,
                        records_confirmed=report.records_confirmed)
                for job, report in done]
    incident.status = IncidentStatus.response_completed
    incident.response_completed_at = now
    emit(session, ctx, IncidentResponseCompleted(
        incident_id=incident.id, org_id=incident.org_id, policy_number=incident.policy_number,
        completed_at=now, findings=findings,
        attribution=rules.overall_attribution([f.attribution for f in findings]),
        verified_outage=rules.verified_outage(report for _, report in done),
        verified_losses=[VendorVerifiedLoss(section=loss.section, amount=loss.amount,
                                            description=loss.description,
                                            vendor_id=job.vendor_id or "", job_id=job.id)
                         for job, report in done for loss in report.verified_losses],
    ), incident, None)
