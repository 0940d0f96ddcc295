"""Every value the API edge accepts is bounded (issue 23, findings 3, 6 and 9), checked over
every route of every service, so that a field or parameter added later without a bound
fails here: no request body without the NUL check, no integer or number without an upper
bound, no timestamp outside [EARLIEST, LATEST), no path, query or header string without a
pattern (NUL excluded)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from fastapi.routing import APIRoute
from pydantic import AfterValidator, AwareDatetime, BaseModel, ValidationError
from pydantic.fields import FieldInfo

import services
from shared.inputs import EARLIEST, LATEST, RequestBody, Timestamp

SERVICES = sorted(module.name for module in pkgutil.iter_modules(services.__path__)
                  if module.ispkg)
ROUTES = [route for name in SERVICES
          for router in importlib.import_module(f"services.{name}.views").routers
          for route in router.routes if isinstance(route, APIRoute)]


def _leaves(annotation: Any, metadata: tuple[Any, ...]) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """The plain types a field's annotation is made of, each with the metadata on its way."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        yield from _leaves(base, (*metadata, *extra))
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _leaves(arg, metadata)
    elif origin in (list, dict, set, frozenset, tuple):
        for arg in get_args(annotation):
            yield from _leaves(arg, ())
    elif origin is not Literal:
        yield annotation, metadata


def _flat(metadata: tuple[Any, ...]) -> list[Any]:
    flat: list[Any] = []
    for item in metadata:
        flat.extend(_flat(tuple(item.metadata)) if isinstance(item, FieldInfo) else [item])
    return flat


def _bounded_above(metadata: tuple[Any, ...]) -> bool:
    return any(getattr(m, "le", None) is not None or getattr(m, "lt", None) is not None
               or getattr(m, "max_digits", None) is not None for m in _flat(metadata))


def _in_range(metadata: tuple[Any, ...]) -> bool:
    wanted = get_args(Timestamp)[1:]
    return any(isinstance(m, AfterValidator) and m in wanted for m in _flat(metadata))


def _patterned(metadata: tuple[Any, ...]) -> bool:
    return any(getattr(m, "pattern", None) for m in _flat(metadata))


def _problems(annotation: Any, metadata: tuple[Any, ...], where: str,
              body: type[BaseModel] | None) -> Iterator[str]:
    for leaf, meta in _leaves(annotation, metadata):
        if not inspect.isclass(leaf) or issubclass(leaf, bool | Enum):
            continue
        if issubclass(leaf, BaseModel):
            for name, field in leaf.model_fields.items():
                yield from _problems(field.annotation, tuple(field.metadata),
                                     f"{where}.{name}", leaf)
        elif issubclass(leaf, int | float | Decimal) and not _bounded_above(meta):
            yield f"{where}: a number without an upper bound"
        elif (leaf is AwareDatetime or issubclass(leaf, datetime)) and not _in_range(meta):
            yield f"{where}: a timestamp that is not a shared.inputs.Timestamp"
        elif issubclass(leaf, str) and body is None and not _patterned(meta):
            yield f"{where}: a path, query or header string without a pattern"
        elif issubclass(leaf, str) and body is not None and not issubclass(body, RequestBody):
            yield f"{where}: a string in {body.__name__}, which is not a RequestBody"


def test_every_value_a_route_accepts_is_bounded() -> None:
    problems: list[str] = []
    for route in ROUTES:
        where = f"{','.join(sorted(route.methods or ()))} {route.path}"
        dependant = route.dependant
        for param in (*dependant.path_params, *dependant.query_params, *dependant.header_params):
            problems += _problems(param.field_info.annotation, tuple(param.field_info.metadata),
                                  f"{where} {param.name}", None)
        if route.body_field is not None:
            model: Any = route.body_field.field_info.annotation
            if not issubclass(model, RequestBody):
                problems.append(f"{where} body: {model.__name__} is not a RequestBody")
            problems += _problems(model, (), f"{where} body", None)
    assert not problems, "\n".join(problems)
    assert {"intake", "triage", "payout", "notify"} <= set(SERVICES)
    assert sum(route.body_field is not None for route in ROUTES) >= 15  # the check saw them


class Reported(RequestBody):
    at: Timestamp
    notes: list[str] = []
    tags: dict[str, str] = {}


@pytest.mark.parametrize("at", [
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1969-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z", "2199-12-31T23:00:00-01:00",
])
def test_timestamps_outside_1970_to_2200_are_refused_without_overflowing(at: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Reported.model_validate_json(f'{{"at": "{at}"}}')
    assert refused.value.errors()[0]["loc"] == ("at",)


def test_timestamps_at_the_edges_of_the_range_are_accepted() -> None:
    latest = (LATEST - timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=-14)))
    for at in (EARLIEST, EARLIEST.astimezone(timezone(timedelta(hours=14))), latest,
               datetime(2026, 3, 2, tzinfo=UTC)):
        assert Reported(at=at).at == at


@pytest.mark.parametrize(("body", "field"), [
    ({"notes": ["fine", "not\x00fine"]}, "notes"),
    ({"tags": {"k\x00": "v"}}, "tags"),
    ({"tags": {"k": "v\x00"}}, "tags"),
])
def test_nul_anywhere_in_a_field_is_refused_naming_it(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match="NUL") as refused:
        Reported.model_validate({"at": "2026-03-02T00:00:00Z", **body})
    assert refused.value.errors()[0]["loc"] == (field,)
