"""Payout's use cases. Each stages its state change and its events in one unit of work.

Locks, always in this order: the claim row, then the policy row, then the payment row. The
claim lock serialises every decision on a claim (racing approvals see each other) and every
input that can lead to its assessment (a loss decided, the response completed, an outage set,
the policy arriving), so that whichever input commits last sees all the others and assesses.
The policy lock serialises every decision drawing on the policy's sublimits and aggregate limit
(two claims of one policy decided at once never both take the same remaining amount).
`_lock_claims` takes the claim lock on both backends (see there).

Money rules (docs/approvals.md): the authority needed to approve, approve in part or deny, and
the number of approvers, follow the claim's payable, never the amount chosen; a loss is
verified at most at what was claimed and only within the adjuster's authority.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute

from services.payout import assessment as engine
from services.payout.assessment import (
    AssessmentInputs,
    AssessmentResult,
    IncidentFacts,
    LossLine,
    LossSource,
    LossState,
    MissingOutage,
    OtherIncident,
    OutOfRange,
    in_range,
)
from services.payout.models import (
    Approval,
    Assessment,
    Claim,
    Commitment,
    Incident,
    IncidentTriage,
    LossItem,
    Payment,
    Policy,
)
from services.payout.schemas import ApproveIn, DenyIn, OutageIn, RejectLossIn, VerifyLossIn
from shared.auth import Principal
from shared.clock import Clock
from shared.db import UnitOfWork, is_postgres
from shared.events import (
    Attribution,
    ClaimApproved,
    ClaimAssessed,
    ClaimClosedWithoutPayment,
    ClaimDenied,
    ClaimOpened,
    ClaimPendingApproval,
    CoverageQuestion,
    Decision,
    Envelope,
    IncidentReported,
    IncidentResponseCompleted,
    IncidentTriaged,
    LossSubmitted,
    PaymentRequested,
    PolicyTerms,
    SectionBreakdown,
)
from shared.money import ZERO
from shared.outbox import Outbox
from shared.problems import Conflict, Forbidden, NotFound, Unprocessable

SYSTEM = "system"
OUTAGE_OUT_OF_RANGE = "the vendors' verified outage is out of range"
"""The start of a claim's `data_issue` that the adjuster's outage figure resolves."""


class ClaimStatus:
    open = "open"
    pending_approval = "pending_approval"
    approved = "approved"
    denied = "denied"
    closed_without_payment = "closed_without_payment"
    paid = "paid"
    payment_failed = "payment_failed"


ASSESSABLE = (ClaimStatus.open, ClaimStatus.pending_approval)
ALL_STATUSES = (ClaimStatus.open, ClaimStatus.pending_approval, ClaimStatus.approved,
                ClaimStatus.denied, ClaimStatus.closed_without_payment, ClaimStatus.paid,
                ClaimStatus.payment_failed)


class PaymentState:
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


@dataclass(frozen=True)
class Rules:
    auto_approval_limit: Decimal
    two_approver_threshold: Decimal
    vendor_verification_limit: Decimal
    """A vendor-verified loss item above this arrives unverified: an adjuster verifies it."""


@dataclass(frozen=True)
class Context:
    """What every use case needs from the running service."""

    outbox: Outbox
    clock: Clock
    rules: Rules


# --- policies and incidents (from events) ---------------------------------------------------------


async def record_policy(uow: UnitOfWork, ctx: Context, terms: PolicyTerms, version: int,
                        cause: Envelope) -> None:
    """Keep the newest version of a policy and assess the claims that were only waiting for it.
    Their rows are locked before the policy's, in the lock order above: an adjuster's decision
    on one of them at the same moment (claim, then policy) would otherwise deadlock."""
    waiting = await _lock_claims(uow, Claim.policy_number == terms.policy_number,
                                 Claim.status == ClaimStatus.open)
    if await _store_policy(uow, ctx, terms, version):
        for claim in waiting:
            await assess_if_ready(uow, ctx, claim, cause)


async def _store_policy(uow: UnitOfWork, ctx: Context, terms: PolicyTerms, version: int) -> bool:
    """Keep the newest version of a policy; returns whether this one was applied."""
    policy = await uow.session.get(Policy, terms.policy_number, with_for_update=True)
    if policy is None:
        uow.session.add(Policy(policy_number=terms.policy_number, org_id=terms.org_id,
                               version=version, terms=terms.model_dump(mode="json"),
                               updated_at=ctx.clock.now()))
        return True
    if version <= policy.version:
        return False
    policy.org_id = terms.org_id
    policy.version = version
    policy.terms = terms.model_dump(mode="json")
    policy.updated_at = ctx.clock.now()
    return True


async def _lock_claims(uow: UnitOfWork, *where: ColumnElement[bool]) -> list[Claim]:
    """The claims matching `where`, locked until commit and read afresh after the lock.

    PostgreSQL: `FOR UPDATE`. SQLite ignores it and runs reads outside any transaction until
    the first write, so a read-then-write would decide on a stale row: there the lock is a
    write to the rows first (taking SQLite's single writer lock), then the read."""
    if not is_postgres(uow.session):
        await uow.session.execute(update(Claim).where(*where).values(updated_at=Claim.updated_at)
                                  .execution_options(synchronize_session=False))
    rows = await uow.session.scalars(
        select(Claim).where(*where).order_by(Claim.opened_at, Claim.id).with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def _claim_for_incident(uow: UnitOfWork, ctx: Context, incident_id: uuid.UUID, org_id: str,
                              policy_number: str, cause: Envelope) -> Claim:
    """The incident's claim (locked), opened on the first event that mentions the incident."""
    existing = await _lock_claims(uow, Claim.incident_id == incident_id)
    if existing:
        return existing[0]
    now = ctx.clock.now()
    claim = Claim(id=uuid.uuid4(), incident_id=incident_id, policy_number=policy_number,
                  org_id=org_id, status=ClaimStatus.open, opened_at=now, updated_at=now)
    uow.session.add(claim)
    ctx.outbox.add(uow.session, ClaimOpened(incident_id=incident_id, org_id=org_id,
                                            claim_id=claim.id, at=now,
                                            policy_number=policy_number), cause=cause)
    await uow.session.flush()
    return claim


async def record_incident(uow: UnitOfWork, ctx: Context, event: IncidentReported,
                          envelope: Envelope) -> None:
    claim = await _claim_for_incident(uow, ctx, event.incident_id, event.org_id,
                                      event.policy_number, envelope)
    if not all(map(in_range, (event.occurred_at, event.discovered_at, event.reported_at))):
        claim.data_issue = ("the incident report's timestamps are out of range: the claim cannot "
                            "be assessed until the report is corrected")
        claim.updated_at = ctx.clock.now()
        return
    if await uow.session.get(Incident, event.incident_id) is None:
        uow.session.add(Incident(
            id=event.incident_id, policy_number=event.policy_number, org_id=event.org_id,
            category=event.category.value, occurred_at=event.occurred_at,
            discovered_at=event.discovered_at, reported_at=event.reported_at,
            title=event.title, description=event.description,
        ))
        await uow.session.flush()
    await assess_if_ready(uow, ctx, claim, envelope)


async def record_submitted_loss(uow: UnitOfWork, ctx: Context, event: LossSubmitted,
                                envelope: Envelope) -> None:
    claim = await _claim_for_incident(uow, ctx, event.incident_id, event.org_id,
                                      event.policy_number, envelope)
    if await uow.session.get(LossItem, event.loss_id) is not None:
        return
    uow.session.add(LossItem(
        id=event.loss_id, claim_id=claim.id, source=LossSource.policyholder,
        state=LossState.unverified, section=event.section.value, amount=event.amount,
        hourly_loss=event.hourly_loss, description=event.description,
        submitted_at=event.submitted_at,
    ))
    claim.updated_at = ctx.clock.now()


async def record_response(uow: UnitOfWork, ctx: Context, event: IncidentResponseCompleted,
                          envelope: Envelope) -> None:
    """The vendors' findings: attribution, verified outage and loss items. A vendor's item is
    verified up to `Rules.vendor_verification_limit`; above it an adjuster verifies it."""
    claim = await _claim_for_incident(uow, ctx, event.incident_id, event.org_id,
                                      event.policy_number, envelope)
    if claim.response_completed_at is not None:
        return  # the response completes once; a second report (replay) changes nothing
    claim.response_completed_at = event.completed_at
    claim.attribution = event.attribution.value
    claim.findings = [finding.model_dump(mode="json") for finding in event.findings]
    outage = event.verified_outage
    if outage is not None and in_range(outage.started_at) and in_range(outage.ended_at):
        claim.outage_started_at = outage.started_at
        claim.outage_ended_at = outage.ended_at
    elif outage is not None:
        claim.data_issue = (f"{OUTAGE_OUT_OF_RANGE} ({outage.started_at.isoformat()} to "
                            f"{outage.ended_at.isoformat()}): set the outage hours")
    for index, loss in enumerate(event.verified_losses):
        loss_id = uuid.uuid5(claim.incident_id, f"{loss.job_id}/{index}")
        if await uow.session.get(LossItem, loss_id) is not None:
            continue
        self_verified = loss.amount <= ctx.rules.vendor_verification_limit
        uow.session.add(LossItem(
            id=loss_id, claim_id=claim.id, source=LossSource.vendor,
            state=LossState.verified if self_verified else LossState.unverified,
            section=loss.section.value, amount=loss.amount, description=loss.description,
            vendor_id=loss.vendor_id, submitted_at=event.completed_at,
        ))
    claim.updated_at = ctx.clock.now()
    await uow.session.flush()
    await assess_if_ready(uow, ctx, claim, envelope)


async def record_triage(uow: UnitOfWork, event: IncidentTriaged) -> None:
    """Keep triage's latest grading of the incident for the adjuster (a replay or an older
    grading changes nothing)."""
    row = await uow.session.get(IncidentTriage, event.incident_id, with_for_update=True)
    if row is None:
        uow.session.add(IncidentTriage(
            incident_id=event.incident_id, priority=event.priority.value,
            regulatory_grade=event.regulatory_grade.value,
            regulatory_deadline=event.regulatory_deadline, triaged_at=event.triaged_at))
    elif event.triaged_at > row.triaged_at:
        row.priority = event.priority.value
        row.regulatory_grade = event.regulatory_grade.value
        row.regulatory_deadline = event.regulatory_deadline
        row.triaged_at = event.triaged_at


# --- assessment -----------------------------------------------------------------------------------


async def _losses(uow: UnitOfWork, claim: Claim) -> list[LossItem]:
    rows = await uow.session.scalars(
        select(LossItem).where(LossItem.claim_id == claim.id)
        .order_by(LossItem.submitted_at, LossItem.id)
    )
    return list(rows)


def outage_minutes(claim: Claim) -> tuple[int, str] | None:
    """(minutes, source): the vendor-verified outage wins over the adjuster's figure."""
    if claim.outage_started_at is not None and claim.outage_ended_at is not None:
        return engine.outage_minutes(claim.outage_started_at, claim.outage_ended_at), "vendor"
    if claim.adjuster_outage_minutes is not None:
        return claim.adjuster_outage_minutes, "adjuster"
    return None


async def _paid_on_policy(uow: UnitOfWork, policy_number: str, excluding: uuid.UUID
                          ) -> tuple[dict[engine.Section, Decimal], Decimal]:
    rows = await uow.session.execute(
        select(Commitment.section, Commitment.amount)
        .where(Commitment.policy_number == policy_number, Commitment.claim_id != excluding)
    )
    return engine.paid_from((section, amount) for section, amount in rows.all())


async def _inputs(uow: UnitOfWork, claim: Claim, policy: Policy, incident: Incident
                  ) -> AssessmentInputs:
    others = await uow.session.scalars(
        select(Incident).where(Incident.policy_number == policy.policy_number,
                               Incident.category == incident.category, Incident.id != incident.id)
    )
    paid_by_section, paid_total = await _paid_on_policy(uow, policy.policy_number, claim.id)
    outage = outage_minutes(claim)
    return AssessmentInputs(
        policy=PolicyTerms.model_validate(policy.terms),
        incident=IncidentFacts(category=incident.category, occurred_at=incident.occurred_at,
                               discovered_at=incident.discovered_at,
                               reported_at=incident.reported_at),
        attribution=Attribution(claim.attribution) if claim.attribution else None,
        losses=[LossLine(id=item.id, section=item.section, source=item.source, state=item.state,
                         amount=item.amount, hourly_loss=item.hourly_loss,
                         verified_amount=item.verified_amount)
                for item in await _losses(uow, claim)],
        outage_minutes=outage[0] if outage else None,
        paid_by_section=paid_by_section,
        paid_total=paid_total,
        other_incidents=[OtherIncident(incident_id=other.id, category=other.category,
                                       occurred_at=other.occurred_at) for other in others],
    )


async def assess_if_ready(uow: UnitOfWork, ctx: Context, claim: Claim, cause: Envelope | None,
                          requested_by: str = SYSTEM) -> Assessment | None:
    """Assess once the response is complete and no loss item awaits verification."""
    if claim.status not in ASSESSABLE or claim.response_completed_at is None:
        return None
    if any(item.state == LossState.unverified for item in await _losses(uow, claim)):
        return None
    try:
        return await _assess(uow, ctx, claim, cause, requested_by)
    except (_NotReady, MissingOutage):
        return None  # waits for the policy, the incident report or the outage figure
    except OutOfRange as exc:
        claim.data_issue = str(exc)  # shown to the adjuster; the claim waits for a fix
        return None


class _NotReady(Exception):
    pass


async def _assess(uow: UnitOfWork, ctx: Context, claim: Claim, cause: Envelope | None,
                  requested_by: str) -> Assessment:
    incident = await uow.session.get(Incident, claim.incident_id)
    if incident is None:
        raise _NotReady("the incident report has not arrived yet")
    policy = await uow.session.get(Policy, claim.policy_number, with_for_update=True)
    if policy is None:
        raise _NotReady(f"policy {claim.policy_number} has not arrived yet")
    inputs = await _inputs(uow, claim, policy, incident)
    result = engine.assess(inputs)
    decision = engine.decide(result, ctx.rules.auto_approval_limit)
    now = ctx.clock.now()
    row = Assessment(
        id=uuid.uuid4(), claim_id=claim.id, at=now, requested_by=requested_by,
        inputs=inputs.model_dump(mode="json"),
        sections=[line.model_dump(mode="json") for line in result.sections],
        coverage_questions=[q.value for q in result.coverage_questions],
        payable=result.payable, decision=decision.value,
    )
    uow.session.add(row)
    claim.latest_assessment_id = row.id
    claim.payable = result.payable
    claim.data_issue = None
    claim.updated_at = now
    ctx.outbox.add(uow.session, ClaimAssessed(
        incident_id=claim.incident_id, org_id=claim.org_id, claim_id=claim.id, at=now,
        assessment_id=row.id, payable=result.payable, sections=result.sections,
        coverage_questions=result.coverage_questions, decision=decision,
    ), cause=cause)
    if decision is Decision.closed_without_payment:
        _close(claim, now, SYSTEM, "nothing is payable under the policy terms")
        ctx.outbox.add(uow.session, ClaimClosedWithoutPayment(
            incident_id=claim.incident_id, org_id=claim.org_id, claim_id=claim.id, at=now,
            reason=claim.decision_reason or ""), cause=cause)
    elif decision is Decision.approved:
        await _approve(uow, ctx, claim, policy, result.sections, result.payable, approvers=[],
                       reason=None, cause=cause)
    else:
        claim.status = ClaimStatus.pending_approval
        ctx.outbox.add(uow.session, ClaimPendingApproval(
            incident_id=claim.incident_id, org_id=claim.org_id, claim_id=claim.id, at=now,
            payable=result.payable, coverage_questions=result.coverage_questions,
            approvals_required=engine.approvals_required(result.payable,
                                                         ctx.rules.two_approver_threshold),
        ), cause=cause)
    await uow.session.flush()
    return row


def _close(claim: Claim, now: datetime, by: str, reason: str,
           status: str = ClaimStatus.closed_without_payment) -> None:
    claim.status = status
    claim.decision_reason = reason
    claim.decided_by = by
    claim.decided_at = now
    claim.updated_at = now


async def _approve(uow: UnitOfWork, ctx: Context, claim: Claim, policy: Policy,
                   sections: list[SectionBreakdown], amount: Decimal, *, approvers: list[str],
                   reason: str | None, cause: Envelope | None) -> Payment:
    """Approve `amount`: draw it from the policy's ledger and request exactly one payment."""
    now = ctx.clock.now()
    for section, drawn in engine.allocate(amount, sections).items():
        uow.session.add(Commitment(claim_id=claim.id, section=section.value,
                                   policy_number=policy.policy_number, amount=drawn, at=now))
    currency = PolicyTerms.model_validate(policy.terms).currency
    payment = Payment(id=uuid.uuid4(), claim_id=claim.id, amount=amount, currency=currency,
                      state=PaymentState.pending, attempts=0, next_attempt_at=now, created_at=now)
    uow.session.add(payment)
    claim.approved_amount = amount
    _close(claim, now, ", ".join(approvers) or SYSTEM, reason or "approved",
           status=ClaimStatus.approved)
    ids = {"incident_id": claim.incident_id, "org_id": claim.org_id, "claim_id": claim.id, "at": now}
    ctx.outbox.add(uow.session, ClaimApproved(**ids, amount=amount, approvers=approvers,
                                              automatic=not approvers, reason=reason), cause=cause)
    ctx.outbox.add(uow.session, PaymentRequested(**ids, payment_id=payment.id, amount=amount,
                                                 currency=currency), cause=cause)
    return payment


# --- adjusters ------------------------------------------------------------------------------------


async def locked_claim(uow: UnitOfWork, claim_id: uuid.UUID) -> Claim:
    claims = await _lock_claims(uow, Claim.id == claim_id)
    if not claims:
        raise NotFound(f"claim {claim_id} not found")
    return claims[0]


def _adjuster(principal: Principal) -> str:
    return f"adjuster:{principal.sub}"


def authority_limit(principal: Principal) -> Decimal | None:
    """The most an adjuster may decide on; None for a caller with no authority. The one place
    payout learns it (today the token's claim), so where it comes from can change here alone."""
    return principal.authority_limit


def _within_authority(principal: Principal, amount: Decimal, what: str) -> None:
    limit = authority_limit(principal)
    if limit is None or limit < amount:
        raise Forbidden(f"{what} {amount} exceeds your authority limit")


async def assess_claim(uow: UnitOfWork, ctx: Context, principal: Principal,
                       claim_id: uuid.UUID) -> Claim:
    """An adjuster asks for an assessment now (unverified items simply do not count)."""
    claim = await locked_claim(uow, claim_id)
    if claim.status not in ASSESSABLE:
        raise Conflict(f"claim is {claim.status}; only open or pending claims are assessed")
    try:
        await _assess(uow, ctx, claim, None, _adjuster(principal))
    except _NotReady as exc:
        raise Conflict(str(exc)) from exc
    except MissingOutage as exc:
        raise Conflict(f"{exc}: set the outage hours first", field="outage_hours") from exc
    except OutOfRange as exc:
        raise Conflict(str(exc)) from exc
    await uow.commit()
    return claim


async def _open_loss(uow: UnitOfWork, claim: Claim, loss_id: uuid.UUID) -> LossItem:
    item = await uow.session.get(LossItem, loss_id, with_for_update=True)
    if item is None or item.claim_id != claim.id:
        raise NotFound(f"loss item {loss_id} not found")
    if claim.status not in ASSESSABLE:
        raise Conflict(f"claim is {claim.status}; its losses can no longer change")
    if item.state != LossState.unverified:
        raise Conflict(f"loss item is already {item.state}")
    return item


async def _waiting_hours(uow: UnitOfWork, claim: Claim) -> int:
    """The policy's business-interruption waiting period; 0 while the policy is not known (the
    claimed figure is then the plain `hourly_loss x outage hours`)."""
    policy = await uow.session.get(Policy, claim.policy_number)
    return PolicyTerms.model_validate(policy.terms).bi_waiting_period_hours if policy else 0


async def _claimed(uow: UnitOfWork, claim: Claim, item: LossItem) -> Decimal | None:
    """What the item claims: its amount, or for business interruption `hourly_loss x
    max(0, outage hours - waiting period)`; None while no outage figure is known."""
    if item.hourly_loss is None:
        return item.amount or ZERO
    outage = outage_minutes(claim)
    if outage is None:
        return None
    return engine.interruption_amount(item.hourly_loss, outage[0], await _waiting_hours(uow, claim))


async def verify_loss(uow: UnitOfWork, ctx: Context, principal: Principal, claim_id: uuid.UUID,
                      loss_id: uuid.UUID, body: VerifyLossIn) -> Claim:
    """Verify at most at the claimed figure, within the adjuster's authority. A per-hour item
    without an outage figure can only be verified as claimed (its worth follows the outage,
    and setting the outage is checked against the adjuster's authority)."""
    claim = await locked_claim(uow, claim_id)
    item = await _open_loss(uow, claim, loss_id)
    claimed = await _claimed(uow, claim, item)
    if body.amount is not None and claimed is None:
        raise Conflict("no outage is known, so neither is what this per-hour item claims: set "
                       "the outage hours first, or verify it without an amount",
                       field="outage_hours")
    if body.amount is not None and claimed is not None and body.amount > claimed:
        raise Unprocessable(f"a loss may be verified at most at what was claimed ({claimed})",
                            field="amount")
    worth = body.amount if body.amount is not None else claimed
    if worth is not None:
        _within_authority(principal, worth, "verifying a loss of")
    item.verified_amount = body.amount
    return await _decide_loss(uow, ctx, principal, claim, item, LossState.verified, body.note)


async def reject_loss(uow: UnitOfWork, ctx: Context, principal: Principal, claim_id: uuid.UUID,
                      loss_id: uuid.UUID, body: RejectLossIn) -> Claim:
    claim = await locked_claim(uow, claim_id)
    item = await _open_loss(uow, claim, loss_id)
    return await _decide_loss(uow, ctx, principal, claim, item, LossState.rejected, body.reason)


async def _decide_loss(uow: UnitOfWork, ctx: Context, principal: Principal, claim: Claim,
                       item: LossItem, state: str, note: str) -> Claim:
    """Record an adjuster's verdict on a loss item, then assess the claim if it is now ready."""
    now = ctx.clock.now()
    item.state = state
    item.note = note
    item.decided_by = _adjuster(principal)
    item.decided_at = now
    claim.updated_at = now
    await uow.session.flush()
    await assess_if_ready(uow, ctx, claim, None, _adjuster(principal))
    await uow.commit()
    return claim


async def set_outage(uow: UnitOfWork, ctx: Context, principal: Principal, claim_id: uuid.UUID,
                     body: OutageIn) -> Claim:
    claim = await locked_claim(uow, claim_id)
    if claim.status not in ASSESSABLE:
        raise Conflict(f"claim is {claim.status}; its outage can no longer change")
    if claim.outage_started_at is not None:
        raise Conflict("a vendor verified the outage; it is not overridden", field="outage_hours")
    minutes = int(body.outage_hours * 60)
    waiting = await _waiting_hours(uow, claim)
    worth = sum((engine.interruption_amount(item.hourly_loss, minutes, waiting)
                 for item in await _losses(uow, claim)
                 if item.hourly_loss is not None and item.state == LossState.verified
                 and item.verified_amount is None), ZERO)
    _within_authority(principal, worth, "this outage makes the verified per-hour losses worth")
    claim.adjuster_outage_minutes = minutes
    claim.adjuster_outage_note = body.note
    if claim.data_issue is not None and claim.data_issue.startswith(OUTAGE_OUT_OF_RANGE):
        claim.data_issue = None
    claim.updated_at = ctx.clock.now()
    await uow.session.flush()
    await assess_if_ready(uow, ctx, claim, None, _adjuster(principal))
    await uow.commit()
    return claim


async def latest_assessment(uow: UnitOfWork, claim: Claim) -> Assessment | None:
    if claim.latest_assessment_id is None:
        return None
    return await uow.session.get(Assessment, claim.latest_assessment_id)


async def approvals_of(uow: UnitOfWork, assessment_id: uuid.UUID) -> list[Approval]:
    rows = await uow.session.scalars(
        select(Approval).where(Approval.assessment_id == assessment_id).order_by(Approval.id)
    )
    return list(rows)


async def approve(uow: UnitOfWork, ctx: Context, principal: Principal, claim_id: uuid.UUID,
                  body: ApproveIn) -> tuple[Claim, bool]:
    """Approve the latest assessment; returns (claim, whether a payment was requested).

    The payable decides the authority needed and the number of approvers, whatever amount is
    approved: approving less is a decision on the whole payable, and the rest is closed with
    the reason on the claim. Above the two-approver threshold the first approval is recorded
    and the second, by a different adjuster for the same amount, completes it. The claim row
    lock makes racing approvals run one after another; the unique constraints on approvals and
    payments are the last line (a conflict there is a 409).
    """
    claim = await locked_claim(uow, claim_id)
    if claim.status != ClaimStatus.pending_approval:
        raise Conflict(f"claim is {claim.status}, not pending approval")
    current = await latest_assessment(uow, claim)
    assert current is not None, "a pending claim has an assessment"
    amount = body.amount if body.amount is not None else current.payable
    if amount <= ZERO:
        raise Unprocessable("nothing to approve: deny the claim instead", field="amount")
    if amount > current.payable:
        raise Unprocessable(f"amount exceeds the payable {current.payable}", field="amount")
    if amount < current.payable and not body.reason:
        raise Unprocessable("approving less than payable needs a reason", field="reason")
    _within_authority(principal, current.payable, "deciding on a claim whose payable is")
    adjuster = _adjuster(principal)
    earlier = await approvals_of(uow, current.id)
    if any(a.adjuster == adjuster for a in earlier):
        raise Conflict("you already approved this claim; a second adjuster must approve")
    if any(a.amount != amount for a in earlier):
        raise Conflict(f"the first approval was for {earlier[0].amount}; approve the same amount "
                       "or deny", field="amount")
    now = ctx.clock.now()
    required = engine.approvals_required(current.payable, ctx.rules.two_approver_threshold)
    paying = len(earlier) + 1 >= required
    try:
        uow.session.add(Approval(claim_id=claim.id, assessment_id=current.id, adjuster=adjuster,
                                 amount=amount, reason=body.reason, at=now))
        claim.updated_at = now
        if paying:
            policy = await uow.session.get(Policy, claim.policy_number, with_for_update=True)
            assert policy is not None, "an assessed claim has its policy"
            fresh = await _reassess_limits(uow, claim, current)
            if amount > fresh.payable:
                raise Conflict(f"another claim of policy {claim.policy_number} drew on its limits "
                               f"since this assessment: payable is now {fresh.payable}; re-assess")
            reason = body.reason if amount == current.payable else (
                f"approved {amount} of the payable {current.payable}; the remaining "
                f"{current.payable - amount} is closed: {body.reason}")
            await _approve(uow, ctx, claim, policy, fresh.sections, amount,
                           approvers=[*(a.adjuster for a in earlier), adjuster], reason=reason,
                           cause=None)
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict("a concurrent decision on this claim won; reload it") from exc
    return claim, paying


async def _reassess_limits(uow: UnitOfWork, claim: Claim, current: Assessment) -> AssessmentResult:
    """The stored assessment recomputed against the policy's ledger as it is now."""
    inputs = AssessmentInputs.model_validate(current.inputs)
    paid_by_section, paid_total = await _paid_on_policy(uow, claim.policy_number, claim.id)
    return engine.assess(inputs.model_copy(update={"paid_by_section": paid_by_section,
                                                   "paid_total": paid_total}))


async def deny(uow: UnitOfWork, ctx: Context, principal: Principal, claim_id: uuid.UUID,
               body: DenyIn) -> Claim:
    """Deny within authority: the adjuster's limit must cover what the claim would pay."""
    claim = await locked_claim(uow, claim_id)
    if claim.status != ClaimStatus.pending_approval:
        raise Conflict(f"claim is {claim.status}, not pending approval")
    _within_authority(principal, claim.payable or ZERO, "denying a claim whose payable is")
    now = ctx.clock.now()
    _close(claim, now, _adjuster(principal), body.reason, status=ClaimStatus.denied)
    ctx.outbox.add(uow.session, ClaimDenied(incident_id=claim.incident_id, org_id=claim.org_id,
                                            claim_id=claim.id, at=now,
                                            adjuster=_adjuster(principal), reason=body.reason))
    await uow.commit()
    return claim


# --- reading --------------------------------------------------------------------------------------


async def list_claims(uow: UnitOfWork, *, status: str | None, limit: int, offset: int
                      ) -> tuple[list[Claim], int]:
    query = select(Claim)
    if status is not None:
        query = query.where(Claim.status == status)
    total = await uow.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await uow.session.scalars(
        query.order_by(Claim.opened_at, Claim.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def claim_by_id(uow: UnitOfWork, claim_id: uuid.UUID) -> Claim:
    claim = await uow.session.get(Claim, claim_id)
    if claim is None:
        raise NotFound(f"claim {claim_id} not found")
    return claim


async def claim_of_incident(uow: UnitOfWork, incident_id: uuid.UUID) -> Claim:
    claim = await uow.session.scalar(select(Claim).where(Claim.incident_id == incident_id))
    if claim is None:
        raise NotFound(f"no claim for incident {incident_id}")
    return claim


async def losses_of(uow: UnitOfWork, claim: Claim) -> list[LossItem]:
    return await _losses(uow, claim)


async def payment_of(uow: UnitOfWork, claim: Claim) -> Payment | None:
    return await uow.session.scalar(select(Payment).where(Payment.claim_id == claim.id))


async def assessments_of(uow: UnitOfWork, claim: Claim) -> list[Assessment]:
    rows = await uow.session.scalars(
        select(Assessment).where(Assessment.claim_id == claim.id).order_by(Assessment.at)
    )
    return list(rows)


# --- the adjuster's queues and claim file (the console) -------------------------------------------

DECIDED = (ClaimStatus.approved, ClaimStatus.denied, ClaimStatus.closed_without_payment,
           ClaimStatus.paid, ClaimStatus.payment_failed)


@dataclass(frozen=True)
class QueueRow:
    claim: Claim
    holder_name: str | None
    mine: bool
    """Approval queue: the caller can approve it now (within authority, not yet approved by
    them); the rows that are mine come first."""
    needs: list[str]
    """Verification queue: what the claim waits for (`verify_losses`, `set_outage`,
    `data_issue`)."""


@dataclass(frozen=True)
class _Needs:
    """What an open claim waits for from an adjuster before it can be assessed."""

    losses: ColumnElement[bool]
    """a loss item to verify or reject"""
    outage: ColumnElement[bool]
    """a per-hour loss and no outage figure"""

    @classmethod
    def of_claim(cls) -> _Needs:
        unverified = select(LossItem.id).where(LossItem.claim_id == Claim.id,
                                               LossItem.state == LossState.unverified).exists()
        per_hour = select(LossItem.id).where(LossItem.claim_id == Claim.id,
                                             LossItem.hourly_loss.is_not(None),
                                             LossItem.state != LossState.rejected).exists()
        return cls(losses=unverified,
                   outage=and_(per_hour, Claim.outage_started_at.is_(None),
                               Claim.adjuster_outage_minutes.is_(None)))

    def anything(self) -> ColumnElement[bool]:
        return and_(Claim.status == ClaimStatus.open,
                    or_(self.losses, self.outage, Claim.data_issue.is_not(None)))


def _matching(search: str) -> ColumnElement[bool]:
    """An incident id (whole), or part of a policy number, policyholder org id or name."""
    try:
        return Claim.incident_id == uuid.UUID(search)
    except ValueError:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return or_(Claim.policy_number.ilike(pattern, escape="\\"),
                   Claim.org_id.ilike(pattern, escape="\\"),
                   Policy.terms["holder_name"].as_string().ilike(pattern, escape="\\"))


async def queue(uow: UnitOfWork, principal: Principal, name: str, *, search: str | None,
                limit: int, offset: int) -> tuple[list[QueueRow], int]:
    """One of the adjuster's queues: `verification` (oldest first), `approval` (the caller's
    own first, then oldest) or `decided` (latest decision first)."""
    ceiling = authority_limit(principal)
    needs = _Needs.of_claim()
    approved_by_me = select(Approval.id).where(
        Approval.assessment_id == Claim.latest_assessment_id,
        Approval.adjuster == _adjuster(principal)).exists()
    mine = (and_(Claim.payable <= ceiling, ~approved_by_me) if ceiling is not None
            else literal(False))
    where: list[ColumnElement[bool]]
    order: list[ColumnElement[Any] | InstrumentedAttribute[Any]]
    if name == "verification":
        where, order = [needs.anything()], [Claim.opened_at, Claim.id]
    elif name == "approval":
        where = [Claim.status == ClaimStatus.pending_approval]
        order = [case((mine, 0), else_=1), Claim.opened_at, Claim.id]
    else:
        where, order = [Claim.status.in_(DECIDED)], [Claim.decided_at.desc(), Claim.id]
    if search:
        where.append(_matching(search))
    base = select(Claim).outerjoin(Policy, Policy.policy_number == Claim.policy_number).where(*where)
    total = await uow.session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = await uow.session.execute(
        base.with_only_columns(Claim, Policy.terms["holder_name"].as_string(), mine,
                               needs.losses, needs.outage)
        .order_by(*order).limit(limit).offset(offset))
    return [QueueRow(claim, holder, bool(own) and name == "approval",
                     needs=[need for need, waiting in (("verify_losses", losses),
                                                       ("set_outage", outage),
                                                       ("data_issue", claim.data_issue))
                            if waiting and claim.status == ClaimStatus.open])
            for claim, holder, own, losses, outage in rows.all()], total


@dataclass(frozen=True)
class ClaimFile:
    """What an adjuster decides from beyond the claim itself."""

    policy: PolicyTerms | None
    incident: Incident | None
    triage: IncidentTriage | None


async def claim_file(uow: UnitOfWork, claim: Claim) -> ClaimFile:
    policy = await uow.session.get(Policy, claim.policy_number)
    return ClaimFile(
        policy=PolicyTerms.model_validate(policy.terms) if policy is not None else None,
        incident=await uow.session.get(Incident, claim.incident_id),
        triage=await uow.session.get(IncidentTriage, claim.incident_id),
    )


def explain(question: CoverageQuestion, policy: PolicyTerms | None, incident: Incident | None
            ) -> str:
    """Why the rulebook (section 7) raised `question` on this claim, in plain words."""
    if policy is None or incident is None:
        return _QUESTIONS[question]
    occurred = _day(incident.occurred_at)
    facts = {
        CoverageQuestion.OUTSIDE_POLICY_PERIOD:
            f"the incident occurred on {occurred}, outside the policy period "
            f"{_day(policy.period_start)} to {_day(policy.period_end)}",
        CoverageQuestion.BEFORE_RETROACTIVE_DATE:
            f"the incident occurred on {occurred}, before the retroactive date "
            f"{_day(policy.retroactive_date)}" if policy.retroactive_date else "",
        CoverageQuestion.LATE_NOTICE:
            f"it was reported {(incident.reported_at - incident.discovered_at) / timedelta(hours=1):.1f} "
            f"hours after discovery; the policy asks for notice within "
            f"{policy.notice_period_hours} hours",
        CoverageQuestion.EARLY_CLAIM:
            f"the incident occurred on {occurred}, the policy started on "
            f"{_day(policy.period_start)}",
    }
    detail = facts.get(question)
    return f"{_QUESTIONS[question]} Here: {detail}." if detail else _QUESTIONS[question]


def _day(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d} (UTC)"


_QUESTIONS = {
    CoverageQuestion.OUTSIDE_POLICY_PERIOD:
        "The incident did not occur while the policy was in force.",
    CoverageQuestion.BEFORE_RETROACTIVE_DATE:
        "The incident occurred before the policy's retroactive date, so earlier events are not "
        "covered.",
    CoverageQuestion.LATE_NOTICE:
        "The policyholder reported the incident later after discovering it than the policy's "
        "notice period allows.",
    CoverageQuestion.SECTION_NOT_COVERED:
        "A loss item is in a section this policy does not include; that item pays nothing.",
    CoverageQuestion.WAR_EXCLUSION:
        "The vendors attributed the attack to a state actor and the policy excludes war and "
        "state-sponsored attacks.",
    CoverageQuestion.EARLY_CLAIM:
        f"The incident occurred within {engine.EARLY_CLAIM_WINDOW.days} days of the policy's "
        "start: check it was not known before the policy was bought.",
    CoverageQuestion.REPEAT_INCIDENT:
        f"Another incident of the same kind on this policy occurred within "
        f"{engine.REPEAT_INCIDENT_WINDOW.days} days: check they are not one event claimed twice.",
}
