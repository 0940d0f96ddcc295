"""Event contracts evolve without breaking the release before: the current contracts are
compared with the last released AsyncAPI document (docs/asyncapi.released.json, refreshed at
each release: docs/operations.md, "Deploy"), and the checker itself is shown to catch each
kind of breaking change on documents edited for the purpose."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cyberclaims.asyncapi import document as generated_document
from shared.contracts import breaking_changes

RELEASED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.released.json"
REPORTED = "cyberclaims.incident.reported.v1"


@pytest.fixture(scope="module")
def released() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(RELEASED.read_text())
    return document


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def edited(document: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    edit(changed)
    return changed


def test_the_current_contracts_break_nothing_the_last_release_publishes_or_reads(
    released: dict[str, Any]
) -> None:
    problems = breaking_changes(released, generated_document())
    assert problems == [], (
        "breaking event contract changes (publish a new version of the event type instead, "
        "e.g. a new class for ...v2 next to v1):\n" + "\n".join(problems))


def test_an_unchanged_document_has_no_breaking_change(released: dict[str, Any]) -> None:
    assert breaking_changes(released, released) == []


def test_added_optional_fields_are_compatible(released: dict[str, Any]) -> None:
    def add_optional(document: dict[str, Any]) -> None:
        reported = schema(document, "IncidentReported")
        reported["properties"]["severity"] = {"anyOf": [{"type": "string"}, {"type": "null"}],
                                              "default": None}
        schema(document, "Contact")["properties"]["mobile"] = {"type": "string", "default": ""}
        reported["properties"]["title"]["description"] = "documentation changes nothing"

    assert breaking_changes(released, edited(released, add_optional)) == []


def _remove_field(document: dict[str, Any]) -> None:
    reported = schema(document, "IncidentReported")
    del reported["properties"]["title"]
    reported["required"].remove("title")


def _rename_field(document: dict[str, Any]) -> None:
    reported = schema(document, "IncidentReported")
    reported["properties"]["headline"] = reported["properties"].pop("title")
    reported["required"] = ["headline" if f == "title" else f for f in reported["required"]]


def _remove_nested_field(document: dict[str, Any]) -> None:
    contact = schema(document, "Contact")
    del contact["properties"]["phone"]
    contact["required"].remove("phone")


def _change_type(document: dict[str, Any]) -> None:
    schema(document, "IncidentReported")["properties"]["affected_hosts"] = {"type": "string"}


def _change_format(document: dict[str, Any]) -> None:
    del schema(document, "IncidentReported")["properties"]["occurred_at"]["format"]


def _make_nullable(document: dict[str, Any]) -> None:
    properties = schema(document, "IncidentReported")["properties"]
    properties["title"] = {"anyOf": [properties["title"], {"type": "null"}]}


def _make_not_nullable(document: dict[str, Any]) -> None:
    schema(document, "IncidentReported")["properties"]["affected_hosts"] = {"type": "integer"}


def _remove_enum_value(document: dict[str, Any]) -> None:
    schema(document, "Category")["enum"].remove("ddos")


def _add_enum_value(document: dict[str, Any]) -> None:
    schema(document, "Category")["enum"].append("supply_chain")


def _change_list_items(document: dict[str, Any]) -> None:
    schema(document, "IncidentReported")["properties"]["data_types"]["items"] = {
        "type": "string"}


def _add_required_field(document: dict[str, Any]) -> None:
    reported = schema(document, "IncidentReported")
    reported["properties"]["severity"] = {"type": "string"}
    reported["required"].append("severity")


def _add_required_nested_field(document: dict[str, Any]) -> None:
    contact = schema(document, "Contact")
    contact["properties"]["mobile"] = {"type": "string"}
    contact["required"].append("mobile")


def _make_required(document: dict[str, Any]) -> None:
    schema(document, "PolicyTerms")["required"].append("annual_premium")


def _tighten_constraint(document: dict[str, Any]) -> None:
    schema(document, "JobDispatched")["properties"]["attempt"]["minimum"] = 2


def _remove_event_type(document: dict[str, Any]) -> None:
    for name, message in list(document["components"]["messages"].items()):
        if message["name"] == REPORTED:
            del document["components"]["messages"][name]


def _require_a_new_header(document: dict[str, Any]) -> None:
    headers = schema(document, "CloudEventsHeaders")
    headers["properties"]["ce_tenant"] = {"type": "string"}
    headers["required"].append("ce_tenant")


@pytest.mark.parametrize(("edit", "expected"), [
    (_remove_field, f"{REPORTED}.title: removed or renamed"),
    (_rename_field, f"{REPORTED}.title: removed or renamed"),
    (_remove_nested_field, f"{REPORTED}.contact.phone: removed or renamed"),
    (_change_type, f"{REPORTED}.affected_hosts: type changed"),
    (_change_format, f"{REPORTED}.occurred_at: type changed (format 'date-time' -> None)"),
    (_make_nullable, f"{REPORTED}.title: type changed (single -> string | null)"),
    (_make_not_nullable, f"{REPORTED}.affected_hosts: type changed (integer | null -> single)"),
    (_remove_enum_value, f"{REPORTED}.category: values removed ['ddos']"),
    (_add_enum_value, f"{REPORTED}.category: values added ['supply_chain']"),
    (_change_list_items, f"{REPORTED}.data_types[items]: values removed"),
    (_add_required_field, f"{REPORTED}.severity: new required field"),
    (_add_required_nested_field, f"{REPORTED}.contact.mobile: new required field"),
    (_make_required, "cyberclaims.policy.registered.v1.policy.annual_premium: made required"),
    (_tighten_constraint, "cyberclaims.job.dispatched.v1.attempt: type changed (minimum 1 -> 2)"),
    (_remove_event_type, f"{REPORTED}: removed without a newer version"),
    (_require_a_new_header, "CloudEvents headers.ce_tenant: new required field"),
])
def test_each_kind_of_breaking_change_is_caught(
    released: dict[str, Any], edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    problems = breaking_changes(released, edited(released, edit))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_breaking_change_under_a_new_version_of_the_event_type_passes(
    released: dict[str, Any]
) -> None:
    """v2 replaces v1 with the title removed: v1 is not compared with anything any more."""
    def bump(document: dict[str, Any]) -> None:
        messages = document["components"]["messages"]
        [name] = [n for n, message in messages.items() if message["name"] == REPORTED]
        version_2 = copy.deepcopy(schema(document, "IncidentReported"))
        del version_2["properties"]["title"]
        version_2["required"].remove("title")
        document["components"]["schemas"]["IncidentReportedV2"] = version_2
        messages["IncidentReportedV2"] = {
            **messages.pop(name), "name": "cyberclaims.incident.reported.v2",
            "payload": {"$ref": "#/components/schemas/IncidentReportedV2"}}

    assert breaking_changes(released, edited(released, bump)) == []
