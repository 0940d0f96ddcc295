"""Assembles the notify service (the one place its parts are wired together)."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify import handlers, views
from services.notify.channels import EmailSender, WebhookSender, new_http_client
from services.notify.delivery import DeliveryWorker
from services.notify.fanout import Notifier
from services.notify.models import Inbox, Outbox
from services.notify.reminders import ReminderWorker
from services.notify.rendering import Templates
from services.notify.settings import NotifySettings
from services.notify.targets import TargetPolicy
from shared.clock import Clock
from shared.service import Runtime, ServiceSpec, create_service_app
from shared.settings import Environment, PlatformSettings

NAME = "notify"


def spec(settings: NotifySettings) -> ServiceSpec:
    """The spec, bound to these settings (team addresses, SMTP server, retry schedule)."""

    async def setup(runtime: Runtime) -> None:
        notifier = Notifier(settings=settings, clock=runtime.clock, outbox=runtime.outbox,
                            templates=Templates())
        http = new_http_client(settings)
        email = EmailSender(settings)
        targets = TargetPolicy(settings.webhook_allowlist, require_https=runtime.platform.env
                               not in (Environment.development, Environment.test),
                               lookups=settings.sends_in_flight)
        delivery_worker = DeliveryWorker(runtime.uow, settings, runtime.clock, runtime.outbox,
                                         WebhookSender(http, targets), email)
        runtime.resources.update(
            settings=settings, notifier=notifier, http=http, email=email, targets=targets,
            delivery_worker=delivery_worker,
            reminder_worker=ReminderWorker(runtime.uow, notifier, delivery_worker.wake),
        )

    async def teardown(runtime: Runtime) -> None:
        await runtime.resources["http"].aclose()
        await runtime.resources["email"].close()
        runtime.resources["targets"].close()

    return ServiceSpec(
        name=NAME,
        title="cyberclaims notify",
        description="Signed webhooks, email and an in-app feed for everyone involved; "
                    "regulatory deadline reminders.",
        routers=views.routers,
        operator_lists=("deliveries",),
        outbox_model=Outbox,
        inbox_model=Inbox,
        handlers=lambda runtime: handlers.handlers(runtime.resources["notifier"]),
        load_batch=handlers.load_batch,
        workers=lambda runtime: [runtime.resources["delivery_worker"].run,
                                 runtime.resources["reminder_worker"].run],
        setup=setup,
        teardown=teardown,
    )


def create_app(settings: NotifySettings | None = None, platform: PlatformSettings | None = None,
               clock: Clock | None = None, **options: bool) -> FastAPI:
    settings = settings or NotifySettings()
    return create_service_app(spec(settings), settings, platform=platform, clock=clock,
                              **options)
