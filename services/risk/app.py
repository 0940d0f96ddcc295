"""Assembles the risk service (the one place its parts are wired together)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import FastAPI

from services.risk import handlers, timers, views
from services.risk.context import RiskContext
from services.risk.models import Inbox, Outbox
from services.risk.settings import RiskSettings
from shared.clock import Clock
from shared.consumer import Handler
from shared.events import Event
from shared.polling import PollingLoop
from shared.service import Runtime, ServiceSpec, Worker, create_service_app
from shared.settings import PlatformSettings

NAME = "risk"


def spec(settings: RiskSettings) -> ServiceSpec:
    """The service, bound to its settings (the risk rulebook, the reminder timer's pace)."""

    def context(runtime: Runtime) -> RiskContext:
        found: RiskContext = runtime.resources[views.CONTEXT]
        return found

    async def setup(runtime: Runtime) -> None:
        runtime.resources[views.CONTEXT] = RiskContext(runtime.outbox, runtime.clock,
                                                       settings.rules())

    def workers(runtime: Runtime) -> Sequence[Worker]:
        async def reminder_pass() -> int:
            """Due-soon and overdue reminders from the database; nothing waits in memory."""
            await timers.run_reminder_pass(runtime.uow, context(runtime))
            return 0

        timer = PollingLoop("remediation timer", reminder_pass,
                            interval_seconds=settings.timer_poll_seconds)
        return [timer.run]

    def event_handlers(runtime: Runtime) -> Mapping[type[Event], Handler]:
        return handlers.handlers(context(runtime))

    return ServiceSpec(
        name=NAME,
        title="cyberclaims risk",
        description="Before the incident: security assessments by panel vendors, score, tier, "
                    "premium modifier and remediation plan, exposure alerts and reminders.",
        routers=views.routers,
        outbox_model=Outbox,
        inbox_model=Inbox,
        handlers=event_handlers,
        workers=workers,
        setup=setup,
    )


def create_app(settings: RiskSettings | None = None, platform: PlatformSettings | None = None,
               clock: Clock | None = None, **options: bool) -> FastAPI:
    settings = settings or RiskSettings()
    return create_service_app(spec(settings), settings, platform=platform, clock=clock,
                              **options)
