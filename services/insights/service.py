"""The read model's use cases: each event updates insights' own tables, and nothing else.

Events of one incident arrive in order on each topic, but topics interleave freely (a claim
can arrive before its incident's report), so every update creates the row it needs and only
fills in what its event knows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import delete, update

from services.insights.models import (
    ClaimMovement,
    ClaimRecord,
    Exposure,
    IncidentRecord,
    PolicyRecord,
    ReadModelVersion,
)
from shared.consumer import ids_in
from shared.db import TransactionRows, UnitOfWork
from shared.events import Envelope, IncidentResponseCompleted, PolicyTerms
from shared.money import ZERO

SIZE_BANDS = ((1, 49, "1-49"), (50, 249, "50-249"), (250, 999, "250-999"))
LARGEST_BAND = "1000+"
UNKNOWN = "unknown"
VERSION_ROW = 1
_COUNTED = "insights.read_model_counted"


class MovementKind:
    reserve = "reserve"
    paid = "paid"
    closed = "closed"


async def count_change(uow: UnitOfWork) -> int:
    """Count this transaction's change of the read model, once per transaction (the consumer
    applies a whole fetch in one), before anything else: the version row's lock then orders
    every change of the read model, so events of one incident arriving at once on different
    topics (and consumers) never race to create or update the same row, and a version is
    visible only once every transaction with a smaller one has committed. Returns the
    transaction's version, the stamp of the rows it changes."""
    version = uow.session.info.get(_COUNTED)
    if version is None:
        version = (await uow.session.execute(
            update(ReadModelVersion).where(ReadModelVersion.id == VERSION_ROW)
            .values(version=ReadModelVersion.version + 1)
            .returning(ReadModelVersion.version))).scalar_one()
        uow.session.info[_COUNTED] = version
    return int(version)


def size_band(employees: int | None) -> str:
    """The size band of a head count (`unknown` for policies registered without one)."""
    if employees is None:
        return UNKNOWN
    for low, high, name in SIZE_BANDS:
        if low <= employees <= high:
            return name
    return LARGEST_BAND


def quarter_of(moment: datetime) -> str:
    """`2026Q3`: the calendar quarter (UTC) of a moment."""
    moment = moment.astimezone(UTC)
    return f"{moment.year}Q{(moment.month - 1) // 3 + 1}"


def quarter_start(quarter: str) -> datetime:
    year, number = int(quarter[:4]), int(quarter[5])
    return datetime(year, 3 * (number - 1) + 1, 1, tzinfo=UTC)


def next_quarter(quarter: str) -> str:
    year, number = int(quarter[:4]), int(quarter[5])
    return f"{year + 1}Q1" if number == 4 else f"{year}Q{number + 1}"


def quarter_seconds(start: datetime, end: datetime) -> dict[str, int]:
    """Whole seconds of [start, end) in each calendar quarter it touches."""
    seconds: dict[str, int] = {}
    quarter = quarter_of(start)
    while quarter_start(quarter) < end:
        low = max(start, quarter_start(quarter))
        high = min(end, quarter_start(next_quarter(quarter)))
        if high > low:
            seconds[quarter] = int((high - low).total_seconds())
        quarter = next_quarter(quarter)
    return seconds


async def apply_policy(uow: UnitOfWork, terms: PolicyTerms, version: int) -> None:
    """Keep the newest version of a policy and its exposure by quarter (an older version
    arriving late changes nothing)."""
    session = uow.session
    record = await session.get(PolicyRecord, terms.policy_number)
    if record is not None and record.version >= version:
        return
    if record is None:
        record = PolicyRecord(policy_number=terms.policy_number)
        session.add(record)
    record.org_id = terms.org_id
    record.industry = terms.industry.value
    record.region = terms.region
    record.size_band = size_band(terms.employees)
    record.currency = terms.currency
    record.annual_premium = terms.annual_premium
    record.period_start = terms.period_start
    record.period_end = terms.period_end
    record.version = version
    record.changed_in = await count_change(uow)
    await session.execute(delete(Exposure).where(Exposure.policy_number == terms.policy_number))
    session.add_all(Exposure(policy_number=terms.policy_number, quarter=quarter, org_id=terms.org_id,
                             seconds=seconds)
                    for quarter, seconds in quarter_seconds(terms.period_start,
                                                            terms.period_end).items())


async def load_batch(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    """The incident and claim records the events of a batch name, read in one statement each
    (after the version row's lock, as every change): the handlers then find the ones they
    change, or find them missing, without SQL, and the new ones go in at commit, one
    statement per table."""
    await count_change(uow)
    rows = TransactionRows.of(uow.session)
    await rows.load(uow.session, IncidentRecord, ids_in(envelopes, "incident_id"))
    await rows.load(uow.session, ClaimRecord, ids_in(envelopes, "claim_id"))


async def incident(uow: UnitOfWork, incident_id: uuid.UUID, org_id: str) -> IncidentRecord:
    rows = TransactionRows.of(uow.session)
    record = await rows.get(uow.session, IncidentRecord, incident_id)
    if record is None:
        record = IncidentRecord(incident_id=incident_id, org_id=org_id)
        rows.add(uow.session, record, incident_id)
    record.changed_in = await count_change(uow)  # the caller changes it
    return record


def response_completed(record: IncidentRecord, event: IncidentResponseCompleted) -> None:
    """Containment is when the last job contained the incident; the vector is the first
    job's finding (forensics reports it first); BI hours are the vendor-verified outage."""
    findings = sorted(event.findings, key=lambda finding: finding.contained_at)
    if findings:
        record.contained_at = findings[-1].contained_at
        record.attack_vector = findings[0].attack_vector.strip().lower() or None
    if event.verified_outage is not None:
        outage = event.verified_outage
        record.outage_seconds = max(0, int((outage.ended_at - outage.started_at).total_seconds()))


async def claim(uow: UnitOfWork, claim_id: uuid.UUID, incident_id: uuid.UUID,
                org_id: str) -> ClaimRecord:
    rows = TransactionRows.of(uow.session)
    record = await rows.get(uow.session, ClaimRecord, claim_id)
    if record is None:
        record = ClaimRecord(claim_id=claim_id, incident_id=incident_id, org_id=org_id, paid=ZERO)
        rows.add(uow.session, record, claim_id)
    record.changed_in = await count_change(uow)  # the caller changes it
    return record


def move(uow: UnitOfWork, event_id: uuid.UUID, record: ClaimRecord, kind: str,
         amount: Decimal, at: datetime) -> None:
    """Record a dated movement and apply it to the claim's current position, in any order:
    the reserve basis only moves forward in event time (at one instant, to the larger
    amount, as the triangles value it), payments add up, the earliest payment is the first."""
    uow.session.add(ClaimMovement(event_id=event_id, claim_id=record.claim_id, kind=kind,
                                  amount=amount, at=at))
    if kind == MovementKind.reserve:
        if record.reserve_basis_at is None or record.reserve_basis is None \
                or (at, amount) > (record.reserve_basis_at, record.reserve_basis):
            record.reserve_basis, record.reserve_basis_at = amount, at
    elif kind == MovementKind.paid:
        record.paid = record.paid + amount
        if record.first_paid_at is None or at < record.first_paid_at:
            record.first_paid_at = at
    else:
        record.closed_at = at


def case_reserve(reserve_basis: Decimal | None, paid: Decimal, closed: bool) -> Decimal:
    """What is still expected to be paid on a claim: the latest assessed (or approved) payable
    less what has been paid, never below zero; nothing once the claim is closed unpaid."""
    if closed or reserve_basis is None:
        return ZERO
    return max(reserve_basis - paid, ZERO)
