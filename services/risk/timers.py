"""Remediation reminders (the timer): 'due soon' before an item's due date, 'overdue' after
it, and the operators' escalation for a tier D policy."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.risk.context import OPEN_ITEM, RiskContext, item_contract
from services.risk.models import RemediationItemRow, RiskProfile
from shared.db import UnitOfWorkFactory
from shared.events import RemediationDueSoon, RemediationEscalated, RemediationOverdue, RiskTier

TIMER_BATCH = 100


async def run_reminder_pass(uows: UnitOfWorkFactory, ctx: RiskContext,
                            now: datetime | None = None) -> int:
    """Stage each due reminder once: 'due soon' `reminder_lead` before the due date, 'overdue'
    after it (and an operators' escalation when the policy is tier D). The rows are claimed
    FOR UPDATE SKIP LOCKED, so replicas share the work, and marked in the same transaction as
    their events; an item confirmed done or superseded meanwhile is skipped (its row lock is
    awaited)."""
    now = now or ctx.clock.now()
    sent = 0
    while True:
        async with uows() as uow:
            session = uow.session
            due = (await session.scalars(
                select(RemediationItemRow)
                .where(*OPEN_ITEM, RemediationItemRow.overdue_sent_at.is_(None),
                       or_(RemediationItemRow.due_at < now,
                           and_(RemediationItemRow.due_soon_sent_at.is_(None),
                                RemediationItemRow.due_at <= now + ctx.rules.reminder_lead)))
                .order_by(RemediationItemRow.due_at, RemediationItemRow.id)
                .limit(TIMER_BATCH).with_for_update(skip_locked=True))).all()
            for item in due:
                await _remind(session, ctx, item, now)
            await uow.commit()
        sent += len(due)
        if len(due) < TIMER_BATCH:
            return sent


async def _remind(session: AsyncSession, ctx: RiskContext, item: RemediationItemRow,
                  now: datetime) -> None:
    profile = await session.get(RiskProfile, item.policy_number)
    assert profile is not None
    common = {"policy_number": profile.policy_number, "org_id": profile.org_id,
              "item": item_contract(item), "at": now}
    if item.due_at < now:
        item.overdue_sent_at = now
        tier = RiskTier(profile.tier) if profile.tier else None
        ctx.outbox.add(session, RemediationOverdue(**common, tier=tier))
        if tier is RiskTier.D:
            ctx.outbox.add(session, RemediationEscalated(**common, tier=tier))
        return
    item.due_soon_sent_at = now
    ctx.outbox.add(session, RemediationDueSoon(**common))
