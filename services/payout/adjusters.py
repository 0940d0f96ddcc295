"""The registry of adjusters: what each adjuster may decide on, kept by operators, every
change audited (who, when, before, after, why).

Authority comes from here alone. A token names the caller; an `authority_limit` claim in it is
ignored, and an adjuster who is not in the registry, or is inactive, has no authority at all
(they can still read claims and verify nothing, approve nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.payout.models import Adjuster, AdjusterChange
from services.payout.schemas import AdjusterIn
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.db import UnitOfWork
from shared.problems import Conflict, Forbidden, NotFound


async def authority_limit(uow: UnitOfWork, principal: Principal) -> Decimal | None:
    """The most the caller may decide on; None for anyone with no authority (not an adjuster,
    not registered, or inactive)."""
    if principal.role is not Role.adjuster:
        return None
    entry = await uow.session.get(Adjuster, principal.sub)
    if entry is None or not entry.active:
        return None
    return entry.authority_limit


async def active_authority(uow: UnitOfWork, principal: Principal, what: str) -> Decimal:
    """The caller's authority limit; 403 for anyone with none (to `what`)."""
    limit = await authority_limit(uow, principal)
    if limit is None:
        raise Forbidden(f"{what}: you have no authority (not an active adjuster in the "
                        "registry; an operator registers adjusters)")
    return limit


async def within_authority(uow: UnitOfWork, principal: Principal, amount: Decimal,
                           what: str) -> Decimal:
    """The caller's authority limit, if it covers `amount` (403 otherwise)."""
    limit = await active_authority(uow, principal, f"{what} {amount}")
    if limit < amount:
        raise Forbidden(f"{what} {amount} exceeds your authority limit")
    return limit


async def holds_authority(uow: UnitOfWork, subject: str, amount: Decimal) -> bool:
    """Whether the registry's adjuster `subject` is active with authority for `amount` now."""
    entry = await uow.session.get(Adjuster, subject)
    return entry is not None and entry.active and entry.authority_limit >= amount


async def put(uow: UnitOfWork, clock: Clock, operator: Principal, subject: str,
              body: AdjusterIn) -> Adjuster:
    """Register or change an adjuster; a change is audited, an identical entry is not one."""
    entry = await uow.session.get(Adjuster, subject, with_for_update=True)
    if entry is not None and (entry.authority_limit, entry.active) == (body.authority_limit,
                                                                        body.active):
        return entry
    now = clock.now()
    by = f"operator:{operator.sub}"
    uow.session.add(AdjusterChange(
        subject=subject, changed_by=by, at=now,
        old_authority_limit=entry.authority_limit if entry else None,
        new_authority_limit=body.authority_limit,
        old_active=entry.active if entry else None, new_active=body.active, reason=body.reason))
    if entry is None:
        entry = Adjuster(subject=subject)
        uow.session.add(entry)
    entry.authority_limit = body.authority_limit
    entry.active = body.active
    entry.updated_by = by
    entry.updated_at = now
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict(f"adjuster {subject} was registered concurrently; retry") from exc
    return entry


async def listed(uow: UnitOfWork, *, limit: int, offset: int) -> tuple[Sequence[Adjuster], int]:
    total = await uow.session.scalar(select(func.count()).select_from(Adjuster)) or 0
    rows = await uow.session.scalars(
        select(Adjuster).order_by(Adjuster.subject).limit(limit).offset(offset))
    return rows.all(), total


async def history(uow: UnitOfWork, subject: str) -> Sequence[AdjusterChange]:
    """Every change to the adjuster's entry, oldest first."""
    changes = (await uow.session.scalars(
        select(AdjusterChange).where(AdjusterChange.subject == subject)
        .order_by(AdjusterChange.id))).all()
    if not changes:
        raise NotFound(f"no adjuster {subject} in the registry")
    return changes
