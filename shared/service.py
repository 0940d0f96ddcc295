"""Assembles a service: settings, engine, outbox relay, consumer and workers in one lifespan.

Every service is the same shape: a `ServiceSpec` names its routers, tables, event handlers
and background workers, and `create_service_app` builds the FastAPI app around it. Everything
with a connection is created when the app starts, not at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.apidocs import install_api_docs
from shared.auth import KeySet, Principal, Role, TokenVerifier, audience_of, require
from shared.clock import Clock, SystemClock
from shared.consumer import BatchLoader, EventConsumer, Handler, InboxColumns
from shared.db import UnitOfWork, UnitOfWorkFactory, create_engine
from shared.dead_letters import DeadLetterMarks
from shared.events import Event
from shared.http_edge import EdgeLimits, RequestLimitsMiddleware, guard_authenticated_routes
from shared.inputs import JsonBodiesOnly
from shared.kafka import KafkaPublisher, ensure_topics
from shared.logs import configure_logging, correlation_id
from shared.openapi import document_error_responses
from shared.outbox import Outbox, OutboxColumns, OutboxRelay
from shared.polling import PollingLoop
from shared.problems import install_problem_handlers
from shared.settings import PlatformSettings, ServiceSettings
from shared.tracing import instrument_engine, provider_for, trace_app, traced_by

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter("cyberclaims_http_requests_total", "HTTP requests",
                        ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram("cyberclaims_http_request_seconds", "HTTP latency",
                         ["service", "method", "route"])
BROKER_UP = Gauge("cyberclaims_broker_up",
                  "1 while the service reaches its Kafka broker, 0 while it does not", ["service"])

Worker = Callable[[], Awaitable[None]]
MAX_CORRELATION_ID = 128
SHUTDOWN_TIMEOUT_SECONDS = 20.0
GC_YOUNG_THRESHOLD = 10_000


@dataclass
class Runtime:
    """What a running service holds: one of each, created at start-up."""

    name: str
    platform: PlatformSettings
    clock: Clock
    engine: AsyncEngine
    uow: UnitOfWorkFactory
    outbox: Outbox
    relay: OutboxRelay
    publisher: KafkaPublisher
    tokens: TokenVerifier
    consumer: EventConsumer | None = None
    limits: EdgeLimits | None = None
    dead_letters: DeadLetterMarks | None = None
    resources: dict[str, Any] = field(default_factory=dict)

    async def ready(self) -> dict[str, str]:
        """What the service needs to answer: its database. Not the broker: while Kafka is
        down the outbox buffers events and the service keeps taking reports; broker health
        is the `cyberclaims_broker_up` gauge (and an alert), not a reason to stop serving."""
        try:
            async with self.engine.connect() as connection:
                await asyncio.wait_for(connection.execute(text("SELECT 1")), timeout=2)
        except Exception as exc:
            return {"database": f"unavailable: {type(exc).__name__}"}
        return {"database": "ok"}


class BrokerProbe:
    """Sets `cyberclaims_broker_up` from a metadata request every `interval_seconds`."""

    def __init__(self, service: str, publisher: KafkaPublisher, *,
                 interval_seconds: float) -> None:
        self._up = BROKER_UP.labels(service)
        self._publisher = publisher
        self._loop = PollingLoop(f"{service} broker probe", self._probe,
                                 interval_seconds=interval_seconds)

    async def run(self) -> None:
        await self._loop.run()

    async def _probe(self) -> int:
        self._up.set(1 if await self._publisher.reachable() else 0)
        return 0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    outbox_model: type[OutboxColumns]
    inbox_model: type[InboxColumns]
    handlers: Callable[[Runtime], Mapping[type[Event], Handler]] = lambda _: {}
    load_batch: BatchLoader | None = None
    """What the handlers of a batch will read, read before them (`EventConsumer`)."""
    workers: Callable[[Runtime], Sequence[Worker]] = lambda _: ()
    setup: Callable[[Runtime], Awaitable[None]] | None = None
    teardown: Callable[[Runtime], Awaitable[None]] | None = None
    dead_letters: Callable[[Runtime], DeadLetterMarks] | None = None
    """How a dead-lettered event about an incident marks it and alerts operators."""
    operator_lists: Sequence[str] = ()
    """What else the operators' page lists from this service ("payments", "deliveries")."""


def create_service_app(
    spec: ServiceSpec,
    settings: ServiceSettings,
    *,
    platform: PlatformSettings | None = None,
    clock: Clock | None = None,
    run_workers: bool = True,
) -> FastAPI:
    """The service's ASGI app. `run_workers=False` serves the API only (tests, split pods)."""
    platform = platform or PlatformSettings()
    clock = clock or SystemClock()
    database_url = settings.resolved_database_url(spec.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, platform.log_level)
        engine = create_engine(database_url, pool_size=platform.database_pool_size)
        tracer_provider = traced_by(app)
        if tracer_provider is not None:
            instrument_engine(engine, tracer_provider)
        publisher = KafkaPublisher(platform.kafka_bootstrap, client_id=f"cyberclaims-{spec.name}",
                                   idempotent=platform.kafka_idempotent_producer)
        relay = OutboxRelay(engine, spec.outbox_model, publisher,
                            service=spec.name, clock=clock, poll_seconds=platform.outbox_poll_seconds)
        # Credentials live in real time: the injected clock moves business deadlines (a test
        # that jumps 72 hours ahead), never a token's expiry or the key set's refresh.
        keys = KeySet(platform.resolved_jwks_url(),
                      refresh_seconds=platform.jwks_refresh_seconds)
        await keys.start()
        tokens = TokenVerifier(platform, audience=settings.audience or audience_of(spec.name),
                               keys=keys)
        runtime = Runtime(
            name=spec.name, platform=platform, clock=clock, engine=engine,
            uow=UnitOfWorkFactory(engine, on_events_committed=relay.wake),
            outbox=Outbox(spec.outbox_model, source=f"/cyberclaims/{spec.name}", clock=clock),
            relay=relay, publisher=publisher, tokens=tokens,
            limits=EdgeLimits.from_settings(platform),
        )
        if platform.kafka_create_topics:
            await ensure_topics(platform.kafka_bootstrap)
        await publisher.start()
        if spec.setup is not None:
            await spec.setup(runtime)
        handlers = spec.handlers(runtime)
        if spec.dead_letters is not None:
            runtime.dead_letters = spec.dead_letters(runtime)
        if handlers:
            runtime.consumer = EventConsumer(
                name=spec.name, group_id=f"cyberclaims-{spec.name}",
                bootstrap=platform.kafka_bootstrap, handlers=handlers, uow=runtime.uow,
                inbox_model=spec.inbox_model, dead_letters=publisher, clock=clock,
                max_attempts=platform.consumer_max_attempts,
                session_timeout_ms=platform.kafka_session_timeout_ms,
                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                batch_size=platform.consumer_batch_size,
                commit_interval_ms=platform.consumer_commit_interval_ms,
                linger_ms=settings.consumer_linger_ms,
                tracer=None if tracer_provider is None else tracer_provider.get_tracer(__name__),
                marks=runtime.dead_letters, load_batch=spec.load_batch,
            )
        app.state.runtime = runtime
        app.state.tokens = runtime.tokens
        tasks: list[asyncio.Task[None]] = []
        if run_workers:
            probe = BrokerProbe(spec.name, publisher,
                                interval_seconds=platform.broker_probe_seconds)
            workers: list[Worker] = [relay.run, probe.run, *spec.workers(runtime)]
            if runtime.consumer is not None:
                workers.append(runtime.consumer.run)
            tasks = [asyncio.create_task(_supervised(spec.name, w), name=_worker_name(w))
                     for w in workers]
        _tune_garbage_collector()
        log.info("%s started", spec.name)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_SECONDS)
                for task in stuck:
                    log.warning("%s: a worker did not stop in time: %r", spec.name, task)
            if spec.teardown is not None:
                await spec.teardown(runtime)
            await publisher.stop()
            await keys.aclose()
            await engine.dispose()
            if tracer_provider is not None:
                tracer_provider.force_flush()  # the last spans, before the process exits
            gc.unfreeze()  # a process that starts another app (tests do) collects this one's
            log.info("%s stopped", spec.name)

    app = FastAPI(title=spec.title, description=spec.description, version="1.0.0",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    install_api_docs(app)  # served from the installed package: no CDN
    install_problem_handlers(app)
    app.add_middleware(JsonBodiesOnly)  # inside the limits: a 413 or 431 is decided first
    app.add_middleware(RequestLimitsMiddleware, max_header_bytes=platform.max_header_bytes,
                       max_body_bytes=platform.max_body_bytes)
    _install_observability(app, spec.name)  # outermost: its headers and counts cover a 431 too
    tracer_provider = provider_for(spec.name, platform)
    if tracer_provider is not None:
        trace_app(app, tracer_provider)
    for router in spec.routers:
        # The routers' routes themselves (their paths and tags are complete), not
        # `include_router`: FastAPI 0.165 serves an included route through a handler of its
        # own, built from the route, so the `AuthenticatedEdge` that
        # `guard_authenticated_routes` puts in front of the route's app would be skipped, and
        # `app.router.routes` would hold the included router instead of its routes. Routes
        # built on a router of their own do not see `app.dependency_overrides`, which nothing
        # here uses.
        app.router.routes.extend(router.routes)
    if spec.dead_letters is not None or spec.operator_lists:
        # Imported here: the operators' routes are built on this module's dependencies.
        from shared.operations import operations_router

        app.router.routes.extend(operations_router(
            dead_letters=spec.dead_letters is not None, lists=spec.operator_lists).routes)
    guard_authenticated_routes(app)
    document_error_responses(app)
    return app


def _tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the busy path.

    Everything built at start-up (modules, the ORM's mappers, pydantic's validators, the
    routes: some 130,000 objects) lives as long as the process, yet every full collection
    walked all of it again, and with the default threshold (a collection every 700 net new
    objects: every few requests) collections took about a quarter of a busy service's CPU.
    Start-up objects are frozen out of the collector's sight, and the youngest generation is
    collected every GC_YOUNG_THRESHOLD net new objects instead: almost all of a request's
    objects are freed by reference counting anyway, so the collector finds little to do.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _worker_name(worker: Worker) -> str:
    return getattr(worker, "__qualname__", repr(worker))


async def _supervised(service: str, worker: Worker) -> None:
    """Keep a background worker alive: log and restart it if it crashes."""
    name = _worker_name(worker)
    while True:
        try:
            await worker()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s worker %s crashed; restarting", service, name)
            await asyncio.sleep(1.0)


class CorrelationMiddleware:
    """Gives every request a correlation id (the caller's `X-Correlation-Id`, or a new one),
    echoes it in the response (with `X-Content-Type-Options: nosniff`: a browser never
    guesses a type the service did not send), and counts and times the request per route.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` costs a task group per request.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._metrics: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-correlation-id", "")[:MAX_CORRELATION_ID]
        value = given or str(uuid.uuid4())
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Correlation-Id"] = value
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        token = correlation_id.set(value)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)
            requests, latency = self._route_metrics(
                scope["method"], getattr(scope.get("route"), "path", "unmatched"), status)
            requests.inc()
            latency.observe(time.perf_counter() - started)

    def _route_metrics(self, method: str, path: str, status: int) -> tuple[Counter, Histogram]:
        """The request counter and latency histogram of one route, method and status, looked
        up once: `labels()` takes a lock and builds its key on every call."""
        key = (method, path, status)
        metrics = self._metrics.get(key)
        if metrics is None:
            metrics = self._metrics[key] = (
                HTTP_REQUESTS.labels(self.service, method, path, status),
                HTTP_LATENCY.labels(self.service, method, path))
        return metrics


def _install_observability(app: FastAPI, service: str) -> None:
    app.add_middleware(CorrelationMiddleware, service=service)

    @app.get("/healthz", tags=["operations"], include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        checks = await request.app.state.runtime.ready()
        ok = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics(_: Annotated[Principal, require(Role.operator)]) -> Response:
        """Operators only (Prometheus scrapes with an operator token): the counters name
        routes and statuses, which an outsider need not see."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def get_runtime(request: Request) -> Runtime:
    """Async although it awaits nothing: FastAPI runs a plain function dependency in a thread."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(runtime: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    async with runtime.uow() as uow:
        yield uow


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_uow)]
