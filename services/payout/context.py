"""What every payout use case shares: its context, the claim and payment states, and how a
claim is locked.

Locks, always in this order: the claim row, then the policy row, then the payment row. The
claim lock serialises every decision on a claim (racing approvals see each other) and every
input that can lead to its assessment (a loss decided, the response completed, an outage set,
the policy arriving), so that whichever input commits last sees all the others and assesses.
The policy lock serialises every decision drawing on the policy's sublimits and aggregate limit
(two claims of one policy decided at once never both take the same remaining amount).
`_lock_claims` takes the claim lock on both backends (see there).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, or_, select

from services.payout.models import Claim
from shared.auth import Principal
from shared.clock import Clock
from shared.db import UnitOfWork, any_of, transaction_state
from shared.outbox import Outbox
from shared.problems import NotFound

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


class _ClaimsOfIncidents(dict[uuid.UUID, Claim | None]):
    """The claims this transaction has locked, by incident (None: the incident had none when
    it looked); `shared.db.transaction_state`. The lock lasts until the commit, so a claim
    found here is as current as a new read."""


async def _lock_claims(uow: UnitOfWork, *where: ColumnElement[bool]) -> list[Claim]:
    """The claims matching `where`, locked until commit (`FOR UPDATE`) and read afresh after
    the lock; each is then known by its incident for the rest of the transaction (one another
    pod opened meanwhile too)."""
    rows = list(await uow.session.scalars(
        select(Claim).where(*where).order_by(Claim.opened_at, Claim.id).with_for_update()
        .execution_options(populate_existing=True)
    ))
    known = transaction_state(uow.session, _ClaimsOfIncidents)
    for claim in rows:
        known[claim.incident_id] = claim
    return rows


async def lock_claims_of(uow: UnitOfWork, incident_ids: Iterable[uuid.UUID],
                         policy_numbers: Iterable[str] = ()) -> None:
    """Lock, in one statement (so in one order), the claims of `incident_ids` not known yet
    and every claim of `policy_numbers`; an incident without a claim is known to have none."""
    known = transaction_state(uow.session, _ClaimsOfIncidents)
    incidents = sorted(set(incident_ids) - known.keys())
    policies = sorted(set(policy_numbers))
    if not incidents and not policies:
        return
    await _lock_claims(uow, or_(any_of(Claim.incident_id, incidents),
                                any_of(Claim.policy_number, policies)))
    for incident_id in incidents:
        known.setdefault(incident_id, None)


def known_claim(uow: UnitOfWork, incident_id: uuid.UUID) -> Claim | None:
    """The incident's claim as `lock_claims_of` locked it (None: it has none)."""
    return transaction_state(uow.session, _ClaimsOfIncidents)[incident_id]


def note_new_claim(uow: UnitOfWork, claim: Claim) -> None:
    """A claim this transaction opened: known, and its incident no longer without one."""
    transaction_state(uow.session, _ClaimsOfIncidents)[claim.incident_id] = claim


async def locked_claim(uow: UnitOfWork, claim_id: uuid.UUID) -> Claim:
    claims = await _lock_claims(uow, Claim.id == claim_id)
    if not claims:
        raise NotFound(f"claim {claim_id} not found")
    return claims[0]


ADJUSTER = "adjuster:"
"""The prefix of an adjuster's name on what they decided (then their token's `sub`)."""


def _adjuster(principal: Principal) -> str:
    return f"{ADJUSTER}{principal.sub}"
