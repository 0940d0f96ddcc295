"""Remediation items outside an assessment's plan: a monitoring vendor's exposure alert, an
item confirmed done, and how an item reads (its state now)."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.risk.context import RiskContext, item_contract, may_see, visible_profile
from services.risk.models import RemediationItemRow, RiskProfile
from services.risk.schemas import ExposureIn, RemediationItemOut
from shared.auth import Principal
from shared.controls import Control
from shared.db import UnitOfWork
from shared.events import ExposureAlerted, RemediationDone, RemediationSource
from shared.problems import NotFound


class ItemState:
    open = "open"
    done = "done"
    overdue = "overdue"
    superseded = "superseded"


def item_state(item: RemediationItemRow, now: datetime) -> str:
    if item.done_at is not None:
        return ItemState.done
    if item.superseded_at is not None:
        return ItemState.superseded
    return ItemState.overdue if now > item.due_at else ItemState.open


async def report_exposure(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                          body: ExposureIn) -> RemediationItemRow:
    """A monitoring vendor's exposure alert: a remediation item due in 72 hours. The alert
    itself tells the policyholder at once, so no separate 'due soon' reminder follows."""
    session = uow.session
    profile = await visible_profile(session, principal, body.policy_number, for_update=True)
    now = ctx.clock.now()
    item = RemediationItemRow(
        id=uuid.uuid4(), policy_number=profile.policy_number, assessment_id=None,
        control=body.control.value, source=RemediationSource.exposure.value, title=body.title,
        detail=body.description, reported_by=principal.vendor_id, created_at=now,
        due_at=now + ctx.rules.exposure_due, due_soon_sent_at=now)
    session.add(item)
    ctx.outbox.add(session, ExposureAlerted(
        policy_number=profile.policy_number, org_id=profile.org_id,
        vendor_id=principal.vendor_id or "", kind=body.kind, description=body.description,
        item=item_contract(item), at=now))
    await uow.commit()
    return item


async def confirm_done(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                       item_id: uuid.UUID) -> tuple[RemediationItemRow, datetime]:
    """The monitoring vendor or an operator confirms an item fixed (again: no change)."""
    session = uow.session
    item = await session.get(RemediationItemRow, item_id, with_for_update=True)
    profile = None if item is None else await session.get(RiskProfile, item.policy_number)
    if item is None or profile is None or not may_see(principal, profile):
        raise NotFound(f"remediation item {item_id} not found")
    now = ctx.clock.now()
    if item.done_at is None and item.superseded_at is None:  # closed already: unchanged
        item.done_at, item.done_by = now, principal.sub
        ctx.outbox.add(session, RemediationDone(
            policy_number=profile.policy_number, org_id=profile.org_id,
            item=item_contract(item), at=now, confirmed_by=principal.sub))
        await uow.commit()
    return item, now


def item_out(item: RemediationItemRow, now: datetime) -> RemediationItemOut:
    return RemediationItemOut(id=item.id, control=Control(item.control),
                              source=RemediationSource(item.source), title=item.title,
                              detail=item.detail, cvss_score=item.cvss_score, due_at=item.due_at,
                              done_at=item.done_at, superseded_at=item.superseded_at,
                              state=item_state(item, now))
