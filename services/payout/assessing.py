"""Assessing a claim: gathering its inputs (losses, outage, limits already paid, remediation)
for the pure engine in `assessment`, storing the result, and re-assessing on request."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from services.payout import assessment as engine
from services.payout.adjusters import active_authority
from services.payout.assessment import (
    AssessmentInputs,
    AssessmentResult,
    IncidentFacts,
    LossLine,
    LossState,
    MissingOutage,
    OtherIncident,
    OutOfRange,
    RemediationFact,
)
from services.payout.context import (
    ASSESSABLE,
    SYSTEM,
    ClaimStatus,
    Context,
    PaymentState,
    _adjuster,
    _lock_claims,
    locked_claim,
)
from services.payout.models import (
    Assessment,
    Claim,
    Commitment,
    Incident,
    LossItem,
    Payment,
    Policy,
    RemediationItem,
)
from shared.auth import Principal
from shared.controls import Control
from shared.db import UnitOfWork
from shared.events import (
    Attribution,
    ClaimApproved,
    ClaimAssessed,
    ClaimClosedWithoutPayment,
    ClaimPendingApproval,
    CoverageQuestion,
    Decision,
    Envelope,
    PaymentRequested,
    PolicyTerms,
    SectionBreakdown,
)
from shared.events import RemediationItem as RemediationItemEvent
from shared.problems import Conflict

log = logging.getLogger(__name__)


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


async def waiting_hours(uow: UnitOfWork, claim: Claim) -> int:
    """The policy's business-interruption waiting period; 0 while the policy is not known (the
    claimed figure is then the plain `hourly_loss x outage hours`)."""
    policy = await uow.session.get(Policy, claim.policy_number)
    return PolicyTerms.model_validate(policy.terms).bi_waiting_period_hours if policy else 0


def following_the_outage(items: Iterable[LossItem]) -> list[tuple[LossItem, Decimal]]:
    """The per-hour items verified as claimed, with their hourly loss: their worth is whatever
    the outage makes it."""
    return [(item, item.hourly_loss) for item in items if item.state == LossState.verified
            and item.hourly_loss is not None and item.verified_amount is None]


async def reopen_beyond_authority(uow: UnitOfWork, ctx: Context, claim: Claim,
                                  losses: list[LossItem]) -> list[LossItem]:
    """Send back for verification each per-hour item verified as claimed that the outage and
    waiting period as they are now make worth more than the authority it was accepted within
    (a vendor's outage arriving after the adjuster's figure, a shorter waiting period): its
    worth is a number nobody with enough authority has looked at. Returns the items sent back."""
    outage = outage_minutes(claim)
    following = following_the_outage(losses)
    if outage is None or not following:
        return []
    waiting = await waiting_hours(uow, claim)
    now = ctx.clock.now()
    reopened = []
    for item, hourly_loss in following:
        worth = engine.interruption_amount(hourly_loss, outage[0], waiting)
        if item.verified_within is not None and worth <= item.verified_within:
            continue
        record_verdict(item, LossState.unverified, by=SYSTEM, at=now, note=(
            f"the {outage[1]}'s outage makes it worth {worth}, beyond the authority it was "
            f"verified within ({item.verified_within}): verify it again"))
        item.verified_within = None
        reopened.append(item)
        log.warning("loss %s of claim %s is worth %s now, beyond the authority it was verified "
                    "within: back to verification", item.id, claim.id, worth)
    return reopened


async def _paid_on_policy(uow: UnitOfWork, policy_number: str, excluding: uuid.UUID
                          ) -> tuple[dict[engine.Section, Decimal], Decimal]:
    rows = await uow.session.execute(
        select(Commitment.section, Commitment.amount)
        .where(Commitment.policy_number == policy_number, Commitment.claim_id != excluding)
    )
    return engine.paid_from((section, amount) for section, amount in rows.all())


async def _inputs(uow: UnitOfWork, claim: Claim, policy: Policy, incident: Incident,
                  losses: list[LossItem]) -> AssessmentInputs:
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
                for item in losses],
        outage_minutes=outage[0] if outage else None,
        paid_by_section=paid_by_section,
        paid_total=paid_total,
        other_incidents=[OtherIncident(incident_id=other.id, category=other.category,
                                       occurred_at=other.occurred_at) for other in others],
        attack_vectors=claim.attack_vectors or [],
        remediation=await _remediation_of(uow, policy.policy_number),
    )


async def _remediation_of(uow: UnitOfWork, policy_number: str) -> list[RemediationFact]:
    rows = await uow.session.scalars(
        select(RemediationItem).where(RemediationItem.policy_number == policy_number)
        .order_by(RemediationItem.due_at, RemediationItem.item_id))
    return [RemediationFact(control=row.control, due_at=row.due_at, done_at=row.done_at,
                            superseded_at=row.superseded_at) for row in rows]


async def record_remediation(uow: UnitOfWork, ctx: Context, policy_number: str,
                             items: list[RemediationItemEvent], cause: Envelope) -> None:
    """Keep the policy's remediation items (done and superseded only ever set once), then make
    every claim of the policy agree with them, whichever arrived first (docs/risk.md): an open
    claim that is ready is assessed; a claim assessed already whose REMEDIATION_OVERDUE answer
    they change is assessed again while undecided, and noted for the adjuster once decided.

    Locks in the order a response takes them (its claims, then the policy, before an
    assessment reads the items), so the two never deadlock: a claim assessed at the same time
    either sees these items, or is decided first and is then found here."""
    claims = await _lock_claims(uow, Claim.policy_number == policy_number)
    await uow.session.get(Policy, policy_number, with_for_update=True)
    now = ctx.clock.now()
    for item in items:
        row = await uow.session.get(RemediationItem, item.item_id, with_for_update=True)
        if row is None:
            uow.session.add(RemediationItem(
                item_id=item.item_id, policy_number=policy_number, control=item.control.value,
                due_at=item.due_at, done_at=item.done_at, superseded_at=item.superseded_at,
                updated_at=now))
            continue
        if row.done_at is None and item.done_at is not None:
            row.done_at, row.updated_at = item.done_at, now
        if row.superseded_at is None and item.superseded_at is not None:
            row.superseded_at, row.updated_at = item.superseded_at, now
    await uow.session.flush()
    remediation = await _remediation_of(uow, policy_number)
    for claim in claims:
        if claim.status == ClaimStatus.open:
            await assess_if_ready(uow, ctx, claim, cause)
            continue
        current = await uow.session.get(Assessment, claim.latest_assessment_id) \
            if claim.latest_assessment_id is not None else None
        if current is None:
            continue
        inputs = AssessmentInputs.model_validate(current.inputs)
        overdue = engine.overdue_guarding_controls(
            inputs.model_copy(update={"remediation": remediation}))
        if bool(overdue) == (CoverageQuestion.REMEDIATION_OVERDUE in current.coverage_questions):
            continue
        if claim.status in ASSESSABLE:
            await assess_if_ready(uow, ctx, claim, cause)
        else:
            claim.remediation_note = _late_remediation_note(claim.status, overdue, now)
            claim.updated_at = now
            log.warning("claim %s was %s before risk's news changed REMEDIATION_OVERDUE: noted "
                        "for the adjuster", claim.id, claim.status)


def _late_remediation_note(status: str, overdue: set[Control], at: datetime) -> str:
    if overdue:
        return (f"REMEDIATION_OVERDUE: risk's news of {at.isoformat()} shows the remediation of "
                f"{', '.join(sorted(overdue))} overdue when the incident occurred; the claim was "
                f"already {status} without this question. Review the decision.")
    return (f"REMEDIATION_OVERDUE: risk's news of {at.isoformat()} shows no remediation guarding "
            f"the attack vectors overdue when the incident occurred; the claim was already "
            f"{status} with this question asked. Review the decision.")


def unverified(items: Iterable[LossItem]) -> list[LossItem]:
    """The loss items that still await an adjuster's verdict."""
    return [item for item in items if item.state == LossState.unverified]


def record_verdict(item: LossItem, state: str, *, by: str, at: datetime, note: str) -> None:
    """A loss item's verdict (verified or rejected): who gave it, when and why."""
    item.state, item.note, item.decided_by, item.decided_at = state, note, by, at


async def assess_if_ready(uow: UnitOfWork, ctx: Context, claim: Claim, cause: Envelope | None,
                          requested_by: str = SYSTEM) -> Assessment | None:
    """Assess once the response is complete and no loss item awaits verification."""
    if claim.status not in ASSESSABLE or claim.response_completed_at is None:
        return None
    losses = await _losses(uow, claim)
    await reopen_beyond_authority(uow, ctx, claim, losses)
    if unverified(losses):
        return None
    try:
        return await _assess(uow, ctx, claim, cause, requested_by, losses)
    except (_NotReady, MissingOutage):
        return None  # waits for the policy, the incident report or the outage figure
    except OutOfRange as exc:
        claim.data_issue = str(exc)  # shown to the adjuster; the claim waits for a fix
        return None


class _NotReady(Exception):
    pass


async def _assess(uow: UnitOfWork, ctx: Context, claim: Claim, cause: Envelope | None,
                  requested_by: str, losses: list[LossItem] | None = None) -> Assessment:
    """Assess `claim` now; `losses`: its loss items if the caller has just read them."""
    incident = await uow.session.get(Incident, claim.incident_id)
    if incident is None:
        raise _NotReady("the incident report has not arrived yet")
    policy = await uow.session.get(Policy, claim.policy_number, with_for_update=True)
    if policy is None:
        raise _NotReady(f"policy {claim.policy_number} has not arrived yet")
    inputs = await _inputs(uow, claim, policy, incident,
                           losses if losses is not None else await _losses(uow, claim))
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


async def assess_claim(uow: UnitOfWork, ctx: Context, principal: Principal,
                       claim_id: uuid.UUID) -> Claim:
    """An adjuster asks for an assessment now. Not while a loss awaits verification: an
    assessment that left it out could be approved, automatically too, and the loss would never
    be decided (docs/approvals.md, "A loss submitted after the assessment")."""
    claim = await locked_claim(uow, claim_id)
    if claim.status not in ASSESSABLE:
        raise Conflict(f"claim is {claim.status}; only open or pending claims are assessed")
    await active_authority(uow, principal, "assessing a claim")
    losses = await _losses(uow, claim)
    if await reopen_beyond_authority(uow, ctx, claim, losses):
        await uow.commit()  # kept: what the claim now needs, whatever this request gets
        raise Conflict("the outage makes a per-hour loss worth more than the authority it was "
                       "verified within: it awaits verification again")
    waiting = unverified(losses)
    if waiting:
        raise Conflict(f"{len(waiting)} loss item(s) await verification: verify or reject them "
                       "first")
    try:
        await _assess(uow, ctx, claim, None, _adjuster(principal), losses)
    except _NotReady as exc:
        raise Conflict(str(exc)) from exc
    except MissingOutage as exc:
        raise Conflict(f"{exc}: set the outage hours first", field="outage_hours") from exc
    except OutOfRange as exc:
        raise Conflict(str(exc)) from exc
    await uow.commit()
    return claim


async def _reassess_limits(uow: UnitOfWork, claim: Claim, current: Assessment) -> AssessmentResult:
    """The stored assessment recomputed against the policy's ledger as it is now."""
    inputs = AssessmentInputs.model_validate(current.inputs)
    paid_by_section, paid_total = await _paid_on_policy(uow, claim.policy_number, claim.id)
    return engine.assess(inputs.model_copy(update={"paid_by_section": paid_by_section,
                                                   "paid_total": paid_total}))
