"""Imported loss history: an insurer starting on cyberclaims loads the loss bordereau of its
legacy system (exposures per policy-period, claims with dated reserve and payment movements),
so its statistics and triangles have years of development from the first day.

The rows go into the read model's own tables marked `source = history`, in one transaction
with the import's record, after every row has been checked (nothing is half-written); a
rebuild from the topics keeps them. Ids are derived from the import id and the sender's row
ids, so nothing collides with what the topics bring. The organisation ids stay inside, as the
live ones do: k-anonymity counts them, no answer names them."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta

from services.insights import service
from services.insights.models import (
    ClaimRecord,
    Exposure,
    HistoryImport,
    IncidentRecord,
    PolicyRecord,
    Source,
)
from services.insights.schemas import Bordereau, HistoricalClaim, HistoricalExposure, ImportOut
from shared.db import UnitOfWork
from shared.money import ZERO
from shared.problems import Conflict, Unprocessable

NAMESPACE = uuid.UUID("6f1d8f0e-3c55-4a43-9a8e-2f1f3c7b9d21")
"""Of the ids derived from an import's row ids (uuid5)."""


def _derived(import_id: str, *parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "/".join((import_id, *map(str, parts))))


def policy_key(import_id: str, exposure_id: str) -> str:
    """The read model's policy number of an imported exposure (never a live one's)."""
    return f"history:{_derived(import_id, 'exposure', exposure_id).hex}"


def digest(bordereau: Bordereau) -> str:
    canonical = json.dumps(bordereau.model_dump(mode="json"), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check(bordereau: Bordereau, currency: str, now: datetime) -> None:
    """What the schema cannot say about a row: its dates in order and in the past, its
    currency the platform's, its exposure present; each problem names the row's field."""
    exposures: dict[str, HistoricalExposure] = {}
    for index, exposure in enumerate(bordereau.exposures):
        where = f"exposures.{index}"
        if exposure.exposure_id in exposures:
            raise Unprocessable(f"exposure {exposure.exposure_id!r} is given twice",
                                field=f"{where}.exposure_id")
        if exposure.currency != currency:
            raise Unprocessable(f"amounts are in {currency}", field=f"{where}.currency")
        if exposure.period_end <= exposure.period_start:
            raise Unprocessable("the period ends after it starts", field=f"{where}.period_end")
        if exposure.period_end - exposure.period_start > timedelta(days=800):
            raise Unprocessable("a policy period is at most two years; give one row per period",
                                field=f"{where}.period_end")
        exposures[exposure.exposure_id] = exposure
    claims: set[str] = set()
    for index, claim in enumerate(bordereau.claims):
        where = f"claims.{index}"
        if claim.claim_id in claims:
            raise Unprocessable(f"claim {claim.claim_id!r} is given twice",
                                field=f"{where}.claim_id")
        claims.add(claim.claim_id)
        covering = exposures.get(claim.exposure_id)
        if covering is None:
            raise Unprocessable(f"no exposure {claim.exposure_id!r} in this import",
                                field=f"{where}.exposure_id")
        if not covering.period_start <= claim.occurred_at < covering.period_end:
            raise Unprocessable("the incident occurred outside its exposure's period",
                                field=f"{where}.occurred_at")
        _check_claim_dates(claim, where, now)


def _check_claim_dates(claim: HistoricalClaim, where: str, now: datetime) -> None:
    milestones = (("reported_at", claim.reported_at), ("dispatched_at", claim.dispatched_at),
                  ("contained_at", claim.contained_at))
    for name, moment in milestones:
        if moment is not None and moment < claim.occurred_at:
            raise Unprocessable("before the incident occurred", field=f"{where}.{name}")
    if claim.reported_at > now:
        raise Unprocessable("history is in the past", field=f"{where}.reported_at")
    closed = False
    for index, movement in enumerate(claim.movements):
        field = f"{where}.movements.{index}"
        if not claim.reported_at <= movement.at <= now:
            raise Unprocessable("a movement is dated between the report and now",
                                field=f"{field}.at")
        if index and movement.at < claim.movements[index - 1].at:
            raise Unprocessable("movements are in date order", field=f"{field}.at")
        if closed:
            raise Unprocessable("nothing moves after the claim was closed", field=field)
        if movement.kind == service.MovementKind.paid and movement.amount <= ZERO:
            raise Unprocessable("a payment is above zero", field=f"{field}.amount")
        if movement.kind == service.MovementKind.closed and movement.amount != ZERO:
            raise Unprocessable("closing carries no amount", field=f"{field}.amount")
        closed = movement.kind == service.MovementKind.closed


async def import_history(uow: UnitOfWork, bordereau: Bordereau, *, by: str,
                         now: datetime) -> tuple[ImportOut, bool]:
    """Write a checked bordereau (or find it written before); returns the summary and
    whether this call wrote it. The same import id with other rows is a conflict."""
    version = await service.count_change(uow)  # its lock orders this import with any other
    session = uow.session
    fingerprint = digest(bordereau)
    known = await session.get(HistoryImport, bordereau.import_id)
    if known is not None:
        if known.digest != fingerprint:
            raise Conflict(f"import {bordereau.import_id!r} was made with other rows; "
                           "a new import takes a new id", field="import_id")
        return _summary(known), False
    by_exposure = {exposure.exposure_id: exposure for exposure in bordereau.exposures}
    for exposure in bordereau.exposures:
        _add_exposure(uow, bordereau.import_id, exposure, version)
    for claim in bordereau.claims:
        _add_claim(uow, bordereau.import_id, claim, by_exposure[claim.exposure_id], version)
    record = HistoryImport(import_id=bordereau.import_id, digest=fingerprint,
                           exposures=len(bordereau.exposures), claims=len(bordereau.claims),
                           movements=sum(len(claim.movements) for claim in bordereau.claims),
                           imported_at=now, imported_by=by)
    session.add(record)
    return _summary(record), True


def _summary(record: HistoryImport) -> ImportOut:
    return ImportOut(import_id=record.import_id, exposures=record.exposures,
                     claims=record.claims, movements=record.movements,
                     imported_at=record.imported_at.isoformat())


def _add_exposure(uow: UnitOfWork, import_id: str, exposure: HistoricalExposure,
                  version: int) -> None:
    policy_number = policy_key(import_id, exposure.exposure_id)
    uow.session.add(PolicyRecord(
        policy_number=policy_number, org_id=exposure.org_id, industry=exposure.industry.value,
        region=exposure.region, size_band=exposure.size_band, currency=exposure.currency,
        annual_premium=exposure.annual_premium, period_start=exposure.period_start,
        period_end=exposure.period_end, version=1, changed_in=version, source=Source.history))
    uow.session.add_all(
        Exposure(policy_number=policy_number, quarter=quarter, org_id=exposure.org_id,
                 seconds=seconds)
        for quarter, seconds in service.quarter_seconds(exposure.period_start,
                                                        exposure.period_end).items())


def _add_claim(uow: UnitOfWork, import_id: str, claim: HistoricalClaim,
               exposure: HistoricalExposure, version: int) -> None:
    """The claim as the live handlers would have built it: opened when reported, each movement
    applied in date order."""
    incident_id = _derived(import_id, "incident", claim.claim_id)
    claim_id = _derived(import_id, "claim", claim.claim_id)
    policy_number = policy_key(import_id, claim.exposure_id)
    outage = None if claim.outage_hours is None else int(claim.outage_hours * 3600)
    uow.session.add(IncidentRecord(
        incident_id=incident_id, org_id=exposure.org_id, policy_number=policy_number,
        category=claim.category.value,
        attack_vector=claim.attack_vector,
        occurred_at=claim.occurred_at, reported_at=claim.reported_at,
        first_dispatched_at=claim.dispatched_at, contained_at=claim.contained_at,
        outage_seconds=outage, changed_in=version, source=Source.history))
    record = ClaimRecord(claim_id=claim_id, incident_id=incident_id, org_id=exposure.org_id,
                         policy_number=policy_number, opened_at=claim.reported_at, paid=ZERO,
                         changed_in=version, source=Source.history)
    uow.session.add(record)
    for index, movement in enumerate(claim.movements):
        service.move(uow, _derived(import_id, "movement", claim.claim_id, index), record,
                     movement.kind, movement.amount, movement.at)
