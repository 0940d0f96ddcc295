"""Risk's HTTP API: thin routers over the use cases in `assessments`, `remediation` and
`reads`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from services.risk import assessments, reads, remediation
from services.risk.context import RiskContext
from services.risk.models import Assessment
from services.risk.schemas import (
    AssessmentOut,
    AssessmentReportIn,
    ExposureIn,
    PolicyNumberPath,
    PortfolioOut,
    RemediationItemOut,
    RiskOut,
)
from shared.auth import Principal, Role, require
from shared.service import UnitOfWorkDep

CONTEXT = "context"


def get_context(request: Request) -> RiskContext:
    context: RiskContext = request.app.state.runtime.resources[CONTEXT]
    return context


ContextDep = Annotated[RiskContext, Depends(get_context)]
Operator = Annotated[Principal, require(Role.operator)]
Vendor = Annotated[Principal, require(Role.vendor)]
Confirmer = Annotated[Principal, require(Role.vendor, Role.operator)]
Underwriting = Annotated[Principal, require(Role.operator, Role.underwriter)]
RiskReader = Annotated[Principal, require(Role.policyholder, Role.operator, Role.underwriter)]

policies_api = APIRouter(prefix="/v1/policies", tags=["assessments"])
assessments_api = APIRouter(prefix="/v1/assessments", tags=["assessments"])
exposures_api = APIRouter(prefix="/v1/exposures", tags=["exposures"])
remediation_api = APIRouter(prefix="/v1/remediation", tags=["remediation"])
risk_api = APIRouter(prefix="/v1/risk", tags=["risk"])


def _assessment_out(assessment: Assessment) -> AssessmentOut:
    return AssessmentOut.model_validate(assessment, from_attributes=True)


@policies_api.post("/{policy_number}/assessments", status_code=status.HTTP_202_ACCEPTED,
                   response_model=AssessmentOut,
                   responses={409: {"description": "an assessment is already in progress"}})
async def request_assessment(policy_number: PolicyNumberPath, caller: Operator, ctx: ContextDep,
                             uow: UnitOfWorkDep) -> AssessmentOut:
    """Ask for an assessment now: triage dispatches it to a panel vendor."""
    return _assessment_out(await assessments.request_assessment(uow, ctx, caller, policy_number))


@assessments_api.post("/{assessment_id}/report", response_model=AssessmentOut,
                      responses={409: {"description": "the assessment is already completed"}})
async def submit_assessment(assessment_id: uuid.UUID, body: AssessmentReportIn, caller: Vendor,
                            ctx: ContextDep, uow: UnitOfWorkDep) -> AssessmentOut:
    """The assigned vendor's control checklist and findings; risk scores them."""
    assessment = await assessments.submit_assessment(uow, ctx, caller, assessment_id, body)
    return _assessment_out(assessment)


@exposures_api.post("", status_code=status.HTTP_201_CREATED, response_model=RemediationItemOut)
async def report_exposure(body: ExposureIn, caller: Vendor, ctx: ContextDep,
                          uow: UnitOfWorkDep) -> RemediationItemOut:
    """An exposure alert by the vendor that assessed the policy: fix it within 72 hours."""
    item = await remediation.report_exposure(uow, ctx, caller, body)
    return remediation.item_out(item, ctx.clock.now())


@remediation_api.post("/{item_id}/done", response_model=RemediationItemOut)
async def confirm_done(item_id: uuid.UUID, caller: Confirmer, ctx: ContextDep,
                       uow: UnitOfWorkDep) -> RemediationItemOut:
    """The monitoring vendor or an operator confirms the item fixed."""
    item, now = await remediation.confirm_done(uow, ctx, caller, item_id)
    return remediation.item_out(item, now)


@risk_api.get("/portfolio", response_model=PortfolioOut)
async def read_portfolio(_: Underwriting, ctx: ContextDep, uow: UnitOfWorkDep) -> PortfolioOut:
    return await reads.portfolio(uow, ctx)


@risk_api.get("/{policy_number}", response_model=RiskOut)
async def read_risk(policy_number: PolicyNumberPath, caller: RiskReader, ctx: ContextDep,
                    uow: UnitOfWorkDep) -> RiskOut:
    """Score, tier, premium modifier and every remediation item with its state."""
    return await reads.read_risk(uow, ctx, caller, policy_number)


routers = (policies_api, assessments_api, exposures_api, remediation_api, risk_api)
