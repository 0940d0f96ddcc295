"""Every operation's error responses in the OpenAPI document, worked out from its route.

Written once here, when the app is assembled, rather than on each route by hand: what a route
may answer follows from what it takes (a token, an id in its path, parameters, a body) and
from the edge every service shares (`shared.http_edge`, `shared.problems`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shared.http_edge import WRITE_METHODS, is_authenticated
from shared.problems import PROBLEM_JSON, ProblemDetails

PROBLEM_REF = "#/components/schemas/Problem"
DESCRIPTIONS = {
    400: "The body could not be read",
    401: "No valid bearer token",
    403: "The caller's role may not call this operation",
    404: "No such object, or one the caller may not see",
    409: "The request conflicts with the object's state",
    413: "The body exceeds the configured limit",
    415: "The body is not application/json",
    422: "A parameter or a field of the body is invalid (named in `errors`)",
    429: "Too many requests: retry after `Retry-After` seconds",
    431: "The request's headers are too large",
    503: "The service is overloaded or a dependency is down: retry shortly",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
    503: {"Retry-After": {"schema": {"type": "integer"}}},
}


def error_statuses(route: APIRoute, method: str) -> set[int]:
    """The error statuses `route` may answer to `method`."""
    statuses = {431}
    dependants = list(_with_sub_dependencies(route.dependant))
    if is_authenticated(route):
        # 404 too: a body may name an object the caller may not see (a policy, say).
        statuses |= {401, 403, 404, 429, 503}
    if any(d.path_params for d in dependants):
        statuses |= {404, 422}
    if any(d.query_params or d.header_params for d in dependants):
        statuses.add(422)
    if route.body_field is not None:
        statuses |= {400, 413, 415, 422}
    if method in WRITE_METHODS:
        statuses.add(409)
    return statuses


def _with_sub_dependencies(dependant: Dependant) -> Iterator[Dependant]:
    """A route's parameters may be declared by its dependencies (a query model, say)."""
    yield dependant
    for sub in dependant.dependencies:
        yield from _with_sub_dependencies(sub)


def document_error_responses(app: FastAPI) -> None:
    """Make `app.openapi()` list, for every operation, its error responses with the problem
    schema (replacing FastAPI's own 422, which the services never send)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _add_problem_schema(schema)
            for route in app.router.routes:
                if isinstance(route, APIRoute) and route.include_in_schema:
                    for method in route.methods or ():
                        operation = schema["paths"][route.path_format][method.lower()]
                        _add_error_responses(operation, error_statuses(route, method))
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _add_problem_schema(schema: dict[str, Any]) -> None:
    problem = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _add_error_responses(operation: dict[str, Any], statuses: set[int]) -> None:
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses):
        response = responses.setdefault(str(status), {})
        response.setdefault("description", DESCRIPTIONS[status])
        response["content"] = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
        if status in HEADERS:
            response["headers"] = HEADERS[status]
