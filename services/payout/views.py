"""Payout's HTTP API and the adjuster console: thin routers over the use cases (`claims`,
`losses`, `approvals`, `assessing`, `queues`)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response

from services.payout import (
    adjusters,
    approvals,
    assessing,
    assessment,
    claims,
    context,
    losses,
    payments,
    queues,
)
from services.payout.context import Context
from services.payout.models import Claim
from services.payout.schemas import (
    AdjusterChangeOut,
    AdjusterHistory,
    AdjusterIn,
    AdjusterOut,
    AdjusterPage,
    ApprovalOut,
    ApproveIn,
    AssessmentOut,
    ClaimFileOut,
    ClaimOut,
    ClaimPage,
    ClaimSummary,
    DenyIn,
    IncidentOut,
    LossOut,
    OutageIn,
    OutageOut,
    PaymentItem,
    PaymentOut,
    PaymentPage,
    QuestionOut,
    QueueItem,
    QueuePage,
    RejectLossIn,
    SignedInOut,
    VerifyLossIn,
)
from shared.auth import SUBJECT_MAX_LENGTH, Principal, Role, require
from shared.db import UnitOfWork
from shared.dead_letters import DeadLetterOut
from shared.events import CoverageQuestion, Finding, SectionBreakdown, VerifiedOutage
from shared.inputs import NUL_FREE, PageLimit, PageOffset
from shared.pages import ASSET_PATTERN, PAGE_HEADERS, page_asset, read_page_file
from shared.service import Runtime, RuntimeDep, UnitOfWorkDep

Adjuster = Annotated[Principal, require(Role.adjuster)]
ClaimReader = Annotated[Principal, require(Role.adjuster, Role.operator)]
Operator = Annotated[Principal, require(Role.operator)]
PaymentStateFilter = Literal["pending", "succeeded", "failed"]
StatusFilter = Literal["open", "pending_approval", "approved", "denied", "closed_without_payment",
                       "paid", "payment_failed"]

claims_api = APIRouter(prefix="/v1/claims", tags=["claims"])
incidents_api = APIRouter(prefix="/v1/incidents", tags=["claims"])
queues_api = APIRouter(prefix="/v1", tags=["console"])
payments_api = APIRouter(prefix="/v1/payments", tags=["payments"])
console_api = APIRouter(tags=["console"])
adjusters_api = APIRouter(prefix="/v1/adjusters", tags=["adjusters"])
AdjusterSubject = Annotated[str, Path(min_length=1, max_length=SUBJECT_MAX_LENGTH, pattern=NUL_FREE,
                                      description="the adjuster's token `sub`")]
QueueName = Literal["verification", "approval", "decided"]
Search = Annotated[str | None, Query(min_length=1, max_length=200, pattern=NUL_FREE,
                                     description="an incident id, or part of a policy number, "
                                                 "policyholder org id or name")]


def _ctx(runtime: Runtime) -> Context:
    ctx: Context = runtime.resources["context"]
    return ctx


async def _claim_out(uow: UnitOfWork, runtime: Runtime, claim: Claim) -> ClaimOut:
    current = await claims.latest_assessment(uow, claim)
    approvals = await claims.approvals_of(uow, current.id) if current is not None else []
    payment = await claims.payment_of(uow, claim)
    outage = assessing.outage_minutes(claim)
    required = (assessment.approvals_required(current.payable, _ctx(runtime).rules.two_approver_threshold)
                if current is not None else None)
    return ClaimOut(
        **ClaimSummary.model_validate(claim, from_attributes=True).model_dump(),
        sections=[SectionBreakdown.model_validate(s) for s in current.sections] if current else [],
        coverage_questions=[CoverageQuestion(q) for q in current.coverage_questions] if current else [],
        approvals_required=required,
        approvals=[ApprovalOut.model_validate(a, from_attributes=True) for a in approvals],
        approved_amount=claim.approved_amount,
        closed_remainder=claim.payable - claim.approved_amount
        if claim.payable is not None and claim.approved_amount is not None
        and claim.approved_amount < claim.payable else None,
        decision_reason=claim.decision_reason,
        data_issue=claim.data_issue,
        remediation_note=claim.remediation_note,
        decided_by=claim.decided_by,
        assessment_id=claim.latest_assessment_id,
        response_completed=claim.response_completed_at is not None,
        outage=OutageOut(minutes=outage[0], hours=Decimal(outage[0]) / 60, source=outage[1])
        if outage else None,
        losses=[LossOut.model_validate(item, from_attributes=True)
                for item in await claims.losses_of(uow, claim)],
        payment=PaymentOut.model_validate(payment, from_attributes=True) if payment else None,
        dead_letters=[DeadLetterOut.model_validate(mark, from_attributes=True) for mark in
                      await runtime.dead_letters.of_incident(uow, claim.incident_id)]
        if runtime.dead_letters is not None else [],
    )


@claims_api.get("", response_model=ClaimPage)
async def list_claims(_: ClaimReader, uow: UnitOfWorkDep,
                      status: StatusFilter | None = None,
                      limit: PageLimit = 20, offset: PageOffset = 0) -> ClaimPage:
    """Claims, oldest first; `?status=pending_approval` is the approval queue."""
    rows, total = await claims.list_claims(uow, status=status, limit=limit, offset=offset)
    return ClaimPage(items=[ClaimSummary.model_validate(r, from_attributes=True) for r in rows],
                     total=total, limit=limit, offset=offset)


@claims_api.get("/{claim_id}", response_model=ClaimOut)
async def read_claim(claim_id: uuid.UUID, _: ClaimReader, runtime: RuntimeDep,
                     uow: UnitOfWorkDep) -> ClaimOut:
    return await _claim_out(uow, runtime, await claims.claim_by_id(uow, claim_id))


@claims_api.get("/{claim_id}/file", response_model=ClaimFileOut,
            responses={404: {"description": "no such claim"}})
async def read_claim_file(claim_id: uuid.UUID, _: ClaimReader, uow: UnitOfWorkDep) -> ClaimFileOut:
    """The policy, the incident with triage's grading, the vendors' findings and why each
    coverage question was raised: what the adjuster decides from besides the claim."""
    claim = await claims.claim_by_id(uow, claim_id)
    current = await claims.latest_assessment(uow, claim)
    found = await queues.claim_file(uow, claim)
    incident, triage = found.incident, found.triage
    return ClaimFileOut(
        policy=found.policy,
        incident=IncidentOut(
            category=incident.category, title=incident.title, description=incident.description,
            occurred_at=incident.occurred_at, discovered_at=incident.discovered_at,
            reported_at=incident.reported_at,
            priority=triage.priority if triage else None,
            regulatory_grade=triage.regulatory_grade if triage else None,
            regulatory_deadline=triage.regulatory_deadline if triage else None,
            triaged_at=triage.triaged_at if triage else None,
        ) if incident is not None else None,
        attribution=claim.attribution,
        findings=[Finding.model_validate(f) for f in claim.findings or []],
        verified_outage=VerifiedOutage(started_at=claim.outage_started_at,
                                       ended_at=claim.outage_ended_at)
        if claim.outage_started_at is not None and claim.outage_ended_at is not None else None,
        adjuster_outage_note=claim.adjuster_outage_note,
        coverage_questions=[
            QuestionOut(code=q, explanation=queues.explain(CoverageQuestion(q), found.policy,
                                                            incident))
            for q in (current.coverage_questions if current else [])],
    )


@claims_api.get("/{claim_id}/assessments", response_model=list[AssessmentOut])
async def list_assessments(claim_id: uuid.UUID, _: ClaimReader,
                           uow: UnitOfWorkDep) -> list[AssessmentOut]:
    """Every assessment of the claim with the inputs it was computed from (the audit trail)."""
    claim = await claims.claim_by_id(uow, claim_id)
    return [AssessmentOut.model_validate(a, from_attributes=True)
            for a in await claims.assessments_of(uow, claim)]


@incidents_api.get("/{incident_id}/claim", response_model=ClaimOut)
async def read_incident_claim(incident_id: uuid.UUID, _: ClaimReader, runtime: RuntimeDep,
                              uow: UnitOfWorkDep) -> ClaimOut:
    return await _claim_out(uow, runtime, await claims.claim_of_incident(uow, incident_id))


@claims_api.post("/{claim_id}/losses/{loss_id}/verify", response_model=ClaimOut)
async def verify_loss(claim_id: uuid.UUID, loss_id: uuid.UUID, body: VerifyLossIn,
                      caller: Adjuster, runtime: RuntimeDep, uow: UnitOfWorkDep) -> ClaimOut:
    claim = await losses.verify_loss(uow, _ctx(runtime), caller, claim_id, loss_id, body)
    return await _after_change(uow, runtime, claim)


@claims_api.post("/{claim_id}/losses/{loss_id}/reject", response_model=ClaimOut)
async def reject_loss(claim_id: uuid.UUID, loss_id: uuid.UUID, body: RejectLossIn,
                      caller: Adjuster, runtime: RuntimeDep, uow: UnitOfWorkDep) -> ClaimOut:
    claim = await losses.reject_loss(uow, _ctx(runtime), caller, claim_id, loss_id, body)
    return await _after_change(uow, runtime, claim)


@claims_api.put("/{claim_id}/outage", response_model=ClaimOut)
async def set_outage(claim_id: uuid.UUID, body: OutageIn, caller: Adjuster, runtime: RuntimeDep,
                     uow: UnitOfWorkDep) -> ClaimOut:
    """The adjuster's outage hours, where no vendor verified the outage."""
    claim = await losses.set_outage(uow, _ctx(runtime), caller, claim_id, body)
    return await _after_change(uow, runtime, claim)


@claims_api.post("/{claim_id}/assess", response_model=ClaimOut)
async def assess_claim(claim_id: uuid.UUID, caller: Adjuster, runtime: RuntimeDep,
                       uow: UnitOfWorkDep) -> ClaimOut:
    claim = await assessing.assess_claim(uow, _ctx(runtime), caller, claim_id)
    return await _after_change(uow, runtime, claim)


@claims_api.post("/{claim_id}/approve", response_model=ClaimOut,
             responses={403: {"description": "beyond the adjuster's authority"},
                        409: {"description": "already decided, or already approved by you"}})
async def approve_claim(claim_id: uuid.UUID, body: ApproveIn, caller: Adjuster,
                        runtime: RuntimeDep, uow: UnitOfWorkDep) -> ClaimOut:
    """Approve the latest assessment (all of it, or `amount` with a `reason`). Above the
    two-approver threshold the claim stays pending until a second adjuster approves."""
    claim, _ = await approvals.approve(uow, _ctx(runtime), caller, claim_id, body)
    return await _after_change(uow, runtime, claim)


@claims_api.post("/{claim_id}/deny", response_model=ClaimOut)
async def deny_claim(claim_id: uuid.UUID, body: DenyIn, caller: Adjuster, runtime: RuntimeDep,
                     uow: UnitOfWorkDep) -> ClaimOut:
    claim = await approvals.deny(uow, _ctx(runtime), caller, claim_id, body)
    return await _after_change(uow, runtime, claim)


@claims_api.post("/{claim_id}/payment/retry", response_model=ClaimOut,
             responses={409: {"description": "the claim has no failed payment"}})
async def retry_payment(claim_id: uuid.UUID, caller: Operator, runtime: RuntimeDep,
                        uow: UnitOfWorkDep) -> ClaimOut:
    """Operators: send a failed payment again, with the same idempotency key (never a second
    payment), once the provider's fault is fixed."""
    claim = await payments.retry_failed(uow, _ctx(runtime), claim_id, caller.sub)
    return await _after_change(uow, runtime, claim)


@payments_api.get("", response_model=PaymentPage)
async def list_payments(_: Operator, uow: UnitOfWorkDep, state: PaymentStateFilter = "failed",
                        limit: PageLimit = 20, offset: PageOffset = 0) -> PaymentPage:
    """Operators: the payments in `state` (by default the failed ones, to retry with
    `POST /v1/claims/{claim_id}/payment/retry` once the cause is fixed), the latest first."""
    rows, total = await payments.listed(uow, state, limit=limit, offset=offset)
    return PaymentPage(
        items=[PaymentItem(**PaymentOut.model_validate(payment, from_attributes=True).model_dump(),
                           claim_id=claim.id, incident_id=claim.incident_id, org_id=claim.org_id,
                           next_attempt_at=payment.next_attempt_at)
               for payment, claim in rows],
        total=total, limit=limit, offset=offset)


async def _after_change(uow: UnitOfWork, runtime: Runtime, claim: Claim) -> ClaimOut:
    """The claim as committed (read in the request's own session, so a request never holds
    two connections); a payment it requested is sent right away."""
    if claim.status == context.ClaimStatus.approved:
        runtime.resources["payments"].wake()
    return await _claim_out(uow, runtime, claim)


@queues_api.get("/me", response_model=SignedInOut)
async def signed_in(caller: ClaimReader, runtime: RuntimeDep, uow: UnitOfWorkDep) -> SignedInOut:
    """Who is signed in and the most they may decide on (the console's header), from the
    registry of adjusters."""
    return SignedInOut(sub=caller.sub, role=caller.role,
                       authority_limit=await adjusters.authority_limit(uow, caller),
                       two_approver_threshold=_ctx(runtime).rules.two_approver_threshold)


@queues_api.get("/queues/{name}", response_model=QueuePage)
async def read_queue(name: QueueName, caller: ClaimReader, uow: UnitOfWorkDep,
                     q: Search = None, limit: PageLimit = 20, offset: PageOffset = 0) -> QueuePage:
    """An adjuster's queue: `verification` (losses to verify, outages to set, data issues;
    oldest first), `approval` (the ones the caller can approve now first, then oldest;
    `mine` marks them) or `decided` (latest decision first); `q` searches."""
    rows, total = await queues.queue(uow, caller, name, search=q, limit=limit, offset=offset)
    return QueuePage(
        items=[QueueItem(**ClaimSummary.model_validate(row.claim, from_attributes=True).model_dump(),
                         holder_name=row.holder_name, data_issue=row.claim.data_issue,
                         decided_at=row.claim.decided_at, mine=row.mine, needs=row.needs)
               for row in rows],
        total=total, limit=limit, offset=offset)


@console_api.get("/console", response_class=HTMLResponse, include_in_schema=False)
async def adjuster_console() -> HTMLResponse:
    """The adjuster console: one static page and its script, calling this API with the
    adjuster's token (headers: `shared/pages.py`)."""
    return HTMLResponse(read_page_file("services.payout", "console/index.html"),
                        headers=PAGE_HEADERS)


CONSOLE_ASSETS = {"console.js": "text/javascript"}


@console_api.get("/console/{asset}", include_in_schema=False)
async def console_asset(asset: Annotated[str, Path(pattern=ASSET_PATTERN)]) -> Response:
    return page_asset(asset, "services.payout", "console", CONSOLE_ASSETS)


@adjusters_api.get("", response_model=AdjusterPage)
async def list_adjusters(caller: Operator, uow: UnitOfWorkDep, limit: PageLimit = 20,
                         offset: PageOffset = 0) -> AdjusterPage:
    """Operators: the registry of adjusters and what each may decide on."""
    rows, total = await adjusters.listed(uow, limit=limit, offset=offset)
    return AdjusterPage(items=[AdjusterOut.model_validate(row, from_attributes=True)
                               for row in rows], total=total, limit=limit, offset=offset)


@adjusters_api.put("/{subject}", response_model=AdjusterOut)
async def put_adjuster(subject: AdjusterSubject, body: AdjusterIn, caller: Operator,
                       runtime: RuntimeDep, uow: UnitOfWorkDep) -> AdjusterOut:
    """Operators: register an adjuster (the token's `sub`) or change their authority limit or
    whether they are active; every change is kept with who made it and why."""
    entry = await adjusters.put(uow, runtime.clock, caller, subject, body)
    return AdjusterOut.model_validate(entry, from_attributes=True)


@adjusters_api.get("/{subject}/history", response_model=AdjusterHistory)
async def adjuster_history(subject: AdjusterSubject, caller: Operator,
                           uow: UnitOfWorkDep) -> AdjusterHistory:
    """Operators: every change to an adjuster's entry, oldest first."""
    changes = await adjusters.history(uow, subject)
    return AdjusterHistory(subject=subject, changes=[
        AdjusterChangeOut.model_validate(change, from_attributes=True) for change in changes])


routers = (claims_api, incidents_api, queues_api, payments_api, console_api, adjusters_api)
