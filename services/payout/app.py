"""Assembles the payout service (the one place its parts are wired together)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from fastapi import FastAPI

from services.payout import claims, handlers, views
from services.payout.context import Context, Rules
from services.payout.models import DeadLetter, Inbox, Outbox
from services.payout.payments import PaymentProvider, PaymentWorker
from services.payout.safety_net import StuckClaimsAndPayments
from services.payout.settings import PayoutSettings
from shared.clock import Clock
from shared.dead_letters import DeadLetterMarks
from shared.events import ClaimEventDeadLettered
from shared.service import Runtime, ServiceSpec, Worker, create_service_app
from shared.settings import PlatformSettings

NAME = "payout"


def spec(settings: PayoutSettings) -> ServiceSpec:
    async def setup(runtime: Runtime) -> None:
        ctx = Context(outbox=runtime.outbox, clock=runtime.clock,
                      rules=Rules(auto_approval_limit=settings.auto_approval_limit,
                                  two_approver_threshold=settings.two_approver_threshold,
                                  vendor_verification_limit=settings.vendor_verification_limit))
        client = httpx.AsyncClient(base_url=settings.payment_provider_url,
                                   timeout=settings.payment_timeout_seconds)
        payments = PaymentWorker(runtime.uow, ctx, PaymentProvider(
            client, deadline_seconds=settings.payment_timeout_seconds), settings)
        # A commit that staged events may have approved a claim (an automatic approval in an
        # event handler): its payment is sent at once rather than at the worker's next poll.
        wake_relay = runtime.uow.on_events_committed

        def events_committed() -> None:
            if wake_relay is not None:
                wake_relay()
            payments.wake()

        runtime.uow.on_events_committed = events_committed
        runtime.resources.update(
            context=ctx, provider_client=client, payments=payments,
            safety_net=StuckClaimsAndPayments(runtime.uow, ctx, settings, wake_payments=payments.wake),
        )

    async def teardown(runtime: Runtime) -> None:
        await runtime.resources["provider_client"].aclose()

    def workers(runtime: Runtime) -> Sequence[Worker]:
        return [runtime.resources["payments"].run, runtime.resources["safety_net"].run]

    return ServiceSpec(
        name=NAME,
        title="cyberclaims payout",
        description="Loss verification, payout decisions, adjuster approvals and exactly-once "
                    "payment; the adjuster console at /console.",
        routers=views.routers,
        operator_lists=("payments",),
        outbox_model=Outbox,
        inbox_model=Inbox,
        handlers=lambda runtime: handlers.handlers(runtime.resources["context"]),
        load_batch=claims.load_batch,
        workers=workers,
        setup=setup,
        teardown=teardown,
        dead_letters=lambda runtime: DeadLetterMarks(DeadLetter, runtime.outbox,
                                                     ClaimEventDeadLettered,
                                                     handlers.claim_of_incident),
    )


def create_app(settings: PayoutSettings | None = None, platform: PlatformSettings | None = None,
               clock: Clock | None = None, **options: bool) -> FastAPI:
    settings = settings or PayoutSettings()
    return create_service_app(spec(settings), settings, platform=platform, clock=clock,
                              **options)
