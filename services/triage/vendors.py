"""The panel's vendor registry: registering and updating vendors (operators)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.triage.context import TriageContext
from services.triage.dispatch import fill_vendor, vendor_load
from services.triage.models import Vendor
from services.triage.schemas import VendorBody, VendorIn
from shared.db import UnitOfWork
from shared.problems import Conflict, NotFound


def _apply_vendor(vendor: Vendor, body: VendorBody, now: datetime) -> None:
    vendor.name = body.name
    vendor.capabilities = [c.value for c in body.capabilities]
    vendor.regions = list(body.regions)
    vendor.capacity = body.capacity
    vendor.rating = body.rating
    vendor.active = body.active
    vendor.updated_at = now


async def register_vendor(uow: UnitOfWork, ctx: TriageContext, body: VendorIn) -> Vendor:
    """A new panel vendor; waiting jobs it may take are dispatched to it at once."""
    now = ctx.clock.now()
    if await uow.session.get(Vendor, body.vendor_id) is not None:
        raise Conflict(f"vendor {body.vendor_id} already exists", field="vendor_id")
    vendor = Vendor(vendor_id=body.vendor_id, open_jobs=0, created_at=now)
    _apply_vendor(vendor, body, now)
    uow.session.add(vendor)
    try:
        await uow.session.flush()
    except IntegrityError as exc:  # registered at the same moment by another request
        raise Conflict(f"vendor {body.vendor_id} already exists", field="vendor_id") from exc
    return await _settle_vendor(uow, ctx, vendor, now)


async def update_vendor(uow: UnitOfWork, ctx: TriageContext, vendor_id: str,
                        body: VendorBody) -> Vendor:
    """Replace a vendor's terms. Its open jobs stay; more capacity takes waiting jobs at once."""
    now = ctx.clock.now()
    vendor = await uow.session.get(Vendor, vendor_id, with_for_update=True)
    if vendor is None:
        raise NotFound(f"vendor {vendor_id} not found")
    _apply_vendor(vendor, body, now)
    await uow.session.flush()
    return await _settle_vendor(uow, ctx, vendor, now)


async def _settle_vendor(uow: UnitOfWork, ctx: TriageContext, vendor: Vendor,
                         now: datetime) -> Vendor:
    await fill_vendor(uow.session, ctx, vendor_load(vendor), now)
    await uow.session.refresh(vendor)
    await uow.commit()
    return vendor


async def list_vendors(uow: UnitOfWork) -> list[Vendor]:
    return list(await uow.session.scalars(select(Vendor).order_by(Vendor.vendor_id)))
