"""One report is one trace: intake's request, triage's handling of the report and notify's
handling of the triage, with their SQL, linked through the `traceparent` the outbox stores in
each envelope and the relay publishes as a CloudEvents header. The services run in-process on
their real databases and the real broker; their spans go to one in-memory exporter."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.intake.app import create_app as create_intake
from services.intake.models import Outbox as OutboxModel
from services.intake.settings import IntakeSettings
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.triage.app import create_app as create_triage
from services.triage.settings import TriageSettings
from shared.clock import ManualClock
from shared.events import (
    Envelope,
    IncidentReported,
    IncidentTriaged,
    RegulatorReportFiled,
    kafka_headers,
    kafka_value,
)
from shared.migrations import migrate
from shared.outbox import Outbox
from shared.settings import PlatformSettings
from shared.tracing import current_context, trace_app, traced_by
from tests.intake.conftest import policy_body, report_body
from tests.support.infra import free_port, tansu_broker
from tests.support.service import Tokens, running
from tests.support.service import test_platform as platform_on

TIMEOUT_SECONDS = 60.0


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


@pytest.fixture
def intake_database(service_database: Callable[[str], str]) -> str:
    return service_database("intake")


@pytest.fixture
def own_platform() -> Iterator[PlatformSettings]:
    """A broker of its own: on the session's broker the services would first work through
    every earlier test's events (thousands by this point of a full run, a span each), and on
    a busy machine the report's spans came after the timeout."""
    with tansu_broker() as bootstrap:
        yield platform_on(bootstrap)


@pytest.fixture
def own_databases(scratch_database: Callable[[str], str]) -> dict[str, str]:
    """Databases of its own too: the session's hold other tests' unsent outbox rows."""
    urls = {}
    for name in ("intake", "triage", "notify"):
        urls[name] = scratch_database(f"cyberclaims_test_trace_{name}_{os.getpid()}")
        migrate(name, urls[name])
    return urls


def _traced(app: FastAPI, service: str, exporter: InMemorySpanExporter) -> FastAPI:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_app(app, provider)
    return app


def _service(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


async def _span(exporter: InMemorySpanExporter, match: Callable[[ReadableSpan], bool]
                ) -> ReadableSpan:
    """The first finished span that matches, waiting for it."""
    async with asyncio.timeout(TIMEOUT_SECONDS):
        while True:
            found = [span for span in exporter.get_finished_spans() if match(span)]
            if found:
                return found[0]
            await asyncio.sleep(0.05)


async def test_one_report_is_one_trace_from_intake_through_triage_to_notify(
        own_databases: dict[str, str], own_platform: PlatformSettings, tokens: Tokens,
        exporter: InMemorySpanExporter) -> None:
    databases, platform = own_databases, own_platform
    apps = [
        _traced(create_intake(IntakeSettings(database_url=databases["intake"]), platform),
                "intake", exporter),
        _traced(create_triage(TriageSettings(database_url=databases["triage"]), platform),
                "triage", exporter),
        # No mail server: the notices' deliveries fail and retry, which this test does not read.
        _traced(create_notify(NotifySettings(database_url=databases["notify"],
                                             smtp_host="127.0.0.1", smtp_port=free_port()),
                              platform), "notify", exporter),
    ]
    async with AsyncExitStack() as stack:
        intake, *_ = [await stack.enter_async_context(running(app)) for app in apps]
        org_id = f"org-{uuid.uuid4().hex[:8]}"
        policy = policy_body(org_id)
        registered = await intake.post("/v1/policies", json=policy, headers=tokens.operator())
        assert registered.status_code == 201, registered.text
        reported = await intake.post(
            "/v1/incidents", json=report_body(policy["policy_number"]),
            headers={**tokens.policyholder(org_id), "Idempotency-Key": uuid.uuid4().hex})
        assert reported.status_code == 201, reported.text

        request = await _span(exporter, lambda s: _service(s) == "intake"
                              and s.kind is SpanKind.SERVER and s.name == "POST /v1/incidents")
        trace_id = request.context.trace_id
        in_trace: Callable[[ReadableSpan], bool] = lambda s: s.context.trace_id == trace_id  # noqa: E731
        graded = await _span(exporter, lambda s: in_trace(s) and _service(s) == "triage"
                             and s.name == f"{IncidentReported.event_type} process")
        noticed = await _span(exporter, lambda s: in_trace(s) and _service(s) == "notify"
                              and s.name == f"{IncidentTriaged.event_type} process")

    spans = {span.context.span_id: span for span in exporter.get_finished_spans()
             if span.context.trace_id == trace_id}

    def ancestors(span: ReadableSpan) -> list[ReadableSpan]:
        chain = []
        while span.parent is not None and span.parent.span_id in spans:
            span = spans[span.parent.span_id]
            chain.append(span)
        return chain

    assert graded.kind is SpanKind.CONSUMER and noticed.kind is SpanKind.CONSUMER
    assert graded.attributes is not None
    assert graded.attributes["messaging.system"] == "kafka"
    # Each handler's span descends from the span that staged its event: notify's from
    # triage's, triage's from intake's request.
    assert graded in ancestors(noticed)
    assert request in ancestors(graded)
    # The trace covers SQL in each service (a handler's reads are inside its span; what it
    # staged is flushed at the consumer's commit, after it).
    with_sql = {_service(span) for span in spans.values() if span.kind is SpanKind.CLIENT
                and {"db.system", "db.system.name"} & set(span.attributes or ())}
    assert with_sql == {"intake", "triage", "notify"}
    assert noticed.attributes is not None
    assert noticed.attributes["cloudevents.event_source"] == "/cyberclaims/triage"
    assert str(request.attributes and request.attributes.get("http.route")) == "/v1/incidents"


async def test_tracing_is_off_unless_an_endpoint_is_configured(
        platform: PlatformSettings, intake_database: str) -> None:
    """No endpoint: nothing is instrumented and an event staged carries no trace context; an
    endpoint: the service's spans go to an OTLP exporter under its own name."""
    assert platform.otlp_endpoint == ""
    app = create_intake(IntakeSettings(database_url=intake_database), platform)
    assert traced_by(app) is None
    assert current_context() == (None, None)
    endpoint = f"http://127.0.0.1:{free_port()}/v1/traces"
    traced = create_intake(IntakeSettings(database_url=intake_database),
                           platform.model_copy(update={"otlp_endpoint": endpoint}))
    provider = traced_by(traced)
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "cyberclaims-intake"
    provider.shutdown()


def test_the_trace_context_travels_in_the_envelope_and_its_kafka_headers(
        exporter: InMemorySpanExporter) -> None:
    """Staged inside a span: the envelope carries its context as the `traceparent` extension,
    published as the `ce_traceparent` header and read back by the consumer's side."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    outbox = Outbox(OutboxModel, source="/cyberclaims/test", clock=ManualClock())
    event = RegulatorReportFiled(incident_id=uuid.uuid4(), org_id="org-1",
                                 reported_at=datetime.now(UTC), reference="REG-1")
    with provider.get_tracer(__name__).start_as_current_span("request") as span:
        envelope, row = outbox.stage(event)
    context = span.get_span_context()
    assert envelope.traceparent == \
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    headers = kafka_headers(row["envelope"])
    assert ("ce_traceparent", envelope.traceparent.encode()) in headers
    assert Envelope.from_kafka(headers, kafka_value(row["envelope"]["data"])) == envelope
    untraced, _ = outbox.stage(event)
    assert untraced.traceparent is None and untraced.tracestate is None
