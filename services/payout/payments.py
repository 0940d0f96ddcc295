"""Exactly one payment per claim at the payment provider.

The worker leases due payments (FOR UPDATE SKIP LOCKED, pushing `next_attempt_at` past the
call's timeout) and commits before calling the provider, so nothing is held open during the
call. A crash or restart mid-call leaves the payment pending; once the lease runs out it is
tried again with the same idempotency key (the payment id), and the provider answers with the
payment it already made. Timeouts, transport errors, 5xx, 409 and 429 are retried with
exponential backoff; other 4xx are final; after the last try the payment fails and operators
are alerted by the PaymentFailed event. A call has a total deadline shorter than the lease
(`PayoutSettings`), so two tries of a payment never overlap; and a payment whose tries never
recorded an outcome (the service crashing, or the recording failing, each time) fails once
its tries are used up, instead of being leased again for ever.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import httpx
from prometheus_client import Counter
from sqlalchemy import func, select

from services.payout.context import ClaimStatus, Context, PaymentState, locked_claim
from services.payout.models import Claim, Payment
from services.payout.settings import PayoutSettings
from shared.db import UnitOfWork, UnitOfWorkFactory
from shared.events import PaymentFailed, PaymentRequested, PaymentSucceeded
from shared.polling import PollingLoop
from shared.problems import Conflict

log = logging.getLogger(__name__)

PAYMENT_ATTEMPTS = Counter("cyberclaims_payment_attempts_total", "Payment provider calls", ["outcome"])
RETRYABLE_STATUS = frozenset({409, 429})


@dataclass(frozen=True)
class Outcome:
    """What one call to the provider came to."""

    reference: str | None = None
    error: str | None = None
    retryable: bool = False

    @property
    def succeeded(self) -> bool:
        return self.reference is not None


@dataclass(frozen=True)
class Leased:
    payment_id: uuid.UUID
    claim_id: uuid.UUID
    amount: Decimal
    currency: str
    attempt: int


class PaymentProvider:
    """The provider's HTTP API: `POST /v1/payments` with an `Idempotency-Key` header."""

    def __init__(self, client: httpx.AsyncClient, *, deadline_seconds: float) -> None:
        """`deadline_seconds`: the whole call's (httpx's timeout bounds each phase and each
        read, so a provider trickling its answer could outlast the lease)."""
        self._client = client
        self._deadline = deadline_seconds

    async def pay(self, payment: Leased) -> Outcome:
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._client.post(
                    "/v1/payments",
                    json={"amount": str(payment.amount), "currency": payment.currency,
                          "reference": str(payment.claim_id)},
                    headers={"Idempotency-Key": str(payment.payment_id)},
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            return Outcome(error=f"timeout: {type(exc).__name__}", retryable=True)
        except httpx.HTTPError as exc:  # transport, protocol, decoding: the same key goes again
            return Outcome(error=f"transport error: {exc!r}", retryable=True)
        if response.status_code in (200, 201):
            try:
                return Outcome(reference=str(response.json()["id"]))
            except (ValueError, KeyError, TypeError):
                return Outcome(error="provider answered without a payment id", retryable=True)
        error = f"HTTP {response.status_code}: {response.text[:500]}"
        return Outcome(error=error, retryable=response.status_code >= 500
                       or response.status_code in RETRYABLE_STATUS)


async def retry_failed(uow: UnitOfWork, ctx: Context, claim_id: uuid.UUID, operator: str) -> Claim:
    """An operator's retry of a failed payment, once its cause is fixed: the same payment goes
    back to pending with a fresh budget of tries. Its id stays the idempotency key, so the
    provider pays a claim at most once whatever the earlier tries did."""
    claim = await locked_claim(uow, claim_id)
    payment = await uow.session.scalar(
        select(Payment).where(Payment.claim_id == claim.id).with_for_update())
    if payment is None or payment.state != PaymentState.failed:
        raise Conflict(f"claim {claim_id} has no failed payment to retry")
    now = ctx.clock.now()
    payment.state = PaymentState.pending
    payment.attempts = 0
    payment.next_attempt_at = now
    payment.completed_at = None
    claim.status = ClaimStatus.approved
    claim.updated_at = now
    ctx.outbox.add(uow.session, PaymentRequested(
        incident_id=claim.incident_id, org_id=claim.org_id, claim_id=claim.id, at=now,
        payment_id=payment.id, amount=payment.amount, currency=payment.currency))
    await uow.commit()
    log.warning("payment %s of claim %s retried by %s after: %s", payment.id, claim.id, operator,
                payment.last_error)
    return claim


async def listed(uow: UnitOfWork, state: str, *, limit: int, offset: int
                 ) -> tuple[list[tuple[Payment, Claim]], int]:
    """Payments in `state` with their claims, the latest first (the operators' list)."""
    total = await uow.session.scalar(
        select(func.count()).select_from(Payment).where(Payment.state == state))
    rows = await uow.session.execute(
        select(Payment, Claim).join(Claim, Claim.id == Payment.claim_id)
        .where(Payment.state == state)
        .order_by(Payment.created_at.desc(), Payment.id).limit(limit).offset(offset))
    return [(payment, claim) for payment, claim in rows], total or 0


class PaymentWorker:
    def __init__(self, uows: UnitOfWorkFactory, ctx: Context, provider: PaymentProvider,
                 settings: PayoutSettings) -> None:
        self._uows = uows
        self._ctx = ctx
        self._provider = provider
        self._settings = settings
        self._loop = PollingLoop("payment", self.process_due,
                                 interval_seconds=settings.payment_poll_seconds)

    def wake(self) -> None:
        """Look for due payments now (called after an approval commits)."""
        self._loop.wake()

    async def run(self) -> None:
        await self._loop.run()

    async def process_due(self) -> int:
        """One pass: lease due payments, call the provider for each, record the outcomes; a
        payment whose tries are used up with no outcome recorded fails."""
        leased, used_up = await self._lease()
        for payment in used_up:
            await self._record(payment, Outcome(
                error=f"no outcome was recorded for any of its {payment.attempt} tries "
                      "(see the service's log)", retryable=False))
        await asyncio.gather(*(self._attempt(payment) for payment in leased))
        return len(leased) + len(used_up)

    async def _lease(self) -> tuple[list[Leased], list[Leased]]:
        """The due payments leased for a try, and those whose tries are all used up (each try
        was leased, none recorded: its lease ran out): these are not tried again."""
        now = self._ctx.clock.now()
        async with self._uows() as uow:
            rows = (await uow.session.scalars(
                select(Payment)
                .where(Payment.state == PaymentState.pending, Payment.next_attempt_at <= now)
                .order_by(Payment.next_attempt_at)
                .limit(self._settings.payment_batch_size)
                .with_for_update(skip_locked=True)
            )).all()
            leased, used_up = [], []
            for row in rows:
                if row.attempts >= self._settings.payment_max_attempts:
                    used_up.append(Leased(row.id, row.claim_id, row.amount, row.currency,
                                          row.attempts))
                    continue
                row.attempts += 1
                row.next_attempt_at = now + timedelta(seconds=self._settings.payment_lease_seconds)
                leased.append(Leased(row.id, row.claim_id, row.amount, row.currency, row.attempts))
            if leased:
                await uow.commit()
            return leased, used_up

    async def _attempt(self, payment: Leased) -> None:
        outcome = await self._provider.pay(payment)
        PAYMENT_ATTEMPTS.labels("succeeded" if outcome.succeeded
                                else "retryable" if outcome.retryable else "final").inc()
        await self._record(payment, outcome)

    def _backoff(self, attempt: int) -> timedelta:
        base = self._settings.payment_retry_base_seconds
        return timedelta(seconds=min(self._settings.payment_retry_max_seconds,
                                     base * 2 ** (attempt - 1)))

    async def _record(self, leased: Leased, outcome: Outcome) -> None:
        ctx = self._ctx
        async with self._uows() as uow:
            claim = await uow.session.get(Claim, leased.claim_id, with_for_update=True)
            row = await uow.session.get(Payment, leased.payment_id, with_for_update=True)
            assert claim is not None and row is not None
            if row.state != PaymentState.pending:
                return  # an overlapping try already recorded the result
            now = ctx.clock.now()
            ids = {"incident_id": claim.incident_id, "org_id": claim.org_id, "claim_id": claim.id,
                   "at": now, "payment_id": row.id, "amount": row.amount, "currency": row.currency}
            if outcome.succeeded:
                assert outcome.reference is not None
                row.state = PaymentState.succeeded
                row.provider_reference = outcome.reference
                row.completed_at = now
                row.last_error = None
                claim.status = ClaimStatus.paid
                claim.updated_at = now
                ctx.outbox.add(uow.session, PaymentSucceeded(**ids,
                                                             provider_reference=outcome.reference))
                log.info("payment %s for claim %s succeeded (try %d)", row.id, claim.id,
                         leased.attempt)
            elif row.attempts != leased.attempt:
                return  # the lease ran out and a later try is in flight: it decides
            elif outcome.retryable and row.attempts < self._settings.payment_max_attempts:
                row.last_error = outcome.error
                row.next_attempt_at = now + self._backoff(row.attempts)
                log.warning("payment %s try %d failed (%s); retrying", row.id, row.attempts,
                            outcome.error)
            else:
                row.state = PaymentState.failed
                row.last_error = outcome.error
                row.completed_at = now
                claim.status = ClaimStatus.payment_failed
                claim.updated_at = now
                ctx.outbox.add(uow.session, PaymentFailed(**ids, error=outcome.error or "",
                                                          attempts=row.attempts))
                log.error("payment %s for claim %s failed after %d tries: %s", row.id, claim.id,
                          row.attempts, outcome.error)
            await uow.commit()
