"""The safety net: a timer pass that finds what should have moved on and did not, and moves it.

A claim ready to assess but unassessed (every input arrived, no loss awaits an adjuster, no
per-hour loss awaits the outage figure, yet no assessment: a lost wake-up, a bug in a path that
should have assessed) is assessed under the claim lock, as every other path does. Claims that
wait for someone are left out of the query, so they never crowd out the stuck ones.

A payment `pending` whose attempt is overdue by more than the threshold (no attempt in flight:
a leased attempt's `next_attempt_at` is in the future) is made due now and the payment worker
is woken: the same row, so the same idempotency key, never a second payment. Each repair is
counted and logged (`shared.repairs`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Select, exists, or_, select

from services.payout import assessing, context
from services.payout.assessment import LossState
from services.payout.context import ClaimStatus, Context, PaymentState
from services.payout.models import Claim, Incident, LossItem, Payment, Policy
from services.payout.settings import PayoutSettings
from shared.db import UnitOfWorkFactory
from shared.repairs import SafetyNet, record_repair

SERVICE = "payout"
REQUESTED_BY = "safety-net"


def unassessed_ready_claims(unchanged_since: datetime) -> Select[uuid.UUID]:
    """Open claims that every input has reached and that wait for no one (no loss for an
    adjuster to verify, no hourly loss for the outage figure, no data issue), unassessed and
    unchanged since `unchanged_since`: what this net assesses, and what `cyberclaims doctor`
    counts as stuck."""
    needs_outage = exists().where(LossItem.claim_id == Claim.id,
                                  LossItem.state == LossState.verified,
                                  LossItem.hourly_loss.is_not(None),
                                  LossItem.verified_amount.is_(None))
    outage_known = or_(Claim.outage_started_at.is_not(None),
                       Claim.adjuster_outage_minutes.is_not(None))
    return select(Claim.id).where(
        Claim.status == ClaimStatus.open, Claim.response_completed_at.is_not(None),
        Claim.latest_assessment_id.is_(None), Claim.data_issue.is_(None),
        Claim.updated_at <= unchanged_since,
        exists().where(Incident.id == Claim.incident_id),
        exists().where(Policy.policy_number == Claim.policy_number),
        ~exists().where(LossItem.claim_id == Claim.id, LossItem.state == LossState.unverified),
        or_(~needs_outage, outage_known))


class StuckClaimsAndPayments(SafetyNet):
    def __init__(self, uows: UnitOfWorkFactory, ctx: Context, settings: PayoutSettings,
                 wake_payments: Callable[[], None]) -> None:
        super().__init__(interval_seconds=settings.safety_net_interval_seconds,
                         stuck_after_seconds=settings.stuck_after_seconds)
        self._uows = uows
        self._ctx = ctx
        self._wake_payments = wake_payments

    async def repair_stuck(self) -> int:
        """One pass; returns how many claims and payments it repaired."""
        return await self._assess_stuck_claims() + await self._resume_stuck_payments()

    async def _assess_stuck_claims(self) -> int:
        cutoff = self._ctx.clock.now() - self.stuck_after
        async with self._uows() as uow:
            candidates = list(await uow.session.scalars(
                unassessed_ready_claims(cutoff).order_by(Claim.updated_at).limit(self.batch)))
        repaired = 0
        for claim_id in candidates:
            async with self._uows() as uow:
                claim = await context.locked_claim(uow, claim_id)
                if claim.latest_assessment_id is not None:
                    continue  # another path assessed it meanwhile
                assessment = await assessing.assess_if_ready(uow, self._ctx, claim, None,
                                                           REQUESTED_BY)
                await uow.commit()  # a data issue found on the way is kept too
            if assessment is not None:
                repaired += 1
                record_repair(SERVICE, "claim_unassessed",
                              f"claim {claim_id} assessed: {assessment.decision}")
        return repaired

    async def _resume_stuck_payments(self) -> int:
        now = self._ctx.clock.now()
        async with self._uows() as uow:
            stuck = list(await uow.session.scalars(
                select(Payment).where(Payment.state == PaymentState.pending,
                                      Payment.next_attempt_at <= now - self.stuck_after)
                .order_by(Payment.next_attempt_at).limit(self.batch).with_for_update(skip_locked=True)))
            for payment in stuck:
                payment.next_attempt_at = now
            await uow.commit()
        for payment in stuck:
            record_repair(SERVICE, "payment_requested",
                          f"payment {payment.id} of claim {payment.claim_id} resumed "
                          f"(attempt {payment.attempts + 1}, same idempotency key)")
        if stuck:
            self._wake_payments()
        return len(stuck)
