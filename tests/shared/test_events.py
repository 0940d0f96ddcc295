"""The event catalog and the CloudEvents envelope, without any I/O."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared import events as ev
from shared.events import Envelope, Event, UnknownEventType
from shared.topics import CATALOG, CLAIMS, INCIDENTS, NOTIFICATIONS, POLICIES, RESPONSE, topic_named

# Every event the issue names, with the topic it travels on.
NAMED_IN_THE_ISSUE = {
    ev.PolicyRegistered: POLICIES, ev.PolicyUpdated: POLICIES,
    ev.IncidentReported: INCIDENTS, ev.LossSubmitted: INCIDENTS,
    ev.IncidentTriaged: RESPONSE, ev.JobDispatched: RESPONSE, ev.JobAccepted: RESPONSE,
    ev.JobDeclined: RESPONSE, ev.JobExpired: RESPONSE, ev.JobCompleted: RESPONSE,
    ev.JobUnassigned: RESPONSE, ev.JobCancelled: RESPONSE,
    ev.IncidentResponseCompleted: RESPONSE,
    ev.ClaimOpened: CLAIMS, ev.ClaimAssessed: CLAIMS, ev.ClaimPendingApproval: CLAIMS,
    ev.ClaimApproved: CLAIMS, ev.ClaimDenied: CLAIMS, ev.ClaimClosedWithoutPayment: CLAIMS,
    ev.PaymentRequested: CLAIMS, ev.PaymentSucceeded: CLAIMS, ev.PaymentFailed: CLAIMS,
    ev.NotificationDelivered: NOTIFICATIONS, ev.NotificationDead: NOTIFICATIONS,
}


def test_the_registry_has_every_event_the_issue_names() -> None:
    registered = set(Event.registry.values())
    missing = [cls.__name__ for cls in NAMED_IN_THE_ISSUE if cls not in registered]
    assert missing == []
    for cls, topic in NAMED_IN_THE_ISSUE.items():
        assert Event.registry[cls.event_type] is cls
        assert cls.topic is topic, cls.__name__
        assert ev.event_class(cls.event_type) is cls


def test_every_event_type_is_versioned_and_on_a_catalog_topic() -> None:
    assert len(Event.registry) >= len(NAMED_IN_THE_ISSUE)
    for event_type, cls in Event.registry.items():
        assert re.fullmatch(r"cyberclaims\.[a-z_]+\.[a-z_]+\.v[0-9]+", event_type), event_type
        assert cls.topic in CATALOG
        assert topic_named(cls.topic.dead_letter) is cls.topic


def test_the_topic_catalog_has_a_dead_letter_companion_per_topic() -> None:
    assert [t.dead_letter for t in CATALOG] == [t.name + ".dlq" for t in CATALOG]
    assert len({t.name for t in CATALOG}) == len(CATALOG)
    with pytest.raises(KeyError):
        topic_named("cyberclaims.nope")


def _reported() -> ev.IncidentReported:
    now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    return ev.IncidentReported(
        incident_id=uuid.uuid4(), org_id="org-1", policy_number="POL-1",
        category=ev.Category.ransomware, title="t", description="d",
        occurred_at=now - timedelta(hours=2), discovered_at=now - timedelta(hours=1),
        reported_at=now, contact=ev.Contact(name="n", email="e@example.com", phone="123"),
        systems_down=True, outage_started_at=None, affected_hosts=3, records_exposed=None,
        data_types=[ev.DataType.pii], ransom_demanded=Decimal("1000.5"), funds_transferred=None)


def test_an_envelope_survives_the_kafka_headers_round_trip() -> None:
    event = _reported()
    cause = Envelope.wrap(event, source="/cyberclaims/intake", time=datetime.now(UTC))
    envelope = Envelope.wrap(event, source="/cyberclaims/triage", time=datetime.now(UTC),
                             correlation_id=cause.correlationid, causation_id=str(cause.id))
    headers = envelope.to_kafka_headers()
    names = [name for name, _ in headers]
    assert all(isinstance(value, bytes) for _, value in headers)
    assert set(names) == {"ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time",
                          "ce_subject", "ce_dataschema", "ce_correlationid", "ce_causationid",
                          "content-type"}
    value = envelope.to_kafka_value()
    assert json.loads(value) == envelope.data
    assert json.loads(value)["ransom_demanded"] == "1000.50"

    back = Envelope.from_kafka(headers, value)
    assert back == envelope
    assert back.event() == event
    assert back.subject == str(event.incident_id) == event.partition_key()
    assert back.correlationid == cause.correlationid == str(cause.id)
    assert back.causationid == str(cause.id)
    assert datetime.fromisoformat(dict(headers)["ce_time"].decode()) == envelope.time


def test_an_envelope_without_a_correlation_id_starts_a_conversation() -> None:
    envelope = Envelope.wrap(_reported(), source="/s", time=datetime.now(UTC))
    assert envelope.correlationid == str(envelope.id)
    assert envelope.causationid is None
    assert "ce_causationid" not in dict(envelope.to_kafka_headers())


@pytest.mark.parametrize("value", [b"not json", b"\xff\xfe", None, b"[1, 2]"])
def test_unreadable_messages_raise_value_errors(value: bytes | None) -> None:
    headers = Envelope.wrap(_reported(), source="/s", time=datetime.now(UTC)).to_kafka_headers()
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError too
        Envelope.from_kafka(headers, value)


def test_missing_attributes_and_unknown_types_are_refused() -> None:
    envelope = Envelope.wrap(_reported(), source="/s", time=datetime.now(UTC))
    headers = [(k, v) for k, v in envelope.to_kafka_headers() if k != "ce_id"]
    with pytest.raises(ValidationError):
        Envelope.from_kafka(headers, envelope.to_kafka_value())
    unknown = envelope.model_copy(update={"type": "cyberclaims.nothing.v1"})
    with pytest.raises(UnknownEventType):
        unknown.event()
    broken = envelope.model_copy(update={"data": {**envelope.data, "category": "aliens"}})
    with pytest.raises(ValidationError):
        broken.event()


def test_producers_are_strict_about_unknown_fields() -> None:
    fields = _reported().model_dump()
    with pytest.raises(ValidationError, match="extra"):
        ev.IncidentReported(**fields, severity="high")
    with pytest.raises(ValidationError, match="extra"):
        ev.Contact(name="Li Wei", email="li.wei@example.com", phone="+86", mobile="+86")


def test_consumers_ignore_fields_and_attributes_a_newer_producer_added() -> None:
    reported = _reported()
    envelope = Envelope.wrap(reported, source="/s", time=datetime.now(UTC))
    data = {**envelope.data, "severity": "high",
            "contact": {**envelope.data["contact"], "mobile": "+86 138 0000 0000"}}
    headers = [*envelope.to_kafka_headers(), ("ce_traceparent", b"00-4bf92f-00f067-01")]

    read = Envelope.from_kafka(headers, json.dumps(data).encode())

    assert read.id == envelope.id
    assert read.event() == reported


def test_consumers_read_events_of_an_older_producer_without_a_later_optional_field() -> None:
    policy = ev.PolicyRegistered(policy=ev.PolicyTerms(
        policy_number="POL-1", org_id="org-1", holder_name="Widget", industry=ev.Industry.retail,
        region="CN-GD", critical_infrastructure=False, currency="CNY",
        period_start=datetime(2026, 1, 1, tzinfo=UTC), period_end=datetime(2027, 1, 1, tzinfo=UTC),
        retroactive_date=None, aggregate_limit=Decimal("1000000"), retention=Decimal("10000"),
        bi_waiting_period_hours=8, notice_period_hours=72, war_exclusion=True, sections={}))
    envelope = Envelope.wrap(policy, source="/s", time=datetime.now(UTC))
    older = {**envelope.data, "policy": {k: v for k, v in envelope.data["policy"].items()
                                         if k not in ("annual_premium", "employees",
                                                      "annual_revenue")}}

    assert envelope.model_copy(update={"data": older}).event() == policy
