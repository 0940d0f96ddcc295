"""Assembles the insights service (the one place its parts are wired together)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from services.insights import handlers, service, triangles, views
from services.insights.models import Inbox, Outbox
from services.insights.page import Pages
from services.insights.settings import InsightsSettings
from services.insights.statistics import ExperienceCache, valuation_of
from shared.clock import Clock
from shared.service import Runtime, ServiceSpec, create_service_app
from shared.settings import PlatformSettings

NAME = "insights"
WARM_GROUPINGS: tuple[tuple[str, ...], ...] = ((), ("industry",), ("period",))
"""Answered at start-up: the totals, the page's default grouping, and the accident quarters
every triangle asks for."""
SMALL_TRIANGLE = {"2025Q1": [Decimal(1), Decimal(2), Decimal(3)],
                  "2025Q2": [Decimal(1), Decimal(2)], "2025Q3": [Decimal(1)]}

log = logging.getLogger(__name__)


async def warm_up(runtime: Runtime) -> None:
    """What the first query after a start would otherwise pay (about 2 s for chain ladder's
    first fit, which loads its own modules; seconds for a large book's aggregates), paid
    before the service answers at all: the lifespan runs this before the first request, so
    readiness (still one `SELECT 1`) says ready only once warm. A database not reachable yet
    leaves the aggregates to the first query, as before, rather than failing the start."""
    await asyncio.to_thread(triangles.development, SMALL_TRIANGLE)
    k = runtime.resources["settings"].min_organisations
    valuation = valuation_of(runtime.clock.now())
    try:
        async with runtime.uow() as uow:
            for group_by in WARM_GROUPINGS:
                await runtime.resources["experience"].experience(uow.session, group_by, {}, k,
                                                                 valuation)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("insights: the statistics were not loaded at start-up (%s: %s); the first "
                    "query loads them", type(exc).__name__, exc)


def spec(settings: InsightsSettings) -> ServiceSpec:
    """The spec, bound to these settings (the privacy threshold k)."""

    async def setup(runtime: Runtime) -> None:
        runtime.resources.update(settings=settings, pages=Pages(), experience=ExperienceCache())
        await warm_up(runtime)

    return ServiceSpec(
        name=NAME,
        title="cyberclaims insights",
        description="Loss experience for pricing, reserving and the regulator: a read model of "
                    "every topic, k-anonymous statistics, loss triangles with chain ladder; "
                    "the page at /insights.",
        routers=views.routers,
        outbox_model=Outbox,
        inbox_model=Inbox,
        handlers=lambda runtime: handlers.handlers(),
        load_batch=service.load_batch,
        setup=setup,
    )


def create_app(settings: InsightsSettings | None = None, platform: PlatformSettings | None = None,
               clock: Clock | None = None, **options: bool) -> FastAPI:
    settings = settings or InsightsSettings()
    return create_service_app(spec(settings), settings, platform=platform, clock=clock,
                              **options)
