"""Loss items and the outage: policyholders' submitted losses, and adjusters verifying or
rejecting them and setting the outage.

Money rules (docs/approvals.md): a loss is verified at most at what was claimed and only
within the adjuster's authority.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

from services.payout import assessment as engine
from services.payout.adjusters import active_authority, within_authority
from services.payout.assessing import (
    _losses,
    assess_if_ready,
    following_the_outage,
    outage_minutes,
    record_verdict,
    waiting_hours,
)
from services.payout.assessment import LossSource, LossState
from services.payout.claims import _claim_for_incident
from services.payout.context import (
    ASSESSABLE,
    OUTAGE_OUT_OF_RANGE,
    SYSTEM,
    Context,
    _adjuster,
    locked_claim,
)
from services.payout.models import Assessment, Claim, LossItem
from services.payout.schemas import OutageIn, RejectLossIn, VerifyLossIn
from shared.auth import Principal
from shared.db import UnitOfWork
from shared.events import Envelope, LateLossRejected, LossSubmitted
from shared.money import ZERO
from shared.problems import Conflict, NotFound, Unprocessable

log = logging.getLogger(__name__)


async def record_submitted_loss(uow: UnitOfWork, ctx: Context, event: LossSubmitted,
                                envelope: Envelope) -> None:
    """A policyholder's loss awaits an adjuster's verification, which the claim's approval
    then waits for. One that arrives after the claim was decided (intake refuses them once it
    knows; this one crossed the decision on its way) cannot change what was decided: it is
    kept, rejected with the reason, and the policyholder is told (`LateLossRejected`). The
    claim is locked, so a decision and a loss racing each other are one of the two orders."""
    claim = await _claim_for_incident(uow, ctx, event.incident_id, event.org_id,
                                      event.policy_number, envelope)
    if await uow.session.get(LossItem, event.loss_id) is not None:
        return
    now = ctx.clock.now()
    item = LossItem(
        id=event.loss_id, claim_id=claim.id, source=LossSource.policyholder,
        state=LossState.unverified, section=event.section.value, amount=event.amount,
        hourly_loss=event.hourly_loss, description=event.description,
        submitted_at=event.submitted_at,
    )
    if claim.status not in ASSESSABLE:
        reason = (f"submitted after the claim was {claim.status.replace('_', ' ')}: it is not "
                  "part of this claim's decision")
        record_verdict(item, LossState.rejected, by=SYSTEM, at=now, note=reason)
        ctx.outbox.add(uow.session, LateLossRejected(
            incident_id=claim.incident_id, org_id=claim.org_id, claim_id=claim.id, at=now,
            loss_id=item.id, section=event.section, amount=event.amount,
            hourly_loss=event.hourly_loss, claim_status=claim.status, reason=reason))
        log.warning("loss %s arrived after claim %s was %s; recorded as rejected", item.id,
                    claim.id, claim.status)
    uow.session.add(item)
    claim.updated_at = now


def assessed_as_they_are(assessment: Assessment, items: list[LossItem]) -> bool:
    """Whether `assessment` saw every loss item as it is now (each item's state and verified
    figure): a loss submitted and verified since, that could not be assessed yet (a per-hour
    loss waiting for the outage), makes the assessment stale."""
    lines = [engine.LossLine.model_validate(line) for line in assessment.inputs["losses"]]
    seen = {line.id: line for line in lines}
    return len(seen) == len(items) and all(
        (line := seen.get(item.id)) is not None and line.state == item.state
        and line.verified_amount == item.verified_amount for item in items)


async def _open_loss(uow: UnitOfWork, claim: Claim, loss_id: uuid.UUID) -> LossItem:
    item = await uow.session.get(LossItem, loss_id, with_for_update=True)
    if item is None or item.claim_id != claim.id:
        raise NotFound(f"loss item {loss_id} not found")
    if claim.status not in ASSESSABLE:
        raise Conflict(f"claim is {claim.status}; its losses can no longer change")
    if item.state != LossState.unverified:
        raise Conflict(f"loss item is already {item.state}")
    return item


async def _claimed(uow: UnitOfWork, claim: Claim, item: LossItem) -> Decimal | None:
    """What the item claims: its amount, or for business interruption `hourly_loss x
    max(0, outage hours - waiting period)`; None while no outage figure is known."""
    if item.hourly_loss is None:
        return item.amount or ZERO
    outage = outage_minutes(claim)
    if outage is None:
        return None
    return engine.interruption_amount(item.hourly_loss, outage[0], await waiting_hours(uow, claim))


async def verify_loss(uow: UnitOfWork, ctx: Context, principal: Principal, claim_id: uuid.UUID,
                      loss_id: uuid.UUID, body: VerifyLossIn) -> Claim:
    """Verify at most at the claimed figure, within the adjuster's authority. A per-hour item
    without an outage figure can only be verified as claimed: its worth follows the outage, and
    an outage that makes it worth more than the verifier's authority sends it back
    (`reopen_beyond_authority`)."""
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
    item.verified_within = (
        await within_authority(uow, principal, worth, "verifying a loss of") if worth is not None
        else await active_authority(uow, principal, "verifying a per-hour loss"))
    item.verified_amount = body.amount
    return await _decide_loss(uow, ctx, principal, claim, item, LossState.verified, body.note)


async def reject_loss(uow: UnitOfWork, ctx: Context, principal: Principal, claim_id: uuid.UUID,
                      loss_id: uuid.UUID, body: RejectLossIn) -> Claim:
    """Reject within the adjuster's authority over what the item claims: turning money down is
    a decision on it as much as paying it."""
    claim = await locked_claim(uow, claim_id)
    item = await _open_loss(uow, claim, loss_id)
    claimed = await _claimed(uow, claim, item)
    if claimed is None:
        raise Conflict("no outage is known, so neither is what this per-hour item claims: set "
                       "the outage hours first", field="outage_hours")
    await within_authority(uow, principal, claimed, "rejecting a loss of")
    return await _decide_loss(uow, ctx, principal, claim, item, LossState.rejected, body.reason)


async def _decide_loss(uow: UnitOfWork, ctx: Context, principal: Principal, claim: Claim,
                       item: LossItem, state: str, note: str) -> Claim:
    """Record an adjuster's verdict on a loss item, then assess the claim if it is now ready."""
    now = ctx.clock.now()
    record_verdict(item, state, by=_adjuster(principal), at=now, note=note)
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
    waiting = await waiting_hours(uow, claim)
    following = following_the_outage(await _losses(uow, claim))
    worth = sum((engine.interruption_amount(hourly_loss, minutes, waiting)
                 for _, hourly_loss in following), ZERO)
    limit = await within_authority(uow, principal, worth,
                                   "this outage makes the verified per-hour losses worth")
    for item, _ in following:  # their worth is now the setter's to answer for
        item.verified_within = max(item.verified_within or ZERO, limit)
    claim.adjuster_outage_minutes = minutes
    claim.adjuster_outage_note = body.note
    if claim.data_issue is not None and claim.data_issue.startswith(OUTAGE_OUT_OF_RANGE):
        claim.data_issue = None
    claim.updated_at = ctx.clock.now()
    await uow.session.flush()
    await assess_if_ready(uow, ctx, claim, None, _adjuster(principal))
    await uow.commit()
    return claim
