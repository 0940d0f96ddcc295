"""OpenTelemetry traces that follow a report through every service: HTTP, Kafka and SQL.

FastAPI's instrumentation opens a span per request; the outbox stages each event with the
W3C trace context of the span it is staged in (the envelope's `traceparent` and `tracestate`,
so the relay publishes them as `ce_traceparent`/`ce_tracestate` headers however late it
sends); the consumer opens each handler's span as a child of that context, and what the
handler stages carries the handler's span on. SQLAlchemy's instrumentation adds a span per
statement. So intake's request, triage's grading and notify's notice are one trace.

Off unless `CYBERCLAIMS_OTLP_ENDPOINT` is set (or a test traces an app into a provider of its
own, `trace_app`): then nothing is instrumented, and staging an event only reads the current
span (none).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, NamedTuple

from fastapi import FastAPI
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events import Envelope
from shared.settings import PlatformSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

PROPAGATOR = TraceContextTextMapPropagator()
# Probes and scrapes every few seconds would drown the traces that matter.
UNTRACED_PATHS = "healthz,readyz,metrics"
# The instrumentations also record metrics; the services' metrics are Prometheus's.
_NO_METRICS = NoOpMeterProvider()
# The SDK, the exporter and the instrumentations (a quarter of a second to import) are imported
# by the functions that only run when tracing is on: off, a process never loads them.


class TraceContext(NamedTuple):
    traceparent: str | None
    tracestate: str | None


def provider_for(service: str, platform: PlatformSettings) -> TracerProvider | None:
    """The service's provider exporting to the configured OTLP endpoint, or None (off)."""
    if not platform.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"cyberclaims-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=platform.otlp_endpoint)))
    return provider


def trace_app(app: FastAPI, provider: TracerProvider) -> None:
    """Trace a service's app into `provider` (before it starts): a server span per request,
    parented by the caller's `traceparent` header if any; its lifespan then traces the
    database and the consumer into the same provider."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, meter_provider=_NO_METRICS,
                                       excluded_urls=UNTRACED_PATHS)
    app.state.tracer_provider = provider


def traced_by(app: FastAPI) -> TracerProvider | None:
    """The provider `trace_app` gave the app, or None: tracing off."""
    provider: TracerProvider | None = getattr(app.state, "tracer_provider", None)
    return provider


def instrument_engine(engine: AsyncEngine, provider: TracerProvider) -> None:
    """A client span per statement on this engine alone (SQLAlchemyInstrumentor would patch
    `create_engine` process-wide, once for every service in the process)."""
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    meter = _NO_METRICS.get_meter(__name__)
    EngineTracer(provider.get_tracer(__name__), engine.sync_engine,
                 meter.create_up_down_counter("db.client.connections.usage"))


def current_context() -> TraceContext:
    """The W3C trace context of the current span, for an event staged now."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return TraceContext(carrier.get("traceparent"), carrier.get("tracestate"))


def consuming(tracer: Tracer | None, envelope: Envelope) -> AbstractContextManager[Span | None]:
    """The span of one handler run, a child of the span that staged the event."""
    if tracer is None:
        return nullcontext()
    carrier = {name: value for name, value in (("traceparent", envelope.traceparent),
                                               ("tracestate", envelope.tracestate)) if value}
    return tracer.start_as_current_span(
        f"{envelope.type} process", context=PROPAGATOR.extract(carrier), kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                    "messaging.message.id": str(envelope.id),
                    "cloudevents.event_type": envelope.type,
                    "cloudevents.event_source": envelope.source})
