"""`cyberclaims asyncapi`: the AsyncAPI document, with each built service's subscriptions."""

from __future__ import annotations

import importlib
import json
from typing import Any

from cyberclaims.registry import available_services
from shared.asyncapi import build_document
from shared.events import Event


class _AnyRuntime:
    """Stands in for a service's Runtime when asking its spec which events it handles."""

    def __getattr__(self, name: str) -> _AnyRuntime:
        return self

    def __call__(self, *args: object, **kwargs: object) -> _AnyRuntime:
        return self

    def __getitem__(self, key: object) -> _AnyRuntime:
        return self


def consumers() -> dict[str, set[type[Event]]]:
    """Each built service's handled events, read from its ServiceSpec."""
    found: dict[str, set[type[Event]]] = {}
    for entry in available_services():
        spec = importlib.import_module(f"{entry.module}.app").spec(entry.settings())
        found[entry.name] = set(spec.handlers(_AnyRuntime()))
    return found


def document() -> dict[str, Any]:
    return build_document(consumers())


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"
