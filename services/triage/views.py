"""Triage's HTTP API: thin routers over the use cases in `incidents`, `jobs` and `vendors`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, status

from services.triage import jobs, vendors
from services.triage.context import TriageContext
from services.triage.jobs import JobView
from services.triage.models import Vendor
from services.triage.schemas import (
    VENDOR_ID,
    AssignIn,
    CompletionReportIn,
    DeclineIn,
    HistoryItem,
    IncidentTriageOut,
    JobOut,
    JobPage,
    JobStatusFilter,
    VendorBody,
    VendorIn,
    VendorOut,
)
from shared.auth import Principal, Role, require
from shared.dead_letters import DeadLetterOut
from shared.events import CompletionReport
from shared.inputs import PageLimit, PageOffset
from shared.service import RuntimeDep, UnitOfWorkDep

CONTEXT = "triage"

Operator = Annotated[Principal, require(Role.operator)]
VendorStaff = Annotated[Principal, require(Role.vendor)]
JobReader = Annotated[Principal, require(Role.vendor, Role.operator)]
TriageReader = Annotated[Principal, require(Role.operator, Role.adjuster)]
VendorIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=VENDOR_ID)]


async def get_context(runtime: RuntimeDep) -> TriageContext:
    """Async although it awaits nothing: FastAPI runs a plain function dependency in a thread."""
    context: TriageContext = runtime.resources[CONTEXT]
    return context


ContextDep = Annotated[TriageContext, Depends(get_context)]

vendors_api = APIRouter(prefix="/v1/vendors", tags=["vendors"])
jobs_api = APIRouter(prefix="/v1/jobs", tags=["jobs"])
incidents_api = APIRouter(prefix="/v1/incidents", tags=["incidents"])

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Not allowed in the job's current state (named in `state`)"},
}


def _vendor_out(vendor: Vendor) -> VendorOut:
    return VendorOut.model_validate(vendor, from_attributes=True)


@vendors_api.post("", status_code=status.HTTP_201_CREATED, response_model=VendorOut)
async def register_vendor(body: VendorIn, _: Operator, ctx: ContextDep,
                          uow: UnitOfWorkDep) -> VendorOut:
    return _vendor_out(await vendors.register_vendor(uow, ctx, body))


@vendors_api.put("/{vendor_id}", response_model=VendorOut)
async def update_vendor(vendor_id: VendorIdPath, body: VendorBody, _: Operator, ctx: ContextDep,
                        uow: UnitOfWorkDep) -> VendorOut:
    return _vendor_out(await vendors.update_vendor(uow, ctx, vendor_id, body))


@vendors_api.get("", response_model=list[VendorOut])
async def list_vendors(_: Operator, uow: UnitOfWorkDep) -> list[VendorOut]:
    return [_vendor_out(vendor) for vendor in await vendors.list_vendors(uow)]


def _history_for(view: JobView, viewer: Principal) -> list[HistoryItem]:
    """Operators and adjusters see everything. A vendor holding the job sees what happened
    before, without who the other vendors were or what they said; a vendor that passed on the
    job sees only its own entries."""
    items = [HistoryItem.model_validate(entry, from_attributes=True) for entry in view.history]
    if viewer.role is not Role.vendor:
        return items
    if view.outcome_for_vendor is not None:
        return [item for item in items if item.vendor_id == viewer.vendor_id]
    return [item if item.vendor_id in (None, viewer.vendor_id) else item.model_copy(update={
        "vendor_id": None, "note": None,
        "actor": "another vendor" if item.actor.startswith("vendor:") else item.actor,
    }) for item in items]


def job_out(view: JobView, viewer: Principal) -> JobOut:
    job = view.job
    vendor_id, state, accept_by = job.vendor_id, job.status, job.accept_by
    if view.outcome_for_vendor is not None:
        vendor_id, state, accept_by = viewer.vendor_id, view.outcome_for_vendor, None
    return JobOut(
        id=job.id, kind=job.kind, incident_id=job.incident_id, assessment_id=job.assessment_id,
        job_type=job.job_type,
        priority=job.priority, vendor_id=vendor_id, status=state,
        accept_by=accept_by, attempt=job.attempt, created_at=job.created_at,
        updated_at=job.updated_at, completed_at=job.completed_at,
        report=(CompletionReport.model_validate(job.report)
                if job.report is not None and view.outcome_for_vendor is None else None),
        history=_history_for(view, viewer),
        dead_letters=[] if viewer.role is Role.vendor else
        [DeadLetterOut.model_validate(mark, from_attributes=True) for mark in view.dead_letters],
    )


@jobs_api.get("", response_model=JobPage)
async def list_jobs(caller: JobReader, uow: UnitOfWorkDep,
                    status: JobStatusFilter | None = None, incident_id: uuid.UUID | None = None,
                    limit: PageLimit = 20, offset: PageOffset = 0) -> JobPage:
    """A vendor sees the jobs it holds; an operator every job."""
    views, total = await jobs.list_jobs(uow, caller, status=status, incident_id=incident_id,
                                           limit=limit, offset=offset)
    return JobPage(items=[job_out(v, caller) for v in views], total=total, limit=limit,
                   offset=offset)


@jobs_api.get("/{job_id}", response_model=JobOut)
async def read_job(job_id: uuid.UUID, caller: JobReader, uow: UnitOfWorkDep) -> JobOut:
    return job_out(await jobs.read_job(uow, caller, job_id), caller)


@jobs_api.post("/{job_id}/accept", response_model=JobOut, responses=CONFLICT)
async def accept_job(job_id: uuid.UUID, caller: VendorStaff, ctx: ContextDep,
                     uow: UnitOfWorkDep) -> JobOut:
    return job_out(await jobs.accept_job(uow, ctx, caller, job_id), caller)


@jobs_api.post("/{job_id}/decline", response_model=JobOut, responses=CONFLICT)
async def decline_job(job_id: uuid.UUID, body: DeclineIn, caller: VendorStaff, ctx: ContextDep,
                      uow: UnitOfWorkDep) -> JobOut:
    """The job goes to the next eligible vendor, never back to this one."""
    return job_out(await jobs.decline_job(uow, ctx, caller, job_id, body.reason), caller)


@jobs_api.post("/{job_id}/complete", response_model=JobOut, responses=CONFLICT)
async def complete_job(job_id: uuid.UUID, body: CompletionReportIn, caller: VendorStaff,
                       ctx: ContextDep, uow: UnitOfWorkDep) -> JobOut:
    """The completion report: findings, verified outage and verified losses."""
    return job_out(await jobs.complete_job(uow, ctx, caller, job_id, body), caller)


@jobs_api.post("/{job_id}/cancel", response_model=JobOut, responses=CONFLICT)
async def cancel_job(job_id: uuid.UUID, caller: Operator, ctx: ContextDep,
                     uow: UnitOfWorkDep) -> JobOut:
    return job_out(await jobs.cancel_job(uow, ctx, caller, job_id), caller)


@jobs_api.post("/{job_id}/assign", response_model=JobOut, responses=CONFLICT)
async def assign_job(job_id: uuid.UUID, body: AssignIn, caller: Operator, ctx: ContextDep,
                     uow: UnitOfWorkDep) -> JobOut:
    """Hand the job to a vendor of the operator's choice (within that vendor's capacity)."""
    return job_out(await jobs.assign_job(uow, ctx, caller, job_id, body.vendor_id), caller)


@incidents_api.get("/{incident_id}/triage", response_model=IncidentTriageOut)
async def incident_triage(incident_id: uuid.UUID, caller: TriageReader,
                          uow: UnitOfWorkDep) -> IncidentTriageOut:
    incident, views = await jobs.incident_triage(uow, incident_id)
    return IncidentTriageOut(
        incident_id=incident.id, policy_number=incident.policy_number, status=incident.status,
        priority=incident.priority,
        regulatory_grade=incident.regulatory_grade,
        regulatory_deadline=incident.regulatory_deadline, triaged_at=incident.triaged_at,
        response_completed_at=incident.response_completed_at,
        jobs=[job_out(v, caller) for v in views],
    )


routers = (vendors_api, jobs_api, incidents_api)
