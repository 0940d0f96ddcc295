"""docs/asyncapi.json is the AsyncAPI 3.0 document generated from the event contracts and
the topic catalog, and is kept current: regenerate with
`.venv/bin/cyberclaims asyncapi > docs/asyncapi.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cyberclaims.asyncapi import document as generated_document
from services.intake.handlers import TIMELINE_EVENTS
from shared.events import Event
from shared.topics import CATALOG

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return generated_document()


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_committed_document_is_the_generated_one(document: dict[str, Any]) -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == document, (
        "docs/asyncapi.json is stale: run `.venv/bin/cyberclaims asyncapi > "
        "docs/asyncapi.json`")


def test_it_is_structurally_asyncapi_3(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert {server["protocol"] for server in document["servers"].values()} == {"kafka"}
    for channel_id, channel in document["channels"].items():
        assert channel["address"], channel_id
        assert channel["messages"], channel_id
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]
    for operation_id, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), operation_id
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        channel = _resolve(document, channel_ref)
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), operation_id
            assert message["$ref"].rsplit("/", 1)[1] in channel["messages"]
    for ref in _refs(document):  # every reference resolves
        _resolve(document, ref)


def test_every_event_is_a_message_on_its_topic_with_schema_headers_and_key(
    document: dict[str, Any]
) -> None:
    by_address = {c["address"]: c for c in document["channels"].values()}
    assert set(by_address) == {t.name for t in CATALOG} | {t.dead_letter for t in CATALOG}
    for event_type, cls in Event.registry.items():
        channel = by_address[cls.topic.name]
        message = _resolve(document, channel["messages"][cls.__name__]["$ref"])
        assert message["name"] == event_type
        payload = _resolve(document, message["payload"]["$ref"])
        assert set(payload["properties"]) == set(cls.model_fields)
        assert set(payload.get("required", ())) == {
            name for name, field in cls.model_fields.items() if field.is_required()}
        assert message["headers"]["allOf"][1]["properties"]["ce_type"]["const"] == event_type
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    headers = document["components"]["schemas"]["CloudEventsHeaders"]
    assert {"ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_correlationid",
            "content-type"} <= set(headers["required"])


def test_operations_name_who_sends_and_who_receives(document: dict[str, Any]) -> None:
    operations = document["operations"]
    for topic in CATALOG:
        channel_id = topic.name.removeprefix("cyberclaims.")
        send = operations[f"{topic.producer}.send.{channel_id}"]
        assert send["action"] == "send"
        assert len(send["messages"]) == len(document["channels"][channel_id]["messages"])
    # Intake's receive operations are exactly the events its consumer handles.
    received = {ref["$ref"].rsplit("/", 1)[1] for op_id, op in operations.items()
                if op_id.startswith("intake.receive.") for ref in op["messages"]}
    assert received == {cls.__name__ for cls in TIMELINE_EVENTS}
