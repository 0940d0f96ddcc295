"""Contract evolution: the breaking changes between two AsyncAPI documents of the events.

During a rolling update (and when dead letters are replayed) events written by one release
are read by the other, in both directions. Consumers ignore fields they do not know, so adding
an optional field is safe; everything else that changes an event type's payload is breaking:
a field removed or renamed, a field's type changed (its JSON type, format, enum values,
nullability, constraints or the shape of what it holds), a new required field, or a field made
required. A breaking change needs a new version of the event type (a new class, e.g.
`...reported.v2`, next to the old one), which this check compares with nothing. The released
document is `docs/asyncapi.released.json`, refreshed at each release (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ANNOTATIONS = frozenset({"title", "description", "examples", "default", "summary"})
"""Keywords that document a schema without changing what it accepts."""

NESTED = ("items", "additionalProperties", "propertyNames")
ALTERNATIVES = ("anyOf", "oneOf", "allOf")
_CLOUDEVENTS_HEADERS = "#/components/schemas/CloudEventsHeaders"


def breaking_changes(released: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Every breaking change from `released` to `current`, one line each (empty if none)."""
    old_payloads, new_payloads = _payloads(released), _payloads(current)
    problems = [f"{event_type}: removed without a newer version"
                for event_type in sorted(old_payloads.keys() - new_payloads.keys())
                if not _newer_version_exists(event_type, new_payloads)]
    for event_type in sorted(old_payloads.keys() & new_payloads.keys()):
        problems += _Comparison(released, current).changes(
            old_payloads[event_type], new_payloads[event_type], event_type)
    problems += _Comparison(released, current).changes(
        {"$ref": _CLOUDEVENTS_HEADERS}, {"$ref": _CLOUDEVENTS_HEADERS}, "CloudEvents headers")
    return problems


def _payloads(document: dict[str, Any]) -> dict[str, Any]:
    """Each event type's payload schema, by the type's name (`cyberclaims....v1`)."""
    return {message["name"]: message["payload"]
            for message in document["components"]["messages"].values()
            if message["name"].startswith("cyberclaims.")}


def _newer_version_exists(event_type: str, payloads: dict[str, Any]) -> bool:
    name, _, version = event_type.rpartition(".v")
    return any(other.rpartition(".v")[0] == name and int(other.rpartition(".v")[2]) > int(version)
               for other in payloads)


class _Comparison:
    """Compares schemas of the two documents, each `$ref` resolved in its own document."""

    def __init__(self, released: dict[str, Any], current: dict[str, Any]) -> None:
        self._released = released
        self._current = current

    def changes(self, old: dict[str, Any], new: dict[str, Any], path: str) -> list[str]:
        return list(self._compare(old, new, path, frozenset()))

    def _compare(self, old: dict[str, Any], new: dict[str, Any], path: str,
                 seen: frozenset[tuple[str, str]]) -> Iterator[str]:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if refs in seen:  # a recursive schema: compared once
            return
        seen = seen | {refs} if any(refs) else seen
        old, new = _resolve(self._released, old), _resolve(self._current, new)
        if "properties" in old or "properties" in new:
            yield from self._compare_fields(old, new, path, seen)
        for keyword in ALTERNATIVES:
            if keyword in old or keyword in new:
                yield from self._compare_alternatives(keyword, old, new, path, seen)
        if "enum" in old or "enum" in new:
            removed = [v for v in old.get("enum", []) if v not in new.get("enum", [])]
            added = [v for v in new.get("enum", []) if v not in old.get("enum", [])]
            if removed:
                yield f"{path}: values removed {removed} (events of the release carry them)"
            if added:
                yield f"{path}: values added {added} (the release's consumers refuse them)"
        for keyword in NESTED:
            old_nested, new_nested = old.get(keyword), new.get(keyword)
            if isinstance(old_nested, dict) and isinstance(new_nested, dict):
                yield from self._compare(old_nested, new_nested, f"{path}[{keyword}]", seen)
            elif old_nested != new_nested:
                yield f"{path}: {keyword} changed from {old_nested!r} to {new_nested!r}"
        handled = {"properties", "required", "enum", "$ref", *ALTERNATIVES, *NESTED, *ANNOTATIONS}
        for keyword in sorted((old.keys() | new.keys()) - handled):
            if old.get(keyword) != new.get(keyword):
                yield (f"{path}: type changed ({keyword} {old.get(keyword)!r} -> "
                       f"{new.get(keyword)!r})")

    def _compare_fields(self, old: dict[str, Any], new: dict[str, Any], path: str,
                        seen: frozenset[tuple[str, str]]) -> Iterator[str]:
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name, schema in old_fields.items():
            if name not in new_fields:
                yield f"{path}.{name}: removed or renamed"
                continue
            yield from self._compare(schema, new_fields[name], f"{path}.{name}", seen)
            if name in new_required and name not in old_required:
                yield f"{path}.{name}: made required (the release's events may lack it)"
        for name in new_fields.keys() - old_fields.keys():
            if name in new_required:
                yield f"{path}.{name}: new required field (the release's events lack it)"

    def _compare_alternatives(self, keyword: str, old: dict[str, Any], new: dict[str, Any],
                              path: str, seen: frozenset[tuple[str, str]]) -> Iterator[str]:
        """`X | None` and the like: alternatives are paired by their kind (null, string,
        object, ...), so a change inside one is reported where it is."""
        old_options = self._by_kind(self._released, old.get(keyword, []))
        new_options = self._by_kind(self._current, new.get(keyword, []))
        if old_options.keys() != new_options.keys():
            yield (f"{path}: type changed ({' | '.join(old_options) or 'single'} -> "
                   f"{' | '.join(new_options) or 'single'})")
            return
        for kind, option in old_options.items():
            yield from self._compare(option, new_options[kind], f"{path}<{kind}>", seen)

    @staticmethod
    def _by_kind(document: dict[str, Any], options: list[dict[str, Any]]) -> dict[str, Any]:
        by_kind: dict[str, Any] = {}
        for position, option in enumerate(options):
            kind = str(_resolve(document, option).get("type", "any"))
            by_kind[kind if kind not in by_kind else f"{kind}#{position}"] = option
        return by_kind


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$ref` (a local JSON pointer) followed, its own keywords kept."""
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema
