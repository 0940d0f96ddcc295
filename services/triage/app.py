"""Assembles the triage service (the one place its parts are wired together)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import FastAPI

from services.triage import handlers, incidents, jobs, timers, views
from services.triage.context import TriageContext
from services.triage.models import DeadLetter, Inbox, Outbox
from services.triage.settings import TriageSettings
from shared.clock import Clock
from shared.consumer import Handler
from shared.dead_letters import DeadLetterMarks
from shared.events import Event, ResponseEventDeadLettered
from shared.polling import PollingLoop
from shared.service import Runtime, ServiceSpec, Worker, create_service_app
from shared.settings import PlatformSettings

NAME = "triage"


def spec(settings: TriageSettings) -> ServiceSpec:
    """The service, bound to its settings (response times, the timer's pace)."""

    def context(runtime: Runtime) -> TriageContext:
        found: TriageContext = runtime.resources[views.CONTEXT]
        return found

    async def setup(runtime: Runtime) -> None:
        runtime.resources[views.CONTEXT] = TriageContext(runtime.outbox, runtime.clock,
                                                         settings.response_times())

    def workers(runtime: Runtime) -> Sequence[Worker]:
        async def deadline_timer_pass() -> int:
            """Expire, re-dispatch and assign from the database; nothing waits in memory."""
            await timers.run_timer_pass(runtime.uow, context(runtime))
            return 0

        timer = PollingLoop("deadline timer", deadline_timer_pass,
                            interval_seconds=settings.timer_poll_seconds)
        return [timer.run]

    def event_handlers(runtime: Runtime) -> Mapping[type[Event], Handler]:
        return handlers.handlers(context(runtime))

    return ServiceSpec(
        name=NAME,
        title="cyberclaims triage",
        description="Grades incidents and dispatches response jobs to panel vendors, with "
                    "acceptance deadlines and re-dispatch; the vendors' job API.",
        routers=views.routers,
        outbox_model=Outbox,
        inbox_model=Inbox,
        handlers=event_handlers,
        load_batch=incidents.load_batch,
        workers=workers,
        setup=setup,
        dead_letters=lambda runtime: DeadLetterMarks(DeadLetter, runtime.outbox,
                                                     ResponseEventDeadLettered,
                                                     jobs.jobs_of_incident),
    )


def create_app(settings: TriageSettings | None = None, platform: PlatformSettings | None = None,
               clock: Clock | None = None, **options: bool) -> FastAPI:
    settings = settings or TriageSettings()
    return create_service_app(spec(settings), settings, platform=platform, clock=clock,
                              **options)
