"""Triage's use cases. Each stages its state change and its events in one unit of work.

Capacity: vendors' slots are taken with a conditional UPDATE (`open_jobs + taken <= capacity`)
whose returned rows say where it worked, so no vendor ever exceeds its capacity, whatever runs
at once. Deadlocks: a transaction locks, in this order, the incident, then the job, then every
vendor it may touch in one `SELECT ... ORDER BY vendor_id FOR UPDATE`; holding a vendor, it
only takes job rows with SKIP LOCKED. So no two transactions wait on each other in a cycle.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    Update,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.triage import rules
from services.triage.cache import TransactionCache
from services.triage.models import (
    HOLDS_A_SLOT,
    OPEN_STATES,
    AssessmentRequest,
    DeadLetter,
    Incident,
    IncidentStatus,
    Job,
    JobHistory,
    JobKind,
    JobRefusal,
    JobStatus,
    Policy,
    Vendor,
)
from services.triage.rules import IncidentFacts, ResponseTimes, VendorLoad
from services.triage.schemas import CompletionReportIn, VendorBody, VendorIn
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.db import UnitOfWork, UnitOfWorkFactory, is_postgres
from shared.events import (
    Category,
    CompletionReport,
    Envelope,
    Event,
    Finding,
    IncidentReported,
    IncidentResponseCompleted,
    IncidentTriaged,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobDeclined,
    JobDispatched,
    JobEvent,
    JobExpired,
    JobType,
    JobUnassigned,
    OpenedJob,
    PolicyTerms,
    Priority,
    RiskAssessed,
    RiskAssessmentRequested,
    VendorVerifiedLoss,
)
from shared.outbox import Outbox
from shared.problems import Conflict, NotFound, Unprocessable
from shared.repairs import record_repair

FUTURE_TOLERANCE = timedelta(minutes=5)
SYSTEM = "triage"
NO_VENDOR = "no eligible vendor has free capacity"


@dataclass(frozen=True)
class TriageContext:
    """What every use case needs: where events go, the time, and the response times."""

    outbox: Outbox
    clock: Clock
    times: ResponseTimes


JobSubject = Incident | AssessmentRequest
"""What a job is for: an incident (response jobs) or a policy's risk assessment."""


def _emit(session: AsyncSession, ctx: TriageContext, event: Event, incident: JobSubject,
          cause: Envelope | None) -> None:
    """Stage an event; everything about an incident shares its report's correlation id. An
    assessment job's events name the assessment and its policy."""
    if isinstance(incident, AssessmentRequest) and isinstance(event, JobEvent):
        event = event.model_copy(update={"assessment_id": incident.id,
                                         "policy_number": incident.policy_number})
    if cause is not None:
        ctx.outbox.add(session, event, cause=cause)
    else:
        ctx.outbox.add(session, event, correlation_id=incident.correlation_id)


# --- policies and incidents (from events) --------------------------------------------------------


async def record_policy(session: AsyncSession, ctx: TriageContext, terms: PolicyTerms,
                        version: int) -> None:
    """Keep the newest version of a policy. Incidents that arrived before it (the policies
    topic is not ordered with the incidents topic) are triaged by the next timer pass."""
    policy = await session.get(Policy, terms.policy_number, with_for_update=True)
    if policy is not None and policy.version >= version:
        return  # an older or repeated version
    if policy is None:
        policy = Policy(policy_number=terms.policy_number)
        session.add(policy)
    policy.org_id = terms.org_id
    policy.region = terms.region
    policy.critical_infrastructure = terms.critical_infrastructure
    policy.version = version
    policy.terms = terms.model_dump(mode="json")
    policy.updated_at = ctx.clock.now()
    await session.flush()  # incidents after it in this transaction read without autoflush


async def receive_incident(session: AsyncSession, ctx: TriageContext, event: IncidentReported,
                           envelope: Envelope) -> None:
    """Store the report; triage it now if the policy is known, else when its policy arrives.

    Without autoflush: nothing the triage reads is a row it adds, so what the incidents of a
    fetch add is inserted at commit, one statement per table, instead of in a flush before
    each incident's first query; each job is inserted once, already dispatched. Whether the
    incident is known already is read with its policy, in one statement (and on its own only
    while the policy is missing); one staged earlier in the same transaction is named in the
    transaction's cache."""
    cache = TransactionCache.of(session)
    if event.incident_id in cache.staged_incidents:
        return  # the same incident twice in one fetch (a replay under another event id)
    with session.no_autoflush:
        found = (await session.execute(
            select(Policy, exists().where(Incident.id == event.incident_id))
            .where(Policy.policy_number == event.policy_number)
        )).first()
        policy, known = found if found is not None else (
            None, await session.get(Incident, event.incident_id) is not None)
        if known:
            return  # the same incident again (a replay under another event id)
        incident = Incident(
            id=event.incident_id, org_id=event.org_id, policy_number=event.policy_number,
            correlation_id=envelope.correlationid, category=event.category.value,
            systems_down=event.systems_down, records_exposed=event.records_exposed,
            affected_hosts=event.affected_hosts, funds_transferred=event.funds_transferred,
            discovered_at=event.discovered_at, reported_at=event.reported_at,
            status=IncidentStatus.awaiting_policy,
        )
        session.add(incident)
        cache.staged_incidents.add(incident.id)
        if policy is not None:
            await _triage(session, ctx, incident, policy, envelope, ctx.clock.now())


def incident_facts(incident: Incident, critical_infrastructure: bool) -> IncidentFacts:
    return IncidentFacts(
        category=Category(incident.category), systems_down=incident.systems_down,
        critical_infrastructure=critical_infrastructure, discovered_at=incident.discovered_at,
        records_exposed=incident.records_exposed or 0, affected_hosts=incident.affected_hosts or 0,
        funds_transferred=incident.funds_transferred or Decimal(0),
    )


async def _triage(session: AsyncSession, ctx: TriageContext, incident: Incident, policy: Policy,
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
    _emit(session, ctx, IncidentTriaged(
        incident_id=incident.id, org_id=incident.org_id, policy_number=incident.policy_number,
        priority=priority, regulatory_grade=grade, regulatory_deadline=incident.regulatory_deadline,
        jobs=[OpenedJob(job_id=job.id, job_type=JobType(job.job_type)) for job in jobs],
        triaged_at=now,
    ), incident, cause)
    pool = await _lock_vendors(session, {job.job_type for job in jobs}, policy.region)
    await _offer_new_jobs(session, ctx, jobs, incident, pool, now, cause=cause)


# --- vendor slots --------------------------------------------------------------------------------


def _load(vendor: Vendor | Row[Any]) -> VendorLoad:
    return VendorLoad(
        vendor_id=vendor.vendor_id, capabilities=frozenset(JobType(c) for c in vendor.capabilities),
        regions=frozenset(vendor.regions), capacity=vendor.capacity, open_jobs=vendor.open_jobs,
        rating=vendor.rating, active=vendor.active,
    )


VENDOR_LOAD_COLUMNS = (Vendor.vendor_id, Vendor.capabilities, Vendor.regions, Vendor.capacity,
                       Vendor.open_jobs, Vendor.rating, Vendor.active)


def _lock_vendors_on_postgres() -> Select[*tuple[Any, ...]]:
    """`_lock_vendors` on PostgreSQL, built once: who to lock as array parameters, so one
    statement text (prepared once) serves every call; columns, not ORM objects."""
    def lists_any(column: InstrumentedAttribute[list[str]], values: str) -> ColumnElement[bool]:
        return cast(column, JSONB).has_any(bindparam(values, type_=postgresql.ARRAY(String())))

    return (select(*VENDOR_LOAD_COLUMNS)
            .where(or_(Vendor.vendor_id == any_(bindparam("named",
                                                          type_=postgresql.ARRAY(String()))),
                       and_(Vendor.active.is_(True), lists_any(Vendor.capabilities, "wanted"),
                            lists_any(Vendor.regions, "regions"))))
            .order_by(Vendor.vendor_id).with_for_update())


LOCK_VENDORS_ON_POSTGRES = _lock_vendors_on_postgres()


async def _lock_vendors(session: AsyncSession, job_types: Iterable[str], region: str,
                        also: Iterable[str | None] = ()) -> dict[str, VendorLoad]:
    """Lock, in vendor_id order, every active vendor that could take one of `job_types` in
    `region`, and the vendors in `also`; returns their loads as of the lock. One statement: the
    database itself looks into the vendors' lists of capabilities and regions. Asked the same
    again in this transaction, which still holds those locks, the answer comes from the
    transaction's cache, with the open jobs taken and released since."""
    wanted = tuple(sorted({JobType(t).value for t in job_types}))
    named = tuple(sorted({v for v in also if v is not None}))
    if not wanted and not named:
        return {}
    cache = TransactionCache.of(session)
    asked = (wanted, named, region)
    if asked in cache.pools:
        return {vendor_id: cache.vendors[vendor_id] for vendor_id in cache.pools[asked]}
    if is_postgres(session):
        locked = await session.execute(LOCK_VENDORS_ON_POSTGRES, {
            "named": list(named), "wanted": list(wanted),
            "regions": [rules.EVERY_REGION, region]})
    else:
        which: list[ColumnElement[bool]] = [Vendor.vendor_id.in_(named)] if named else []
        if wanted:
            which.append(and_(Vendor.active.is_(True),
                              _json_lists_any(Vendor.capabilities, wanted),
                              _json_lists_any(Vendor.regions, [rules.EVERY_REGION, region])))
        locked = await session.execute(
            select(*VENDOR_LOAD_COLUMNS).where(or_(*which)).order_by(Vendor.vendor_id)
            .with_for_update())
    pool = {row.vendor_id: _load(row) for row in locked}
    cache.vendors.update(pool)
    cache.pools[asked] = tuple(pool)
    return pool


def _json_lists_any(column: InstrumentedAttribute[list[str]],
                    values: Sequence[str]) -> ColumnElement[bool]:
    """Whether the JSON list in `column` holds any of `values`, on SQLite (`json_each`)."""
    elements = func.json_each(column).table_valued("value")
    return select(elements.c.value).where(elements.c.value.in_(values)).exists()


def _take_slots_on_postgres() -> Update:
    """`_take_slots` on PostgreSQL, built once: the counts as `unnest` arrays, so one statement
    text (prepared once) serves any number of vendors."""
    slots = func.unnest(bindparam("vendor_ids", type_=postgresql.ARRAY(String())),
                        bindparam("counts", type_=postgresql.ARRAY(Integer()))) \
        .table_valued(column("vendor_id", String()), column("taken", Integer())).render_derived()
    return (update(Vendor)
            .where(Vendor.vendor_id == slots.c.vendor_id, Vendor.active.is_(True),
                   Vendor.open_jobs + slots.c.taken <= Vendor.capacity)
            .values(open_jobs=Vendor.open_jobs + slots.c.taken)
            .returning(Vendor.vendor_id, Vendor.open_jobs)
            .execution_options(synchronize_session=False))


TAKE_SLOTS_ON_POSTGRES = _take_slots_on_postgres()


async def _take_slots(session: AsyncSession, slots: Mapping[str, int]) -> dict[str, int]:
    """`slots[v]` more open jobs for each vendor `v` that stays active and within its capacity
    (a negative count gives slots back), in one statement; the new open_jobs of those changed."""
    if is_postgres(session):
        result = await session.execute(TAKE_SLOTS_ON_POSTGRES, {
            "vendor_ids": list(slots), "counts": list(slots.values())})
    else:
        change = case(dict(slots), value=Vendor.vendor_id)
        result = await session.execute(
            update(Vendor)
            .where(Vendor.vendor_id.in_(list(slots)), Vendor.active.is_(True),
                   Vendor.open_jobs + change <= Vendor.capacity)
            .values(open_jobs=Vendor.open_jobs + change)
            .returning(Vendor.vendor_id, Vendor.open_jobs)
            .execution_options(synchronize_session=False)
        )
    taken = {vendor_id: open_jobs for vendor_id, open_jobs in result}
    TransactionCache.of(session).slots_changed(taken)
    return taken


async def _release_slot(session: AsyncSession, pool: dict[str, VendorLoad], vendor_id: str) -> None:
    result = await session.execute(
        update(Vendor).where(Vendor.vendor_id == vendor_id, Vendor.open_jobs > 0)
        .values(open_jobs=Vendor.open_jobs - 1).returning(Vendor.open_jobs)
        .execution_options(synchronize_session=False)
    )
    left = result.scalar_one_or_none()
    if left is None:
        return
    TransactionCache.of(session).slots_changed({vendor_id: left})
    if vendor_id in pool:
        pool[vendor_id] = replace(pool[vendor_id], open_jobs=left)


# --- job transitions -----------------------------------------------------------------------------


def _history(session: AsyncSession, job: Job, status: str, at: datetime, actor: str,
             vendor_id: str | None = None, note: str | None = None) -> None:
    session.add(JobHistory(job_id=job.id, at=at, status=status, vendor_id=vendor_id,
                           actor=actor, note=note))


def _dispatch(session: AsyncSession, ctx: TriageContext, job: Job, incident: JobSubject,
              vendor_id: str, now: datetime, *, cause: Envelope | None, actor: str) -> None:
    priority = Priority(job.priority)
    job.status = JobStatus.dispatched
    job.vendor_id = vendor_id
    job.attempt += 1
    job.accept_by = (now + ctx.times.assessment_acceptance if job.kind == JobKind.assessment
                     else rules.acceptance_deadline(now, priority, ctx.times))
    job.updated_at = now
    _history(session, job, JobStatus.dispatched, now, actor, vendor_id,
             f"accept by {job.accept_by.isoformat()}")
    _emit(session, ctx, JobDispatched(
        incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
        job_type=JobType(job.job_type), at=now, vendor_id=vendor_id, priority=priority,
        accept_by=job.accept_by, attempt=job.attempt,
    ), incident, cause)


async def _refusers(session: AsyncSession, job: Job) -> list[str]:
    if job.attempt == 0:
        return []  # never dispatched, so nobody has declined it or let it expire
    return list(await session.scalars(select(JobRefusal.vendor_id).where(JobRefusal.job_id == job.id)))


async def _offer(session: AsyncSession, ctx: TriageContext, job: Job, incident: JobSubject,
                 pool: dict[str, VendorLoad], now: datetime, *, cause: Envelope | None = None,
                 announce: bool, reason: str | None = None) -> bool:
    """Dispatch the job to the first eligible vendor that still has room (the rulebook's
    order); otherwise leave it unassigned (and, if `announce`, tell the operators)."""
    candidates = rules.rank_vendors(pool.values(), JobType(job.job_type), job.region,
                                    await _refusers(session, job))
    for candidate in candidates:
        taken = await _take_slots(session, {candidate.vendor_id: 1})
        if not taken:
            continue
        pool[candidate.vendor_id] = replace(candidate, open_jobs=taken[candidate.vendor_id])
        _dispatch(session, ctx, job, incident, candidate.vendor_id, now, cause=cause, actor=SYSTEM)
        return True
    _leave_unassigned(session, ctx, job, incident, now, cause=cause, announce=announce,
                      reason=reason or _unassigned_reason(pool, job))
    return False


async def _offer_new_jobs(session: AsyncSession, ctx: TriageContext, jobs: Sequence[Job],
                          incident: Incident, pool: dict[str, VendorLoad], now: datetime, *,
                          cause: Envelope | None) -> None:
    """`_offer` each new job of an incident, in the playbook's order, with one UPDATE for all
    their slots. The vendors are locked, so choosing in memory gives what one conditional UPDATE
    per job would. Should the UPDATE find a vendor otherwise than chosen against (SQLite takes
    no row locks), it is undone and the jobs are offered one at a time."""
    planned = dict(pool)
    chosen: list[str | None] = []
    for job in jobs:
        ranked = rules.rank_vendors(planned.values(), JobType(job.job_type), job.region)
        if ranked:
            planned[ranked[0].vendor_id] = replace(ranked[0], open_jobs=ranked[0].open_jobs + 1)
        chosen.append(ranked[0].vendor_id if ranked else None)
    slots = Counter(vendor_id for vendor_id in chosen if vendor_id is not None)
    taken = await _take_slots(session, slots) if slots else {}
    if taken != {vendor_id: planned[vendor_id].open_jobs for vendor_id in slots}:
        if taken:
            await _take_slots(session, {vendor_id: -slots[vendor_id] for vendor_id in taken})
        for job in jobs:
            await _offer(session, ctx, job, incident, pool, now, cause=cause, announce=True)
        return
    for job, vendor_id in zip(jobs, chosen, strict=True):
        if vendor_id is None:
            _leave_unassigned(session, ctx, job, incident, now, cause=cause, announce=True,
                              reason=_unassigned_reason(pool, job))
        else:
            _dispatch(session, ctx, job, incident, vendor_id, now, cause=cause, actor=SYSTEM)


def _unassigned_reason(pool: Mapping[str, VendorLoad], job: Job) -> str:
    """Why no vendor took the job, as operators must act on it: register a vendor for the job
    type and region when none serves it at all, or wait for (or add) capacity."""
    job_type = JobType(job.job_type)
    if any(vendor.can_do(job_type, job.region) for vendor in pool.values()):
        return NO_VENDOR
    return f"no active vendor serves {job_type.value} in {job.region}"


def _leave_unassigned(session: AsyncSession, ctx: TriageContext, job: Job, incident: JobSubject,
                      now: datetime, *, cause: Envelope | None, announce: bool,
                      reason: str) -> None:
    job.status = JobStatus.unassigned
    job.vendor_id = None
    job.accept_by = None
    job.updated_at = now
    if announce:
        _history(session, job, JobStatus.unassigned, now, SYSTEM, note=reason)
        _emit(session, ctx, JobUnassigned(
            incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
            job_type=JobType(job.job_type), at=now, reason=reason,
        ), incident, cause)


async def _fill_vendor(session: AsyncSession, ctx: TriageContext, vendor: VendorLoad,
                       now: datetime, *, actor: str = SYSTEM) -> int:
    """Give a vendor (locked by the caller) waiting jobs it may take, most urgent first."""
    room = vendor.capacity - vendor.open_jobs
    if not vendor.active or room <= 0:
        return 0
    query = select(Job).where(
        Job.status == JobStatus.unassigned,
        Job.job_type.in_([c.value for c in vendor.capabilities]),
        ~exists().where(JobRefusal.job_id == Job.id, JobRefusal.vendor_id == vendor.vendor_id),
    )
    if rules.EVERY_REGION not in vendor.regions:
        query = query.where(Job.region.in_(sorted(vendor.regions)))
    waiting = await session.scalars(
        query.order_by(Job.priority, Job.created_at, Job.position).limit(room)
        .with_for_update(skip_locked=True)
    )
    assigned = 0
    for job in list(waiting):
        if not await _take_slots(session, {vendor.vendor_id: 1}):
            break
        incident = await _incident_of(session, job)
        _dispatch(session, ctx, job, incident, vendor.vendor_id, now, cause=None, actor=actor)
        assigned += 1
    return assigned


async def _complete_incident_if_done(session: AsyncSession, ctx: TriageContext,
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
    _emit(session, ctx, IncidentResponseCompleted(
        incident_id=incident.id, org_id=incident.org_id, policy_number=incident.policy_number,
        completed_at=now, findings=findings,
        attribution=rules.overall_attribution([f.attribution for f in findings]),
        verified_outage=rules.verified_outage(report for _, report in done),
        verified_losses=[VendorVerifiedLoss(section=loss.section, amount=loss.amount,
                                            description=loss.description,
                                            vendor_id=job.vendor_id or "", job_id=job.id)
                         for job, report in done for loss in report.verified_losses],
    ), incident, None)


# --- the vendors' job API ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    """A job as one caller may see it. A vendor that declined a job or let it expire still
    sees it, as `declined` or `expired`, without what happened after."""

    job: Job
    history: Sequence[JobHistory]
    outcome_for_vendor: str | None = None
    dead_letters: Sequence[DeadLetter] = ()


async def _visible_job(session: AsyncSession, principal: Principal, job_id: uuid.UUID
                       ) -> tuple[Job, str | None]:
    """The job and, for a vendor that no longer holds it, its own outcome; 404 otherwise."""
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if principal.role is Role.vendor and job.vendor_id != principal.vendor_id:
        refusal = await session.get(JobRefusal, (job_id, principal.vendor_id))
        if refusal is None:
            raise NotFound(f"job {job_id} not found")
        return job, refusal.outcome
    return job, None


async def _histories(session: AsyncSession, job_ids: Sequence[uuid.UUID]
                     ) -> dict[uuid.UUID, list[JobHistory]]:
    found: dict[uuid.UUID, list[JobHistory]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        rows = await session.scalars(
            select(JobHistory).where(JobHistory.job_id.in_(job_ids))
            .order_by(JobHistory.at, JobHistory.id)
        )
        for row in rows:
            found[row.job_id].append(row)
    return found


async def _dead_letters(session: AsyncSession, incident_ids: Collection[uuid.UUID]
                        ) -> dict[uuid.UUID, list[DeadLetter]]:
    """The events about these incidents that were dead-lettered and not replayed yet."""
    found: dict[uuid.UUID, list[DeadLetter]] = defaultdict(list)
    if incident_ids:
        for row in await session.scalars(select(DeadLetter).where(
                DeadLetter.incident_id.in_(set(incident_ids))).order_by(DeadLetter.at)):
            found[row.incident_id].append(row)
    return found


def _marks_of(marks: dict[uuid.UUID, list[DeadLetter]], job: Job) -> Sequence[DeadLetter]:
    """An assessment job has no incident, so no incident's dead letters."""
    return marks.get(job.incident_id, ()) if job.incident_id is not None else ()


async def _views(session: AsyncSession, jobs: Sequence[Job]) -> list[JobView]:
    histories = await _histories(session, [job.id for job in jobs])
    marks = await _dead_letters(session, {job.incident_id for job in jobs
                                          if job.incident_id is not None})
    return [JobView(job, histories[job.id], dead_letters=_marks_of(marks, job)) for job in jobs]


async def read_job(uow: UnitOfWork, principal: Principal, job_id: uuid.UUID) -> JobView:
    job, outcome = await _visible_job(uow.session, principal, job_id)
    history = (await _histories(uow.session, [job.id]))[job.id]
    marks = await _dead_letters(uow.session, [job.incident_id] if job.incident_id else [])
    return JobView(job, history, outcome, _marks_of(marks, job))


async def list_jobs(uow: UnitOfWork, principal: Principal, *, status: str | None,
                    incident_id: uuid.UUID | None, limit: int, offset: int
                    ) -> tuple[list[JobView], int]:
    """A vendor lists the jobs it holds; an operator every job."""
    query = select(Job)
    if principal.role is Role.vendor:
        query = query.where(Job.vendor_id == principal.vendor_id)
    if status is not None:
        query = query.where(Job.status == status)
    if incident_id is not None:
        query = query.where(Job.incident_id == incident_id)
    total = await uow.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    jobs = list(await uow.session.scalars(
        query.order_by(Job.created_at.desc(), Job.incident_id, Job.position).limit(limit).offset(offset)
    ))
    return await _views(uow.session, jobs), total


async def _held_job(uow: UnitOfWork, principal: Principal, job_id: uuid.UUID,
                    expected: str) -> Job:
    """The vendor's own job, locked, in state `expected`; 404 or 409 (naming the state)."""
    job, outcome = await _visible_job(uow.session, principal, job_id)
    if outcome is not None:
        raise Conflict(f"job {job_id} is {outcome} for vendor {principal.vendor_id}", state=outcome)
    await uow.session.refresh(job, with_for_update=True)
    if job.vendor_id != principal.vendor_id:
        raise NotFound(f"job {job_id} not found")  # it moved on while we waited for the lock
    if job.status != expected:
        raise Conflict(f"job {job_id} is {job.status}; only a {expected} job can be "
                       "changed this way", state=job.status)
    return job


async def accept_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                     job_id: uuid.UUID) -> JobView:
    now = ctx.clock.now()
    job = await _held_job(uow, principal, job_id, JobStatus.dispatched)
    if job.accept_by is not None and now > job.accept_by:
        raise Conflict(f"job {job_id} is expired: it had to be accepted by "
                       f"{job.accept_by.isoformat()}", state=JobStatus.expired)
    incident = await _incident_of(uow.session, job)
    job.status = JobStatus.accepted
    job.updated_at = now
    _history(uow.session, job, JobStatus.accepted, now, principal.recipient, job.vendor_id)
    _emit(uow.session, ctx, JobAccepted(
        incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
        job_type=JobType(job.job_type), at=now, vendor_id=principal.vendor_id or "",
    ), incident, None)
    await uow.commit()
    return await read_job(uow, principal, job_id)


async def decline_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                      job_id: uuid.UUID, reason: str) -> JobView:
    """The vendor passes: the job goes to the next vendor (never back to this one)."""
    now = ctx.clock.now()
    job = await _held_job(uow, principal, job_id, JobStatus.dispatched)
    await _pass_on(uow.session, ctx, job, now, outcome=JobStatus.declined, actor=principal.recipient,
                   note=reason)
    await uow.commit()
    return await read_job(uow, principal, job_id)


async def _pass_on(session: AsyncSession, ctx: TriageContext, job: Job, now: datetime, *,
                   outcome: str, actor: str, note: str | None) -> None:
    """A dispatched job was declined or expired: free the slot, remember the vendor, and offer
    the job to the next one; the freed slot may take a waiting job."""
    incident = await _incident_of(session, job)
    vendor_id = job.vendor_id
    assert vendor_id is not None
    pool = await _lock_vendors(session, [job.job_type], job.region, also=[vendor_id])
    await _release_slot(session, pool, vendor_id)
    session.add(JobRefusal(job_id=job.id, vendor_id=vendor_id, outcome=outcome, at=now))
    job.status = outcome
    _history(session, job, outcome, now, actor, vendor_id, note)
    job_type = JobType(job.job_type)
    if outcome == JobStatus.declined:
        _emit(session, ctx, JobDeclined(
            incident_id=incident.id, org_id=incident.org_id, job_id=job.id, job_type=job_type,
            at=now, vendor_id=vendor_id, reason=note or "",
        ), incident, None)
    else:
        assert job.accept_by is not None
        _emit(session, ctx, JobExpired(
            incident_id=incident.id, org_id=incident.org_id, job_id=job.id, job_type=job_type,
            at=now, vendor_id=vendor_id, accept_by=job.accept_by,
        ), incident, None)
    await session.flush()
    await _offer(session, ctx, job, incident, pool, now, announce=True,
                 reason=f"{NO_VENDOR} after {vendor_id} {outcome}")
    if vendor_id in pool:
        await _fill_vendor(session, ctx, pool[vendor_id], now)


async def complete_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                       job_id: uuid.UUID, body: CompletionReportIn) -> JobView:
    now = ctx.clock.now()
    for name in ("contained_at", "outage_started_at", "outage_ended_at"):
        value = getattr(body, name)
        if value is not None and value > now + FUTURE_TOLERANCE:
            raise Unprocessable(f"{name} is more than 5 minutes in the future", field=name)
    job, _ = await _visible_job(uow.session, principal, job_id)
    if job.kind == JobKind.assessment:
        raise Conflict(f"job {job_id} is a risk assessment: submit it to risk "
                       "(POST /v1/assessments/{assessment_id}/report)", state=job.status)
    incident = await _incident_of(uow.session, job, for_update=True)
    job = await _held_job(uow, principal, job_id, JobStatus.accepted)
    body.check_sections(JobType(job.job_type))
    report = body.contract()
    pool = await _lock_vendors(uow.session, [], job.region, also=[job.vendor_id])
    await _release_slot(uow.session, pool, job.vendor_id or "")
    job.status = JobStatus.completed
    job.report = report.model_dump(mode="json")
    job.completed_at = now
    job.updated_at = now
    _history(uow.session, job, JobStatus.completed, now, principal.recipient, job.vendor_id)
    _emit(uow.session, ctx, JobCompleted(
        incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
        job_type=JobType(job.job_type), at=now, vendor_id=job.vendor_id or "", report=report,
    ), incident, None)
    await _fill_vendor(uow.session, ctx, pool[job.vendor_id or ""], now)
    await _complete_incident_if_done(uow.session, ctx, incident, now)
    await uow.commit()
    return await read_job(uow, principal, job_id)


async def cancel_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                     job_id: uuid.UUID) -> JobView:
    """An operator closes an open job; its vendor's slot frees."""
    now = ctx.clock.now()
    job, _ = await _visible_job(uow.session, principal, job_id)
    incident = await _incident_of(uow.session, job, for_update=True)
    await uow.session.refresh(job, with_for_update=True)
    if job.status not in OPEN_STATES:
        raise Conflict(f"job {job_id} is {job.status}; only an open job can be cancelled",
                       state=job.status)
    holder = job.vendor_id if job.status in HOLDS_A_SLOT else None
    pool = await _lock_vendors(uow.session, [], job.region, also=[holder])
    if holder is not None:
        await _release_slot(uow.session, pool, holder)
    job.status = JobStatus.cancelled
    job.updated_at = now
    _history(uow.session, job, JobStatus.cancelled, now, principal.recipient, holder)
    _emit(uow.session, ctx, JobCancelled(
        incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
        job_type=JobType(job.job_type), at=now, vendor_id=holder, cancelled_by=principal.sub,
    ), incident, None)
    if holder is not None:
        await _fill_vendor(uow.session, ctx, pool[holder], now)
    await _complete_incident_if_done(uow.session, ctx, incident, now)
    await uow.commit()
    return await read_job(uow, principal, job_id)


async def assign_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                     job_id: uuid.UUID, vendor_id: str) -> JobView:
    """An operator hands an unassigned (or not yet accepted) job to a vendor of its choice,
    even outside the vendor's regions or one that passed on it before, but never beyond the
    vendor's capacity."""
    now = ctx.clock.now()
    job, _ = await _visible_job(uow.session, principal, job_id)
    await uow.session.refresh(job, with_for_update=True)
    if job.status not in (JobStatus.unassigned, JobStatus.dispatched):
        raise Conflict(f"job {job_id} is {job.status}; only an unassigned or dispatched job "
                       "can be assigned", state=job.status)
    if job.vendor_id == vendor_id:
        raise Conflict(f"job {job_id} is already dispatched to {vendor_id}", state=job.status)
    previous = job.vendor_id
    pool = await _lock_vendors(uow.session, [], job.region, also=[previous, vendor_id])
    target = pool.get(vendor_id)
    if target is None:
        raise Unprocessable(f"vendor {vendor_id} not found", field="vendor_id")
    if not target.active:
        raise Unprocessable(f"vendor {vendor_id} is not active", field="vendor_id")
    if JobType(job.job_type) not in target.capabilities:
        raise Unprocessable(f"vendor {vendor_id} does not do {job.job_type}", field="vendor_id")
    if not await _take_slots(uow.session, {vendor_id: 1}):
        raise Conflict(f"vendor {vendor_id} has no free capacity "
                       f"({target.open_jobs} of {target.capacity} open jobs)", state=job.status)
    incident = await _incident_of(uow.session, job)
    if previous is not None:
        await _release_slot(uow.session, pool, previous)
        _history(uow.session, job, "withdrawn", now, principal.recipient, previous,
                 f"reassigned to {vendor_id}")
    _dispatch(uow.session, ctx, job, incident, vendor_id, now, cause=None, actor=principal.recipient)
    if previous is not None:
        await _fill_vendor(uow.session, ctx, pool[previous], now)
    await uow.commit()
    return await read_job(uow, principal, job_id)


async def _incident_of(session: AsyncSession, job: Job, *, for_update: bool = False
                       ) -> JobSubject:
    """The job's subject: its incident, or for an assessment job the assessment request."""
    subject: JobSubject | None = (
        await session.get(AssessmentRequest, job.assessment_id, with_for_update=for_update)
        if job.kind == JobKind.assessment
        else await session.get(Incident, job.incident_id, with_for_update=for_update))
    assert subject is not None
    return subject


# --- risk assessment jobs (from risk's events) ---------------------------------------------------


async def open_assessment_job(session: AsyncSession, ctx: TriageContext,
                              event: RiskAssessmentRequested, envelope: Envelope) -> None:
    """One assessment job per request, dispatched like a response job (capability
    `risk_assessment`, the same selection order and capacity), to be accepted within 72 h."""
    if await session.get(AssessmentRequest, event.assessment_id) is not None:
        return  # the same request again
    now = ctx.clock.now()
    request = AssessmentRequest(id=event.assessment_id, policy_number=event.policy_number,
                                org_id=event.org_id, region=event.region,
                                correlation_id=envelope.correlationid, created_at=now)
    session.add(request)
    await session.flush()
    job = Job(id=uuid.uuid4(), kind=JobKind.assessment, incident_id=None,
              assessment_id=request.id, position=0, job_type=JobType.risk_assessment.value,
              priority=Priority.P4.value, region=event.region, status=JobStatus.unassigned,
              attempt=0, created_at=now, updated_at=now)
    session.add(job)
    pool = await _lock_vendors(session, [job.job_type], job.region)
    await _offer(session, ctx, job, request, pool, now, cause=envelope, announce=True)


async def complete_assessment_job(session: AsyncSession, ctx: TriageContext,
                                  event: RiskAssessed) -> None:
    """risk scored the assessment its vendor submitted: the job is done, the slot frees."""
    job = await session.scalar(select(Job).where(Job.assessment_id == event.assessment_id)
                               .with_for_update())
    if job is None or job.status != JobStatus.accepted:
        return  # unknown, or completed already (a replay)
    now = ctx.clock.now()
    holder = job.vendor_id or ""
    pool = await _lock_vendors(session, [], job.region, also=[holder])
    await _release_slot(session, pool, holder)
    job.status = JobStatus.completed
    job.completed_at = job.updated_at = now
    _history(session, job, JobStatus.completed, now, f"risk:{event.assessment_id}", holder,
             f"assessed: score {event.score}, tier {event.tier.value}")
    await _fill_vendor(session, ctx, pool[holder], now)


# --- vendor registry -----------------------------------------------------------------------------


def _apply_vendor(vendor: Vendor, body: VendorBody, now: datetime) -> None:
    vendor.name = body.name
    vendor.capabilities = [c.value for c in body.capabilities]
    vendor.regions = list(body.regions)
    vendor.capacity = body.capacity
    vendor.rating = body.rating
    vendor.active = body.active
    vendor.updated_at = now


async def register_vendor(uow: UnitOfWork, ctx: TriageContext, body: VendorIn) -> Vendor:
    """A new panel vendor; waiting jobs it may take are dispatched to it at once."""
    now = ctx.clock.now()
    if await uow.session.get(Vendor, body.vendor_id) is not None:
        raise Conflict(f"vendor {body.vendor_id} already exists", field="vendor_id")
    vendor = Vendor(vendor_id=body.vendor_id, open_jobs=0, created_at=now)
    _apply_vendor(vendor, body, now)
    uow.session.add(vendor)
    try:
        await uow.session.flush()
    except IntegrityError as exc:  # registered at the same moment by another request
        raise Conflict(f"vendor {body.vendor_id} already exists", field="vendor_id") from exc
    return await _settle_vendor(uow, ctx, vendor, now)


async def update_vendor(uow: UnitOfWork, ctx: TriageContext, vendor_id: str,
                        body: VendorBody) -> Vendor:
    """Replace a vendor's terms. Its open jobs stay; more capacity takes waiting jobs at once."""
    now = ctx.clock.now()
    vendor = await uow.session.get(Vendor, vendor_id, with_for_update=True)
    if vendor is None:
        raise NotFound(f"vendor {vendor_id} not found")
    _apply_vendor(vendor, body, now)
    await uow.session.flush()
    return await _settle_vendor(uow, ctx, vendor, now)


async def _settle_vendor(uow: UnitOfWork, ctx: TriageContext, vendor: Vendor,
                         now: datetime) -> Vendor:
    await _fill_vendor(uow.session, ctx, _load(vendor), now)
    await uow.session.refresh(vendor)
    await uow.commit()
    return vendor


async def list_vendors(uow: UnitOfWork) -> list[Vendor]:
    return list(await uow.session.scalars(select(Vendor).order_by(Vendor.vendor_id)))


# --- the incident's triage -----------------------------------------------------------------------


async def jobs_of_incident(uow: UnitOfWork, incident_id: uuid.UUID) -> list[str]:
    """What a dead-lettered event about `incident_id` may freeze here: its open jobs (or the
    incident itself when none is open)."""
    jobs = await uow.session.scalars(select(Job.id).where(
        Job.incident_id == incident_id, Job.status.in_(OPEN_STATES)).order_by(Job.position))
    return [f"job {job_id}" for job_id in jobs] or [f"incident {incident_id}"]



async def incident_triage(uow: UnitOfWork, incident_id: uuid.UUID
                          ) -> tuple[Incident, list[JobView]]:
    incident = await uow.session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"incident {incident_id} not found")
    jobs = list(await uow.session.scalars(
        select(Job).where(Job.incident_id == incident_id).order_by(Job.position)
    ))
    return incident, await _views(uow.session, jobs)


# --- the timer -----------------------------------------------------------------------------------


@dataclass
class TimerPass:
    repaired: int = 0
    expired: int = 0
    assigned: int = 0
    triaged: int = 0


async def run_timer_pass(uows: UnitOfWorkFactory, ctx: TriageContext,
                         now: datetime | None = None) -> TimerPass:
    """One pass of the durable timer: expire jobs past their acceptance deadline (each goes to
    the next vendor), assign waiting jobs a vendor now has room for, and triage incidents that
    arrived before their policy. Everything it needs is in the database, so a restart loses
    nothing; SKIP LOCKED lets replicas share the work."""
    now = now or ctx.clock.now()
    done = TimerPass()
    done.repaired = await _repair_deadlineless(uows, ctx, now)
    while await _expire_next(uows, ctx, now):
        done.expired += 1
    done.assigned = await _assign_waiting(uows, ctx, now)
    done.triaged = await _triage_waiting(uows, ctx, now)
    return done


async def _repair_deadlineless(uows: UnitOfWorkFactory, ctx: TriageContext, now: datetime) -> int:
    """Safety net: a dispatched job without an acceptance deadline would wait for its vendor
    forever (nothing expires it). It gets the deadline its priority gives from now, and is
    counted and logged: such a job means a bug elsewhere."""
    async with uows() as uow:
        jobs = list(await uow.session.scalars(
            select(Job).where(Job.status == JobStatus.dispatched, Job.accept_by.is_(None))
            .with_for_update(skip_locked=True)))
        for job in jobs:
            job.accept_by = rules.acceptance_deadline(now, Priority(job.priority), ctx.times)
            job.updated_at = now
            _history(uow.session, job, JobStatus.dispatched, now, SYSTEM, job.vendor_id,
                     f"had no acceptance deadline; accept by {job.accept_by.isoformat()}")
            record_repair("triage", "job_without_deadline",
                          f"job {job.id} was dispatched to {job.vendor_id} without an acceptance "
                          f"deadline; it now expires at {job.accept_by.isoformat()}")
        if jobs:
            await uow.commit()
        return len(jobs)


async def _expire_next(uows: UnitOfWorkFactory, ctx: TriageContext, now: datetime) -> bool:
    async with uows() as uow:
        job = await uow.session.scalar(
            select(Job).where(Job.status == JobStatus.dispatched, Job.accept_by < now)
            .order_by(Job.accept_by).limit(1).with_for_update(skip_locked=True)
        )
        if job is None:
            return False
        await _pass_on(uow.session, ctx, job, now, outcome=JobStatus.expired, actor=SYSTEM,
                       note=f"not accepted by {job.accept_by.isoformat() if job.accept_by else '?'}")
        await uow.commit()
        return True


async def _assign_waiting(uows: UnitOfWorkFactory, ctx: TriageContext, now: datetime,
                          batch: int = 500) -> int:
    """Waiting jobs that some vendor has room for (e.g. one skipped while it was locked)."""
    async with uows() as uow:
        waiting = (await uow.session.execute(
            select(Job.id, Job.job_type, Job.region).where(Job.status == JobStatus.unassigned)
            .order_by(Job.priority, Job.created_at, Job.position).limit(batch)
        )).all()
        if not waiting:
            return 0
        with_room = [_load(v) for v in await uow.session.scalars(
            select(Vendor).where(Vendor.active.is_(True), Vendor.open_jobs < Vendor.capacity)
        )]
        if not with_room:
            return 0
        refusals = (await uow.session.execute(
            select(JobRefusal.job_id, JobRefusal.vendor_id)
            .where(JobRefusal.job_id.in_([row.id for row in waiting]))
        )).all()
    refused: dict[uuid.UUID, set[str]] = {}
    for job_id, vendor_id in refusals:
        refused.setdefault(job_id, set()).add(vendor_id)
    assignable = [row.id for row in waiting
                  if rules.rank_vendors(with_room, JobType(row.job_type), row.region,
                                        refused.get(row.id, ()))]
    assigned = 0
    for job_id in assignable:
        async with uows() as uow:
            job = await uow.session.scalar(
                select(Job).where(Job.id == job_id, Job.status == JobStatus.unassigned)
                .with_for_update(skip_locked=True)
            )
            if job is None:
                continue
            incident = await _incident_of(uow.session, job)
            pool = await _lock_vendors(uow.session, [job.job_type], job.region)
            if await _offer(uow.session, ctx, job, incident, pool, now, announce=False):
                await uow.commit()
                assigned += 1
    return assigned


async def _triage_waiting(uows: UnitOfWorkFactory, ctx: TriageContext, now: datetime) -> int:
    """Incidents that arrived before their policy, once it is here (one per transaction)."""
    async with uows() as uow:
        ids = list(await uow.session.scalars(
            select(Incident.id).where(
                Incident.status == IncidentStatus.awaiting_policy,
                exists().where(Policy.policy_number == Incident.policy_number),
            )
        ))
    triaged = 0
    for incident_id in ids:
        async with uows() as uow:
            incident = await uow.session.scalar(
                select(Incident).where(Incident.id == incident_id,
                                       Incident.status == IncidentStatus.awaiting_policy)
                .with_for_update(skip_locked=True)
            )
            policy = await uow.session.get(Policy, incident.policy_number) if incident else None
            if incident is None or policy is None:
                continue
            await _triage(uow.session, ctx, incident, policy, None, now)
            await uow.commit()
            triaged += 1
    return triaged
