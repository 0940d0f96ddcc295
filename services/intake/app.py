"""Assembles the intake service (the one place its parts are wired together)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from services.intake import handlers, views
from services.intake.models import Inbox, Outbox
from services.intake.reports import ReportStore
from services.intake.safety_net import UntriagedIncidents
from services.intake.settings import IntakeSettings
from shared.clock import Clock
from shared.service import Runtime, ServiceSpec, Worker, create_service_app
from shared.settings import PlatformSettings

NAME = "intake"
SAFETY_NET = "safety_net"

def spec(settings: IntakeSettings) -> ServiceSpec:
    """The service, bound to its settings."""

    async def setup(runtime: Runtime) -> None:
        runtime.resources[views.REPORTS] = ReportStore(runtime.uow, runtime.outbox,
                                                       runtime.clock)
        runtime.resources[SAFETY_NET] = UntriagedIncidents(runtime.uow, runtime.clock, settings,
                                                           wake_relay=runtime.relay.wake)

    def workers(runtime: Runtime) -> Sequence[Worker]:
        return [runtime.resources[SAFETY_NET].run]

    return ServiceSpec(
        name=NAME,
        title="cyberclaims intake",
        description="Policies, first notice of loss and each incident's status timeline.",
        routers=views.routers,
        outbox_model=Outbox,
        inbox_model=Inbox,
        handlers=lambda _runtime: handlers.handlers(),
        load_batch=handlers.load_batch,
        workers=workers,
        setup=setup,
    )


def create_app(settings: IntakeSettings | None = None, platform: PlatformSettings | None = None,
               clock: Clock | None = None, **options: bool) -> FastAPI:
    settings = settings or IntakeSettings()
    return create_service_app(spec(settings), settings, platform=platform, clock=clock,
                              **options)
