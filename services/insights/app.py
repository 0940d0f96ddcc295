"""Assembles the insights service (the one place its parts are wired together)."""

from __future__ import annotations

from fastapi import FastAPI

from services.insights import handlers, views
from services.insights.models import Inbox, Outbox
from services.insights.page import Pages
from services.insights.settings import InsightsSettings
from services.insights.statistics import ExperienceCache
from shared.clock import Clock
from shared.service import Runtime, ServiceSpec, create_service_app
from shared.settings import PlatformSettings

NAME = "insights"


def spec(settings: InsightsSettings) -> ServiceSpec:
    """The spec, bound to these settings (the privacy threshold k)."""

    async def setup(runtime: Runtime) -> None:
        runtime.resources.update(settings=settings, pages=Pages(), experience=ExperienceCache())

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
        setup=setup,
    )


def create_app(settings: InsightsSettings | None = None, platform: PlatformSettings | None = None,
               clock: Clock | None = None, **options: bool) -> FastAPI:
    settings = settings or InsightsSettings()
    return create_service_app(spec(settings), settings, platform=platform, clock=clock,
                              **options)
