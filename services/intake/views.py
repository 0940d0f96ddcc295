"""Intake's HTTP API: thin routers over the use cases in `service`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response, status

from services.intake import service
from services.intake.models import Policy
from services.intake.reports import ReportStore
from services.intake.schemas import (
    POLICY_NUMBER,
    IncidentOut,
    IncidentPage,
    IncidentReportIn,
    IncidentSummary,
    LossIn,
    LossOut,
    PolicyBody,
    PolicyIn,
    PolicyOut,
    RegulatorReportIn,
)
from shared.auth import Principal, Role, require
from shared.inputs import NUL_FREE, PageLimit, PageOffset
from shared.service import RuntimeDep, UnitOfWorkDep

Operator = Annotated[Principal, require(Role.operator)]
PolicyReader = Annotated[Principal, require(Role.operator, Role.policyholder)]
Policyholder = Annotated[Principal, require(Role.policyholder)]
IncidentReader = Annotated[Principal, require(Role.policyholder, Role.operator, Role.adjuster)]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                        pattern=NUL_FREE)]
PolicyNumberPath = Annotated[str, Path(min_length=1, max_length=64, pattern=POLICY_NUMBER)]
REPORTS = "reports"


def report_store(request: Request) -> ReportStore:
    """Read from the request by the endpoint itself rather than injected as a dependency:
    FastAPI solves each dependency like an endpoint of its own (its path, query, header and
    cookie parameters, its cache key), which the busiest endpoint would pay on every report."""
    reports: ReportStore = request.app.state.runtime.resources[REPORTS]
    return reports


policies_api = APIRouter(prefix="/v1/policies", tags=["policies"])
incidents_api = APIRouter(prefix="/v1/incidents", tags=["incidents"])


def _policy_out(policy: Policy) -> PolicyOut:
    return PolicyOut.model_validate(policy, from_attributes=True)


@policies_api.post("", status_code=status.HTTP_201_CREATED, response_model=PolicyOut)
async def register_policy(body: PolicyIn, _: Operator, runtime: RuntimeDep,
                          uow: UnitOfWorkDep) -> PolicyOut:
    policy = await service.register_policy(uow, runtime.outbox, runtime.clock, body)
    return _policy_out(policy)


@policies_api.put("/{policy_number}", response_model=PolicyOut)
async def update_policy(policy_number: PolicyNumberPath, body: PolicyBody, _: Operator, runtime: RuntimeDep,
                        uow: UnitOfWorkDep) -> PolicyOut:
    policy = await service.update_policy(uow, runtime.outbox, runtime.clock, policy_number, body)
    return _policy_out(policy)


@policies_api.get("/{policy_number}", response_model=PolicyOut)
async def read_policy(policy_number: PolicyNumberPath, caller: PolicyReader, uow: UnitOfWorkDep) -> PolicyOut:
    return _policy_out(await service.visible_policy(uow, caller, policy_number))


@incidents_api.post("", status_code=status.HTTP_201_CREATED, response_model=IncidentOut,
                responses={409: {"description": "Idempotency-Key reused with another body"}})
async def report_incident(body: IncidentReportIn, key: IdempotencyKey, caller: Policyholder,
                          request: Request) -> Response:
    """First notice of loss. Retrying with the same Idempotency-Key returns the same incident."""
    incident, replayed = await service.report_incident(report_store(request), caller, key, body)
    # Serialised here: the incident is an `IncidentOut` already, and FastAPI would validate
    # it against `response_model` once more on the busiest path of the system.
    headers = {"Location": f"/v1/incidents/{incident.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(incident.model_dump_json(), status.HTTP_201_CREATED, headers,
                    media_type="application/json")


@incidents_api.get("", response_model=IncidentPage)
async def list_incidents(caller: IncidentReader, uow: UnitOfWorkDep,
                         limit: PageLimit = 20, offset: PageOffset = 0) -> IncidentPage:
    rows, total = await service.list_incidents(uow, caller, limit=limit, offset=offset)
    return IncidentPage(items=[IncidentSummary.model_validate(r, from_attributes=True) for r in rows],
                        total=total, limit=limit, offset=offset)


@incidents_api.get("/{incident_id}", response_model=IncidentOut)
async def read_incident(incident_id: uuid.UUID, caller: IncidentReader,
                        uow: UnitOfWorkDep) -> IncidentOut:
    return await service.read_incident(uow, caller, incident_id)


@incidents_api.post("/{incident_id}/losses", status_code=status.HTTP_201_CREATED,
                response_model=LossOut,
                responses={409: {"description": "the incident's claim is already decided"}})
async def submit_loss(incident_id: uuid.UUID, body: LossIn, caller: Policyholder,
                      runtime: RuntimeDep, uow: UnitOfWorkDep) -> LossOut:
    loss = await service.submit_loss(uow, runtime.outbox, runtime.clock, caller, incident_id, body)
    return LossOut.model_validate(loss, from_attributes=True)


@incidents_api.post("/{incident_id}/regulator-report", response_model=IncidentOut)
async def confirm_regulator_report(incident_id: uuid.UUID, body: RegulatorReportIn,
                                   caller: Policyholder, runtime: RuntimeDep,
                                   uow: UnitOfWorkDep) -> IncidentOut:
    """The policyholder confirms it reported the incident to the regulator (stops reminders)."""
    return await service.file_regulator_report(uow, runtime.outbox, runtime.clock, caller,
                                               incident_id, body)


routers = (policies_api, incidents_api)
