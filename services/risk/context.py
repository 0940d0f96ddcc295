"""What every risk use case shares: its context (outbox, clock, rulebook), a remediation item's
contract and what counts as open, and who may see a policy.

A policy's profile row is the lock every decision about that policy takes (FOR UPDATE): an
operator's assessment request and a renewal, or an exposure alert and a new assessment's
vendor, never decide on a stale read of each other.

The vendor monitoring a policy is the vendor of its latest assessment that was accepted and
not cancelled (accepted or completed). The profile keeps it (`monitoring_vendor_id`, what
`may_see` reads), recomputed from the assessments under the profile's lock whenever one of them
enters or leaves that set: whichever order job events and completions are applied in, it is
the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.risk.models import Assessment, AssessmentStatus, RemediationItemRow, RiskProfile
from services.risk.rules import RiskRules
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.controls import Control
from shared.db import for_update_arg
from shared.events import RemediationItem, RemediationSource
from shared.outbox import Outbox
from shared.problems import NotFound


@dataclass(frozen=True)
class RiskContext:
    """What every use case needs: where events go, the time, and the rulebook."""

    outbox: Outbox
    clock: Clock
    rules: RiskRules


def item_contract(item: RemediationItemRow) -> RemediationItem:
    return RemediationItem(item_id=item.id, control=Control(item.control),
                           source=RemediationSource(item.source), title=item.title,
                           cvss_score=item.cvss_score, due_at=item.due_at, done_at=item.done_at,
                           superseded_at=item.superseded_at)


OPEN_ITEM = (RemediationItemRow.done_at.is_(None), RemediationItemRow.superseded_at.is_(None))
"""Neither confirmed done nor superseded: reminded, counted overdue once past due."""


MONITORING_ASSESSMENT = (AssessmentStatus.accepted, AssessmentStatus.completed)
"""Accepted and not cancelled: its vendor may be the policy's monitor."""


async def monitoring_vendor(session: AsyncSession, policy_number: str) -> str | None:
    """The vendor of the policy's latest assessment that was accepted and not cancelled;
    None when it has none. The caller holds the profile's lock and stores the answer."""
    vendor_id: str | None = await session.scalar(
        select(Assessment.vendor_id)
        .where(Assessment.policy_number == policy_number,
               Assessment.status.in_(MONITORING_ASSESSMENT))
        .order_by(Assessment.requested_at.desc(), Assessment.id.desc()).limit(1))
    return vendor_id


async def locked_assessment(session: AsyncSession, assessment_id: uuid.UUID
                            ) -> tuple[RiskProfile, Assessment] | None:
    """The assessment and its policy's profile, both locked, the profile first as every
    decision about the policy takes it (a vendor's report and a consumer's fetch that took the
    other order would deadlock); None for an unknown assessment."""
    policy_number = await session.scalar(
        select(Assessment.policy_number).where(Assessment.id == assessment_id))
    if policy_number is None:
        return None
    profile = await session.get(RiskProfile, policy_number, with_for_update=True)
    assessment = await session.get(Assessment, assessment_id, with_for_update=True,
                                   populate_existing=True)
    assert profile is not None and assessment is not None
    return profile, assessment


async def visible_profile(session: AsyncSession, principal: Principal, policy_number: str, *,
                          for_update: bool = False) -> RiskProfile:
    """The policy if the caller may see it; 404 otherwise (never reveal that it exists).
    Vendors see only the policies they monitor."""
    profile = await session.get(RiskProfile, policy_number,
                                with_for_update=for_update_arg(for_update))
    if profile is None or not may_see(principal, profile):
        raise NotFound(f"policy {policy_number} not found")
    return profile


def may_see(principal: Principal, profile: RiskProfile) -> bool:
    if principal.role is Role.policyholder:
        return profile.org_id == principal.org_id
    if principal.role is Role.vendor:
        return profile.monitoring_vendor_id is not None and (
            profile.monitoring_vendor_id == principal.vendor_id)
    return principal.role in (Role.operator, Role.underwriter)
