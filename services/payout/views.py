"""Payout's HTTP API and the adjuster console: thin routers over the use cases in `service`."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from decimal import Decimal
from importlib.resources import files
from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.payout import assessment, service
from services.payout.models import Claim
from services.payout.schemas import (
    ApprovalOut,
    ApproveIn,
    AssessmentOut,
    ClaimOut,
    ClaimPage,
    ClaimSummary,
    DenyIn,
    LossOut,
    OutageIn,
    OutageOut,
    PaymentOut,
    RejectLossIn,
    VerifyLossIn,
)
from services.payout.service import Context
from shared.auth import Principal, Role, require
from shared.db import UnitOfWork
from shared.events import CoverageQuestion, SectionBreakdown
from shared.inputs import PageLimit, PageOffset
from shared.service import Runtime, RuntimeDep, UnitOfWorkDep

Adjuster = Annotated[Principal, require(Role.adjuster)]
ClaimReader = Annotated[Principal, require(Role.adjuster, Role.operator)]
StatusFilter = Literal["open", "pending_approval", "approved", "denied", "closed_without_payment",
                       "paid", "payment_failed"]

claims = APIRouter(prefix="/v1/claims", tags=["claims"])
incidents = APIRouter(prefix="/v1/incidents", tags=["claims"])
console = APIRouter(tags=["console"])


def _ctx(runtime: Runtime) -> Context:
    ctx: Context = runtime.resources["context"]
    return ctx


async def _claim_out(uow: UnitOfWork, runtime: Runtime, claim: Claim) -> ClaimOut:
    current = await service.latest_assessment(uow, claim)
    approvals = await service.approvals_of(uow, current.id) if current is not None else []
    payment = await service.payment_of(uow, claim)
    outage = service.outage_minutes(claim)
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
        decided_by=claim.decided_by,
        assessment_id=claim.latest_assessment_id,
        response_completed=claim.response_completed_at is not None,
        outage=OutageOut(minutes=outage[0], hours=Decimal(outage[0]) / 60, source=outage[1])
        if outage else None,
        losses=[LossOut.model_validate(item, from_attributes=True)
                for item in await service.losses_of(uow, claim)],
        payment=PaymentOut.model_validate(payment, from_attributes=True) if payment else None,
    )


@claims.get("", response_model=ClaimPage)
async def list_claims(_: ClaimReader, uow: UnitOfWorkDep,
                      status: StatusFilter | None = None,
                      limit: PageLimit = 20, offset: PageOffset = 0) -> ClaimPage:
    """Claims, oldest first; `?status=pending_approval` is the approval queue."""
    rows, total = await service.list_claims(uow, status=status, limit=limit, offset=offset)
    return ClaimPage(items=[ClaimSummary.model_validate(r, from_attributes=True) for r in rows],
                     total=total, limit=limit, offset=offset)


@claims.get("/{claim_id}", response_model=ClaimOut)
async def read_claim(claim_id: uuid.UUID, _: ClaimReader, runtime: RuntimeDep,
                     uow: UnitOfWorkDep) -> ClaimOut:
    return await _claim_out(uow, runtime, await service.claim_by_id(uow, claim_id))


@claims.get("/{claim_id}/assessments", response_model=list[AssessmentOut])
async def list_assessments(claim_id: uuid.UUID, _: ClaimReader,
                           uow: UnitOfWorkDep) -> list[AssessmentOut]:
    """Every assessment of the claim with the inputs it was computed from (the audit trail)."""
    claim = await service.claim_by_id(uow, claim_id)
    return [AssessmentOut.model_validate(a, from_attributes=True)
            for a in await service.assessments_of(uow, claim)]


@incidents.get("/{incident_id}/claim", response_model=ClaimOut)
async def read_incident_claim(incident_id: uuid.UUID, _: ClaimReader, runtime: RuntimeDep,
                              uow: UnitOfWorkDep) -> ClaimOut:
    return await _claim_out(uow, runtime, await service.claim_of_incident(uow, incident_id))


@claims.post("/{claim_id}/losses/{loss_id}/verify", response_model=ClaimOut)
async def verify_loss(claim_id: uuid.UUID, loss_id: uuid.UUID, body: VerifyLossIn,
                      caller: Adjuster, runtime: RuntimeDep, uow: UnitOfWorkDep) -> ClaimOut:
    claim = await service.verify_loss(uow, _ctx(runtime), caller, claim_id, loss_id, body)
    return await _after_change(uow, runtime, claim)


@claims.post("/{claim_id}/losses/{loss_id}/reject", response_model=ClaimOut)
async def reject_loss(claim_id: uuid.UUID, loss_id: uuid.UUID, body: RejectLossIn,
                      caller: Adjuster, runtime: RuntimeDep, uow: UnitOfWorkDep) -> ClaimOut:
    claim = await service.reject_loss(uow, _ctx(runtime), caller, claim_id, loss_id, body)
    return await _after_change(uow, runtime, claim)


@claims.put("/{claim_id}/outage", response_model=ClaimOut)
async def set_outage(claim_id: uuid.UUID, body: OutageIn, caller: Adjuster, runtime: RuntimeDep,
                     uow: UnitOfWorkDep) -> ClaimOut:
    """The adjuster's outage hours, where no vendor verified the outage."""
    claim = await service.set_outage(uow, _ctx(runtime), caller, claim_id, body)
    return await _after_change(uow, runtime, claim)


@claims.post("/{claim_id}/assess", response_model=ClaimOut)
async def assess_claim(claim_id: uuid.UUID, caller: Adjuster, runtime: RuntimeDep,
                       uow: UnitOfWorkDep) -> ClaimOut:
    claim = await service.assess_claim(uow, _ctx(runtime), caller, claim_id)
    return await _after_change(uow, runtime, claim)


@claims.post("/{claim_id}/approve", response_model=ClaimOut,
             responses={403: {"description": "beyond the adjuster's authority"},
                        409: {"description": "already decided, or already approved by you"}})
async def approve_claim(claim_id: uuid.UUID, body: ApproveIn, caller: Adjuster,
                        runtime: RuntimeDep, uow: UnitOfWorkDep) -> ClaimOut:
    """Approve the latest assessment (all of it, or `amount` with a `reason`). Above the
    two-approver threshold the claim stays pending until a second adjuster approves."""
    claim, _ = await service.approve(uow, _ctx(runtime), caller, claim_id, body)
    return await _after_change(uow, runtime, claim)


@claims.post("/{claim_id}/deny", response_model=ClaimOut)
async def deny_claim(claim_id: uuid.UUID, body: DenyIn, caller: Adjuster, runtime: RuntimeDep,
                     uow: UnitOfWorkDep) -> ClaimOut:
    claim = await service.deny(uow, _ctx(runtime), caller, claim_id, body)
    return await _after_change(uow, runtime, claim)


async def _after_change(uow: UnitOfWork, runtime: Runtime, claim: Claim) -> ClaimOut:
    """The claim as committed (read in the request's own session, so a request never holds
    two connections); a payment it requested is sent right away."""
    if claim.status == service.ClaimStatus.approved:
        runtime.resources["payments"].wake()
    return await _claim_out(uow, runtime, claim)


@console.get("/console", response_class=HTMLResponse, include_in_schema=False)
async def adjuster_console() -> HTMLResponse:
    """The adjuster console: one static page calling this API with the adjuster's token.
    Never framed (clickjacking), never cached (it holds a token), and running no script but
    its own (the CSP admits the page's inline script by its hash)."""
    page = files("services.payout").joinpath("console/index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                       "Content-Security-Policy": _console_policy(page)})


def _console_policy(page: str) -> str:
    scripts = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL))
    return (f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; "
            "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")


routers = (claims, incidents, console)
