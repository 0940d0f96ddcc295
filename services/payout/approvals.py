"""Adjusters' decisions on a claim: approve (in full or in part) and deny, within their
authority (the registry's, services/payout/adjusters.py).

Money rules (docs/approvals.md): the authority needed to approve, approve in part or deny, and
the number of approvers, follow the claim's payable, never the amount chosen.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError

from services.payout import assessment as engine
from services.payout.adjusters import holds_authority, within_authority
from services.payout.assessing import (
    _approve,
    _close,
    _losses,
    _reassess_limits,
    record_verdict,
    unverified,
)
from services.payout.assessment import LossState
from services.payout.claims import approvals_of, latest_assessment
from services.payout.context import ADJUSTER, ClaimStatus, Context, _adjuster, locked_claim
from services.payout.losses import assessed_as_they_are
from services.payout.models import Approval, Claim, Policy
from services.payout.schemas import ApproveIn, DenyIn
from shared.auth import Principal
from shared.db import UnitOfWork
from shared.events import ClaimDenied
from shared.money import ZERO
from shared.problems import Conflict, Unprocessable


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
    items = await _losses(uow, claim)
    waiting = unverified(items)
    if waiting:
        raise Conflict(f"{len(waiting)} loss item(s) submitted since the assessment await "
                       "verification: verify or reject them first, and the claim is assessed "
                       "again")
    current = await latest_assessment(uow, claim)
    assert current is not None, "a pending claim has an assessment"
    if not assessed_as_they_are(current, items):
        raise Conflict("the claim's losses changed since its assessment and it could not be "
                       "assessed again yet: the verification queue says what it needs (the "
                       "outage hours of a per-hour loss)")
    amount = body.amount if body.amount is not None else current.payable
    if amount <= ZERO:
        raise Unprocessable("nothing to approve: deny the claim instead", field="amount")
    if amount > current.payable:
        raise Unprocessable(f"amount exceeds the payable {current.payable}", field="amount")
    if amount < current.payable and not body.reason:
        raise Unprocessable("approving less than payable needs a reason", field="reason")
    await within_authority(uow, principal, current.payable, "deciding on a claim whose payable is")
    adjuster = _adjuster(principal)
    approvals = await approvals_of(uow, current.id)
    if any(a.adjuster == adjuster for a in approvals):
        raise Conflict("you already approved this claim; a second adjuster must approve")
    # An earlier approval counts only while its adjuster still has the authority (an operator
    # may have lowered or withdrawn it since): each approver must have it when the claim pays.
    earlier = [a for a in approvals if await holds_authority(
        uow, a.adjuster.removeprefix(ADJUSTER), current.payable)]
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


async def deny(uow: UnitOfWork, ctx: Context, principal: Principal, claim_id: uuid.UUID,
               body: DenyIn) -> Claim:
    """Deny within authority: the adjuster's limit must cover what the claim would pay."""
    claim = await locked_claim(uow, claim_id)
    if claim.status != ClaimStatus.pending_approval:
        raise Conflict(f"claim is {claim.status}, not pending approval")
    await within_authority(uow, principal, claim.payable or ZERO, "denying a claim whose payable is")
    now = ctx.clock.now()
    for item in unverified(await _losses(uow, claim)):  # a denial decides them too
        record_verdict(item, LossState.rejected, by=_adjuster(principal), at=now,
                       note=f"the claim was denied: {body.reason}")
    _close(claim, now, _adjuster(principal), body.reason, status=ClaimStatus.denied)
    ctx.outbox.add(uow.session, ClaimDenied(incident_id=claim.incident_id, org_id=claim.org_id,
                                            claim_id=claim.id, at=now,
                                            adjuster=_adjuster(principal), reason=body.reason))
    await uow.commit()
    return claim
