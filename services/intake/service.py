"""Intake's use cases. Each stages its state change and its events in one unit of work."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError

from services.intake.handlers import CLAIM_DECIDED
from services.intake.models import Incident, Loss, Policy, TimelineEntry
from services.intake.reports import NewReport, ReportStore
from services.intake.schemas import (
    IncidentOut,
    IncidentReportIn,
    LossIn,
    PolicyBody,
    PolicyIn,
    RegulatorReportIn,
    TimelineItem,
)
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.db import UnitOfWork, append_row, for_update_arg
from shared.events import (
    IncidentReported,
    LossSubmitted,
    PolicyRegistered,
    PolicyTerms,
    PolicyUpdated,
    RegulatorReportFiled,
)
from shared.outbox import Outbox
from shared.problems import Conflict, NotFound, Unprocessable

FUTURE_TOLERANCE = timedelta(minutes=5)
REPORTED = "reported"


# --- policies ------------------------------------------------------------------------------------


def policy_terms(policy: Policy) -> PolicyTerms:
    return PolicyTerms.model_validate(policy, from_attributes=True)


def _apply_policy(policy: Policy, body: PolicyBody) -> None:
    for name, value in body.model_dump(exclude={"sections", "policy_number"}).items():
        setattr(policy, name, value)
    policy.sections = {section.value: terms.model_dump(mode="json")
                       for section, terms in body.sections.items()}


async def register_policy(uow: UnitOfWork, outbox: Outbox, clock: Clock, body: PolicyIn) -> Policy:
    if await uow.session.get(Policy, body.policy_number) is not None:
        raise Conflict(f"policy {body.policy_number} already exists", field="policy_number")
    now = clock.now()
    policy = Policy(policy_number=body.policy_number, version=1, created_at=now, updated_at=now)
    _apply_policy(policy, body)
    uow.session.add(policy)
    outbox.add(uow.session, PolicyRegistered(policy=policy_terms(policy)))
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict(f"policy {body.policy_number} already exists", field="policy_number") from exc
    return policy


async def update_policy(uow: UnitOfWork, outbox: Outbox, clock: Clock, policy_number: str,
                        body: PolicyBody) -> Policy:
    policy = await uow.session.get(Policy, policy_number, with_for_update=True)
    if policy is None:
        raise NotFound(f"policy {policy_number} not found")
    _apply_policy(policy, body)
    policy.version += 1
    policy.updated_at = clock.now()
    outbox.add(uow.session, PolicyUpdated(policy=policy_terms(policy), version=policy.version))
    await uow.commit()
    return policy


async def visible_policy(uow: UnitOfWork, principal: Principal, policy_number: str) -> Policy:
    """The policy if the caller may see it; 404 otherwise (never reveal that it exists)."""
    policy = await uow.session.get(Policy, policy_number)
    if policy is None or (principal.role is Role.policyholder and policy.org_id != principal.org_id):
        raise NotFound(f"policy {policy_number} not found")
    return policy


# --- incidents -----------------------------------------------------------------------------------


def request_fingerprint(body: IncidentReportIn) -> str:
    """A hash of the validated body's JSON (fields in the model's order): a retry whose JSON
    differs only in key order, spacing or defaults left out has the same fingerprint."""
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def _reject_future_timestamps(body: IncidentReportIn, now: datetime) -> None:
    latest = now + FUTURE_TOLERANCE
    for name in ("occurred_at", "discovered_at", "outage_started_at"):
        value = getattr(body, name)
        if value is not None and value > latest:
            raise Unprocessable(f"{name} is more than 5 minutes in the future", field=name)


def incident_view(incident: Incident, entries: list[TimelineEntry]) -> IncidentOut:
    return IncidentOut.model_validate({
        **{name: getattr(incident, name) for name in IncidentOut.model_fields if name != "timeline"},
        "timeline": [TimelineItem(at=e.at, type=e.type, summary=e.summary) for e in entries],
    })


def _as_first_reported(incident: Incident, entries: list[TimelineEntry]) -> IncidentOut:
    """The incident as the first response showed it: a retry gets the answer whose loss it
    retries, byte for byte, not a later state (that is GET /v1/incidents/{id})."""
    return incident_view(incident, [e for e in entries if e.type == "incident.reported"]).model_copy(
        update={"status": REPORTED, "priority": None, "regulatory_deadline": None,
                "regulator_reported_at": None, "regulator_reference": None})


async def report_incident(reports: ReportStore, principal: Principal, idempotency_key: str,
                          body: IncidentReportIn) -> tuple[IncidentOut, bool]:
    """Create the incident once per (org, Idempotency-Key), against the caller's own policy.

    Returns the incident and whether this was a replay of an earlier request. The first
    request simply inserts (a retry is the rare case): nothing is stored when the policy is
    not the caller's or the key was used before, and only then is it looked up why. A new
    report is built as plain values, not ORM objects: this is the busiest path of the system.
    """
    now = reports.clock.now()
    _reject_future_timestamps(body, now)
    org_id = principal.org_id or ""
    fingerprint = request_fingerprint(body)
    details = body.model_dump(exclude={"contact"})
    contact = body.contact.contract()
    incident = {
        **details, "id": uuid.uuid4(), "org_id": org_id, "idempotency_key": idempotency_key,
        "request_hash": fingerprint, "reported_at": now, "status": REPORTED,
        "contact": contact.model_dump(mode="json"),
    }
    envelope, event_row = reports.outbox.stage(IncidentReported(
        incident_id=incident["id"], org_id=org_id, reported_at=now, contact=contact, **details))
    entry = {"event_id": envelope.id, "at": now, "type": "incident.reported",
             "summary": f"Incident reported: {body.title}"}
    if await reports.store(NewReport(incident, entry, event_row)):
        return IncidentOut.model_validate({
            **incident, "priority": None, "regulatory_deadline": None,
            "regulator_reported_at": None, "regulator_reference": None, "timeline": [entry],
        }), False
    async with reports.uows() as uow:
        existing = await _with_timeline(uow, Incident.org_id == org_id,
                                        Incident.idempotency_key == idempotency_key)
        if existing is not None:
            _reject_other_body(existing[0], fingerprint)
            return _as_first_reported(*existing), True
        await visible_policy(uow, principal, body.policy_number)
    raise Conflict("the report could not be stored; retry with the same key")


async def _with_timeline(uow: UnitOfWork, *where: ColumnElement[bool]
                         ) -> tuple[Incident, list[TimelineEntry]] | None:
    """An incident and its timeline, read by one statement and so from one snapshot: read
    apart, an event applied in between showed a timeline ahead of the incident's status."""
    rows = (await uow.session.execute(
        select(Incident, TimelineEntry)
        .outerjoin(TimelineEntry, TimelineEntry.incident_id == Incident.id)
        .where(*where).order_by(TimelineEntry.at, TimelineEntry.id)
        .execution_options(populate_existing=True)  # an incident loaded before is read afresh
    )).all()
    if not rows:
        return None
    return rows[0][0], [entry for _, entry in rows if entry is not None]


async def read_incident(uow: UnitOfWork, principal: Principal, incident_id: uuid.UUID
                        ) -> IncidentOut:
    found = await _with_timeline(uow, Incident.id == incident_id)
    if found is None or not _may_see(principal, found[0]):
        raise NotFound(f"incident {incident_id} not found")
    return incident_view(*found)


def _reject_other_body(existing: Incident, fingerprint: str) -> None:
    if existing.request_hash != fingerprint:
        raise Conflict("Idempotency-Key was already used with a different request body",
                       field="Idempotency-Key")


async def visible_incident(uow: UnitOfWork, principal: Principal, incident_id: uuid.UUID,
                           *, for_update: bool = False) -> Incident:
    incident = await uow.session.get(Incident, incident_id,
                                     with_for_update=for_update_arg(for_update))
    if incident is None or not _may_see(principal, incident):
        raise NotFound(f"incident {incident_id} not found")
    return incident


def _may_see(principal: Principal, incident: Incident) -> bool:
    return principal.role is not Role.policyholder or incident.org_id == principal.org_id


async def list_incidents(uow: UnitOfWork, principal: Principal, *, limit: int,
                         offset: int) -> tuple[list[Incident], int]:
    query = select(Incident)
    if principal.role is Role.policyholder:
        query = query.where(Incident.org_id == principal.org_id)
    total = await uow.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await uow.session.scalars(
        query.order_by(Incident.reported_at.desc(), Incident.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def submit_loss(uow: UnitOfWork, outbox: Outbox, clock: Clock, principal: Principal,
                      incident_id: uuid.UUID, body: LossIn) -> Loss:
    # Locked: the claim's decision reaches the incident (`handlers.record_on_timeline`) either
    # before this loss, which is then refused, or after it, and payout judges the loss then.
    incident = await visible_incident(uow, principal, incident_id, for_update=True)
    if incident.status in CLAIM_DECIDED:
        raise Conflict(f"the claim on this incident is decided ({incident.status.replace('_', ' ')})"
                       ": a loss submitted now cannot change it; contact your adjuster")
    now = clock.now()
    loss = Loss(id=uuid.uuid4(), incident_id=incident.id, submitted_at=now, **body.model_dump())
    uow.session.add(loss)
    envelope = outbox.add(uow.session, LossSubmitted(
        incident_id=incident.id, org_id=incident.org_id, loss_id=loss.id,
        policy_number=incident.policy_number, submitted_at=now, **body.model_dump(),
    ))
    claimed = f"{body.hourly_loss} per hour" if body.hourly_loss is not None else str(body.amount)
    append_row(uow.session, TimelineEntry, incident_id=incident.id, event_id=envelope.id, at=now,
               type="loss.submitted", summary=f"Loss submitted: {body.section.value}, {claimed}")
    await uow.commit()
    return loss


async def file_regulator_report(uow: UnitOfWork, outbox: Outbox, clock: Clock,
                                principal: Principal, incident_id: uuid.UUID,
                                body: RegulatorReportIn) -> IncidentOut:
    incident = await visible_incident(uow, principal, incident_id, for_update=True)
    if body.reported_at > clock.now() + FUTURE_TOLERANCE:
        raise Unprocessable("reported_at is more than 5 minutes in the future", field="reported_at")
    if incident.regulator_reported_at is not None:
        raise Conflict("the regulator report was already confirmed")
    incident.regulator_reported_at = body.reported_at
    incident.regulator_reference = body.reference
    envelope = outbox.add(uow.session, RegulatorReportFiled(
        incident_id=incident.id, org_id=incident.org_id, reported_at=body.reported_at,
        reference=body.reference,
    ))
    append_row(uow.session, TimelineEntry, incident_id=incident.id, event_id=envelope.id,
               at=clock.now(), type="regulator.reported",
               summary=f"Reported to the regulator (ref. {body.reference})")
    await uow.commit()
    return await read_incident(uow, principal, incident_id)
