"""Claims from events (the policy, the reported incident, the vendors' response, triage's
grade) and reading them."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from services.payout.assessing import _losses, assess_if_ready
from services.payout.assessment import LossSource, LossState, in_range
from services.payout.context import (
    ASSESSABLE,
    OUTAGE_OUT_OF_RANGE,
    ClaimStatus,
    Context,
    _lock_claims,
    known_claim,
    lock_claims_of,
    note_new_claim,
)
from services.payout.models import (
    Approval,
    Assessment,
    Claim,
    Incident,
    IncidentTriage,
    LossItem,
    Payment,
    Policy,
)
from shared.consumer import ids_in
from shared.db import TransactionRows, UnitOfWork
from shared.events import (
    ClaimOpened,
    Envelope,
    ExposureAlerted,
    IncidentReported,
    IncidentResponseCompleted,
    IncidentTriaged,
    LossSubmitted,
    PolicyRegistered,
    PolicyTerms,
    PolicyUpdated,
    RemediationDone,
    RemediationSuperseded,
    RiskAssessed,
)
from shared.problems import NotFound


async def record_policy(uow: UnitOfWork, ctx: Context, terms: PolicyTerms, version: int,
                        cause: Envelope) -> None:
    """Keep the newest version of a policy and assess its undecided claims under it: those
    that were only waiting for it, and those awaiting approval, whose assessment (and any
    approval of it) was of the terms this version replaces. Their rows are locked before the
    policy's, in the lock order above: an adjuster's decision on one of them at the same
    moment (claim, then policy) would otherwise deadlock."""
    undecided = await _lock_claims(uow, Claim.policy_number == terms.policy_number,
                                   Claim.status.in_(ASSESSABLE))
    if await _store_policy(uow, ctx, terms, version):
        for claim in undecided:
            if claim.status == ClaimStatus.pending_approval and \
                    await _assessed_under(uow, claim, terms):
                continue  # a new version of the same terms: its approvals still stand
            await assess_if_ready(uow, ctx, claim, cause)


async def _assessed_under(uow: UnitOfWork, claim: Claim, terms: PolicyTerms) -> bool:
    """Whether the claim's latest assessment read exactly these terms."""
    current = await latest_assessment(uow, claim)
    return current is not None and PolicyTerms.model_validate(current.inputs["policy"]) == terms


async def _store_policy(uow: UnitOfWork, ctx: Context, terms: PolicyTerms, version: int) -> bool:
    """Keep the newest version of a policy; returns whether this one was applied."""
    policy = await uow.session.get(Policy, terms.policy_number, with_for_update=True)
    if policy is None:
        uow.session.add(Policy(policy_number=terms.policy_number, org_id=terms.org_id,
                               version=version, terms=terms.model_dump(mode="json"),
                               updated_at=ctx.clock.now()))
        return True
    if version <= policy.version:
        return False
    policy.org_id = terms.org_id
    policy.version = version
    policy.terms = terms.model_dump(mode="json")
    policy.updated_at = ctx.clock.now()
    return True


CLAIM_OPENING = frozenset(event.event_type for event in (IncidentReported, LossSubmitted,
                                                          IncidentResponseCompleted))
"""The events whose handlers take (or open) the incident's claim."""
TRIAGED = IncidentTriaged.event_type


async def load_batch(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    """The claims a batch of events takes, locked in one statement: those of its incidents'
    events and every claim of the policies its policy and risk events name (whose handlers
    lock them all), so a fetch takes its claim locks in one order, claims before policies as
    every lock here; then its incidents' reports, and triage's gradings (locked, after the
    claims, in key order). An incident's first events then open its claim and store its
    report and grading without a round trip each, and all of them go in at commit, one
    statement per table."""
    incident_ids = ids_in((e for e in envelopes if e.type in CLAIM_OPENING), "incident_id")
    await lock_claims_of(uow, incident_ids, _policies_named(envelopes))
    rows = TransactionRows.of(uow.session)
    await rows.load(uow.session, Incident, incident_ids)
    await rows.load(uow.session, IncidentTriage, ids_in(
        (e for e in envelopes if e.type == TRIAGED), "incident_id"), for_update=True)


POLICY_TYPES = frozenset(event.event_type for event in (PolicyRegistered, PolicyUpdated))
REMEDIATION_TYPES = frozenset(event.event_type for event in (
    RiskAssessed, ExposureAlerted, RemediationDone, RemediationSuperseded))
"""Policy and risk events: their handlers lock every claim of the policy."""


def _policies_named(envelopes: list[Envelope]) -> set[str]:
    """The policy numbers of the batch's policy events (in their terms) and risk events."""
    named = set()
    for envelope in envelopes:
        number = None
        if envelope.type in POLICY_TYPES:
            terms = envelope.data.get("policy")
            number = terms.get("policy_number") if isinstance(terms, dict) else None
        elif envelope.type in REMEDIATION_TYPES:
            number = envelope.data.get("policy_number")
        if isinstance(number, str):
            named.add(number)
    return named


async def _claim_for_incident(uow: UnitOfWork, ctx: Context, incident_id: uuid.UUID, org_id: str,
                              policy_number: str, cause: Envelope) -> Claim:
    """The incident's claim (locked), opened on the first event that mentions the incident.

    A new claim is not flushed here: the tables have no `relationship()`, so the unit of work
    does not order INSERTs by foreign key, and a caller adding rows that refer to the claim
    (loss items) reads first, which flushes the claim before them."""
    await lock_claims_of(uow, [incident_id])
    existing = known_claim(uow, incident_id)
    if existing is not None:
        return existing
    now = ctx.clock.now()
    claim = Claim(id=uuid.uuid4(), incident_id=incident_id, policy_number=policy_number,
                  org_id=org_id, status=ClaimStatus.open, opened_at=now, updated_at=now)
    uow.session.add(claim)
    note_new_claim(uow, claim)
    ctx.outbox.add(uow.session, ClaimOpened(incident_id=incident_id, org_id=org_id,
                                            claim_id=claim.id, at=now,
                                            policy_number=policy_number), cause=cause)
    return claim


async def record_incident(uow: UnitOfWork, ctx: Context, event: IncidentReported,
                          envelope: Envelope) -> None:
    claim = await _claim_for_incident(uow, ctx, event.incident_id, event.org_id,
                                      event.policy_number, envelope)
    if not all(map(in_range, (event.occurred_at, event.discovered_at, event.reported_at))):
        claim.data_issue = ("the incident report's timestamps are out of range: the claim cannot "
                            "be assessed until the report is corrected")
        claim.updated_at = ctx.clock.now()
        return
    rows = TransactionRows.of(uow.session)
    if await rows.get(uow.session, Incident, event.incident_id) is None:
        rows.add(uow.session, Incident(
            id=event.incident_id, policy_number=event.policy_number, org_id=event.org_id,
            category=event.category.value, occurred_at=event.occurred_at,
            discovered_at=event.discovered_at, reported_at=event.reported_at,
            title=event.title, description=event.description,
        ), event.incident_id)
    await assess_if_ready(uow, ctx, claim, envelope)


async def record_response(uow: UnitOfWork, ctx: Context, event: IncidentResponseCompleted,
                          envelope: Envelope) -> None:
    """The vendors' findings: attribution, verified outage and loss items. The vendors' items
    count as verified while together they are within `Rules.vendor_verification_limit`; above
    it an adjuster verifies each."""
    claim = await _claim_for_incident(uow, ctx, event.incident_id, event.org_id,
                                      event.policy_number, envelope)
    if claim.response_completed_at is not None:
        return  # the response completes once; a second report (replay) changes nothing
    claim.response_completed_at = event.completed_at
    claim.attribution = event.attribution.value
    claim.findings = [finding.model_dump(mode="json") for finding in event.findings]
    claim.attack_vectors = sorted({finding.attack_vector.value for finding in event.findings})
    outage = event.verified_outage
    if outage is not None and in_range(outage.started_at) and in_range(outage.ended_at):
        claim.outage_started_at = outage.started_at
        claim.outage_ended_at = outage.ended_at
    elif outage is not None:
        claim.data_issue = (f"{OUTAGE_OUT_OF_RANGE} ({outage.started_at.isoformat()} to "
                            f"{outage.ended_at.isoformat()}): set the outage hours")
    # A loss item's id derives from the incident, so its claim's items are all it can clash with:
    # one query for every item of the report instead of one look-up each.
    recorded = set(await uow.session.scalars(
        select(LossItem.id).where(LossItem.claim_id == claim.id)))
    # The limit holds for the vendors' items together: split into items under it, a sum above
    # it would otherwise be paid with no adjuster having looked at any of them.
    self_verified = (sum(loss.amount for loss in event.verified_losses)
                     <= ctx.rules.vendor_verification_limit)
    for index, loss in enumerate(event.verified_losses):
        loss_id = uuid.uuid5(claim.incident_id, f"{loss.job_id}/{index}")
        if loss_id in recorded:
            continue
        uow.session.add(LossItem(
            id=loss_id, claim_id=claim.id, source=LossSource.vendor,
            state=LossState.verified if self_verified else LossState.unverified,
            section=loss.section.value, amount=loss.amount, description=loss.description,
            vendor_id=loss.vendor_id, submitted_at=event.completed_at,
        ))
    claim.updated_at = ctx.clock.now()
    await uow.session.flush()
    await assess_if_ready(uow, ctx, claim, envelope)


async def record_triage(uow: UnitOfWork, event: IncidentTriaged) -> None:
    """Keep triage's latest grading of the incident for the adjuster (a replay or an older
    grading changes nothing)."""
    rows = TransactionRows.of(uow.session)
    row = await rows.get(uow.session, IncidentTriage, event.incident_id, for_update=True)
    if row is None:
        rows.add(uow.session, IncidentTriage(
            incident_id=event.incident_id, priority=event.priority.value,
            regulatory_grade=event.regulatory_grade.value,
            regulatory_deadline=event.regulatory_deadline, triaged_at=event.triaged_at),
            event.incident_id)
    elif event.triaged_at > row.triaged_at:
        row.priority = event.priority.value
        row.regulatory_grade = event.regulatory_grade.value
        row.regulatory_deadline = event.regulatory_deadline
        row.triaged_at = event.triaged_at


async def latest_assessment(uow: UnitOfWork, claim: Claim) -> Assessment | None:
    if claim.latest_assessment_id is None:
        return None
    return await uow.session.get(Assessment, claim.latest_assessment_id)


async def approvals_of(uow: UnitOfWork, assessment_id: uuid.UUID) -> list[Approval]:
    rows = await uow.session.scalars(
        select(Approval).where(Approval.assessment_id == assessment_id).order_by(Approval.id)
    )
    return list(rows)


async def list_claims(uow: UnitOfWork, *, status: str | None, limit: int, offset: int
                      ) -> tuple[list[Claim], int]:
    query = select(Claim)
    if status is not None:
        query = query.where(Claim.status == status)
    total = await uow.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await uow.session.scalars(
        query.order_by(Claim.opened_at, Claim.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def claim_by_id(uow: UnitOfWork, claim_id: uuid.UUID) -> Claim:
    claim = await uow.session.get(Claim, claim_id)
    if claim is None:
        raise NotFound(f"claim {claim_id} not found")
    return claim


async def claim_of_incident(uow: UnitOfWork, incident_id: uuid.UUID) -> Claim:
    claim = await uow.session.scalar(select(Claim).where(Claim.incident_id == incident_id))
    if claim is None:
        raise NotFound(f"no claim for incident {incident_id}")
    return claim


async def losses_of(uow: UnitOfWork, claim: Claim) -> list[LossItem]:
    return await _losses(uow, claim)


async def payment_of(uow: UnitOfWork, claim: Claim) -> Payment | None:
    return await uow.session.scalar(select(Payment).where(Payment.claim_id == claim.id))


async def assessments_of(uow: UnitOfWork, claim: Claim) -> list[Assessment]:
    rows = await uow.session.scalars(
        select(Assessment).where(Assessment.claim_id == claim.id).order_by(Assessment.at)
    )
    return list(rows)
