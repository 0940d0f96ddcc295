"""The adjuster's queues and claim file (the console): what waits for whom, and each coverage
question explained."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from services.payout import assessment as engine
from services.payout.adjusters import authority_limit
from services.payout.assessment import LossState
from services.payout.context import ClaimStatus, _adjuster
from services.payout.models import Approval, Claim, Incident, IncidentTriage, LossItem, Policy
from shared.auth import Principal
from shared.db import UnitOfWork
from shared.events import CoverageQuestion, PolicyTerms

DECIDED = (ClaimStatus.approved, ClaimStatus.denied, ClaimStatus.closed_without_payment,
           ClaimStatus.paid, ClaimStatus.payment_failed)


@dataclass(frozen=True)
class QueueRow:
    claim: Claim
    holder_name: str | None
    mine: bool
    """Approval queue: the caller can approve it now (within authority, not yet approved by
    them); the rows that are mine come first."""
    needs: list[str]
    """Verification queue: what the claim waits for (`verify_losses`, `set_outage`,
    `data_issue`)."""


@dataclass(frozen=True)
class _Needs:
    """What an open claim waits for from an adjuster before it can be assessed."""

    losses: ColumnElement[bool]
    """a loss item to verify or reject"""
    outage: ColumnElement[bool]
    """a per-hour loss whose worth follows the outage (none verified at an amount), and no
    outage figure"""

    @classmethod
    def of_claim(cls) -> _Needs:
        unverified = select(LossItem.id).where(LossItem.claim_id == Claim.id,
                                               LossItem.state == LossState.unverified).exists()
        per_hour = select(LossItem.id).where(LossItem.claim_id == Claim.id,
                                             LossItem.hourly_loss.is_not(None),
                                             LossItem.state != LossState.rejected,
                                             LossItem.verified_amount.is_(None)).exists()
        return cls(losses=unverified,
                   outage=and_(per_hour, Claim.outage_started_at.is_(None),
                               Claim.adjuster_outage_minutes.is_(None)))

    def anything(self) -> ColumnElement[bool]:
        """An open claim waiting for any of them, or a pending one for a loss submitted since
        its assessment, or its outage (its approval waits for those)."""
        return or_(and_(Claim.status == ClaimStatus.open,
                        or_(self.losses, self.outage, Claim.data_issue.is_not(None))),
                   and_(Claim.status == ClaimStatus.pending_approval,
                        or_(self.losses, self.outage)))


def _matching(search: str) -> ColumnElement[bool]:
    """An incident id (whole), or part of a policy number, policyholder org id or name."""
    try:
        return Claim.incident_id == uuid.UUID(search)
    except ValueError:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return or_(Claim.policy_number.ilike(pattern, escape="\\"),
                   Claim.org_id.ilike(pattern, escape="\\"),
                   Policy.terms["holder_name"].as_string().ilike(pattern, escape="\\"))


async def queue(uow: UnitOfWork, principal: Principal, name: str, *, search: str | None,
                limit: int, offset: int) -> tuple[list[QueueRow], int]:
    """One of the adjuster's queues: `verification` (oldest first), `approval` (the caller's
    own first, then oldest) or `decided` (latest decision first)."""
    ceiling = await authority_limit(uow, principal)
    needs = _Needs.of_claim()
    approved_by_me = select(Approval.id).where(
        Approval.assessment_id == Claim.latest_assessment_id,
        Approval.adjuster == _adjuster(principal)).exists()
    mine = (and_(Claim.payable <= ceiling, ~approved_by_me, ~needs.losses)
            if ceiling is not None else literal(False))
    where: list[ColumnElement[bool]]
    order: list[ColumnElement[Any] | InstrumentedAttribute[Any]]
    if name == "verification":
        where, order = [needs.anything()], [Claim.opened_at, Claim.id]
    elif name == "approval":
        where = [Claim.status == ClaimStatus.pending_approval]
        order = [case((mine, 0), else_=1), Claim.opened_at, Claim.id]
    else:
        where, order = [Claim.status.in_(DECIDED)], [Claim.decided_at.desc(), Claim.id]
    if search:
        where.append(_matching(search))
    base = select(Claim).outerjoin(Policy, Policy.policy_number == Claim.policy_number).where(*where)
    total = await uow.session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = await uow.session.execute(
        base.with_only_columns(Claim, Policy.terms["holder_name"].as_string(), mine,
                               needs.losses, needs.outage)
        .order_by(*order).limit(limit).offset(offset))
    return [QueueRow(claim, holder, bool(own) and name == "approval",
                     needs=[need for need, waiting in (("verify_losses", losses),
                                                       ("set_outage", outage),
                                                       ("data_issue", claim.data_issue))
                            if waiting and (claim.status == ClaimStatus.open or (
                                need != "data_issue"
                                and claim.status == ClaimStatus.pending_approval))])
            for claim, holder, own, losses, outage in rows.all()], total


@dataclass(frozen=True)
class ClaimFile:
    """What an adjuster decides from beyond the claim itself."""

    policy: PolicyTerms | None
    incident: Incident | None
    triage: IncidentTriage | None


async def claim_file(uow: UnitOfWork, claim: Claim) -> ClaimFile:
    policy = await uow.session.get(Policy, claim.policy_number)
    return ClaimFile(
        policy=PolicyTerms.model_validate(policy.terms) if policy is not None else None,
        incident=await uow.session.get(Incident, claim.incident_id),
        triage=await uow.session.get(IncidentTriage, claim.incident_id),
    )


def explain(question: CoverageQuestion, policy: PolicyTerms | None, incident: Incident | None
            ) -> str:
    """Why the rulebook (section 7) raised `question` on this claim, in plain words."""
    if policy is None or incident is None:
        return _QUESTIONS[question]
    occurred = _day(incident.occurred_at)
    facts = {
        CoverageQuestion.OUTSIDE_POLICY_PERIOD:
            f"the incident occurred on {occurred}, outside the policy period "
            f"{_day(policy.period_start)} to {_day(policy.period_end)}",
        CoverageQuestion.BEFORE_RETROACTIVE_DATE:
            f"the incident occurred on {occurred}, before the retroactive date "
            f"{_day(policy.retroactive_date)}" if policy.retroactive_date else "",
        CoverageQuestion.LATE_NOTICE:
            f"it was reported {(incident.reported_at - incident.discovered_at) / timedelta(hours=1):.1f} "
            f"hours after discovery; the policy asks for notice within "
            f"{policy.notice_period_hours} hours",
        CoverageQuestion.EARLY_CLAIM:
            f"the incident occurred on {occurred}, the policy started on "
            f"{_day(policy.period_start)}",
    }
    detail = facts.get(question)
    return f"{_QUESTIONS[question]} Here: {detail}." if detail else _QUESTIONS[question]


def _day(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d} (UTC)"


_QUESTIONS = {
    CoverageQuestion.OUTSIDE_POLICY_PERIOD:
        "The incident did not occur while the policy was in force.",
    CoverageQuestion.BEFORE_RETROACTIVE_DATE:
        "The incident occurred before the policy's retroactive date, so earlier events are not "
        "covered.",
    CoverageQuestion.LATE_NOTICE:
        "The policyholder reported the incident later after discovering it than the policy's "
        "notice period allows.",
    CoverageQuestion.SECTION_NOT_COVERED:
        "A loss item is in a section this policy does not include; that item pays nothing.",
    CoverageQuestion.WAR_EXCLUSION:
        "The vendors attributed the attack to a state actor and the policy excludes war and "
        "state-sponsored attacks.",
    CoverageQuestion.EARLY_CLAIM:
        f"The incident occurred within {engine.EARLY_CLAIM_WINDOW.days} days of the policy's "
        "start: check it was not known before the policy was bought.",
    CoverageQuestion.REPEAT_INCIDENT:
        f"Another incident of the same kind on this policy occurred within "
        f"{engine.REPEAT_INCIDENT_WINDOW.days} days: check they are not one event claimed twice.",
}
