"""A route class for the busiest endpoints: a well-formed request skips FastAPI's per-request
dependency solving, and everything else takes FastAPI's own path.

FastAPI rebuilds, on every request, what it needs to solve an endpoint's parameters (cache keys,
scope checks, parameter classification, a content-type parse through `email.message`, error
contexts): on intake's report endpoint that was about a quarter of the process's CPU per report.
`FastPathRoute` works out once, at start-up, how to read the parameters of a well-formed request
(a JSON body that validates, the declared headers present and valid, the dependencies admitting
the caller), and calls the endpoint with them. A request that is not well-formed in any way goes
through FastAPI's handler unchanged, so every error (422 with its field, 401, 403) and the
OpenAPI document are exactly FastAPI's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, get_type_hints

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

JSON = "application/json"


class FastPathRoute(APIRoute):
    """An `APIRoute` whose well-formed requests are solved without FastAPI's dependency
    machinery. For endpoints that take one JSON body (a pydantic model), headers with an
    explicit alias, dependencies of the request alone and without side effects (such as
    `RoleBearer`: a request that falls back is admitted twice) and the request, and that
    return a `Response`; any other endpoint is refused at start-up, so the fast path
    never guesses. Like every route the services add directly, it does not consult
    `app.dependency_overrides`; added to an app through `include_router`, where it would, it
    leaves every request to FastAPI."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        if self.dependency_overrides_provider is not None:
            return standard  # mounted through include_router: overrides must apply to all
        solve = _well_formed_values(self.dependant, self.path)
        endpoint = self.dependant.call
        assert endpoint is not None  # an APIRoute always has its endpoint

        async def handle(request: Request) -> Response:
            values = await solve(request)
            if values is None:
                return await standard(request)
            response: Response = await endpoint(**values)
            return response

        return handle


def _well_formed_values(dependant: Dependant, path: str
                        ) -> Callable[[Request], Awaitable[dict[str, Any] | None]]:
    """How to read the endpoint's arguments from a well-formed request: None from the solver
    means the request is not (FastAPI's handler then reports why)."""
    endpoint = dependant.call
    if (dependant.path_params or dependant.query_params or dependant.cookie_params
            or len(dependant.body_params) != 1 or dependant.response_param_name
            or dependant.background_tasks_param_name or dependant.security_scopes_param_name
            or not inspect.iscoroutinefunction(endpoint)
            or not issubclass(get_type_hints(endpoint).get("return", type(None)), Response)):
        raise TypeError(f"{path}: a fast-path endpoint is async, returns a Response and takes "
                        "one JSON body, headers, request-only dependencies and the request")
    body_field = dependant.body_params[0]
    body_model = body_field.field_info.annotation
    if not (inspect.isclass(body_model) and issubclass(body_model, BaseModel)) \
            or getattr(body_field.field_info, "embed", False):
        raise TypeError(f"{path}: a fast-path body is one pydantic model, not embedded")
    headers = []
    for field in dependant.header_params:
        if not field.field_info.alias:
            raise TypeError(f"{path}: fast-path header {field.name} needs an explicit alias")
        headers.append((field.name, field.field_info.alias, field))
    checks = []
    for check in dependant.dependencies:
        if (check.name is None or check.call is None or check.dependencies or check.path_params
                or check.query_params or check.header_params or check.cookie_params
                or check.body_params or not check.request_param_name
                or check.response_param_name or check.background_tasks_param_name
                or check.security_scopes_param_name
                or not (inspect.iscoroutinefunction(check.call)
                        or inspect.iscoroutinefunction(type(check.call).__call__))):
            raise TypeError(f"{path}: fast-path dependencies are async and take the request "
                            "and nothing else")
        checks.append((check.name, check.request_param_name, check.call))

    async def solve(request: Request) -> dict[str, Any] | None:
        content_type = request.headers.get("content-type", "")
        if content_type != JSON and content_type.partition(";")[0].strip().lower() != JSON:
            return None
        values: dict[str, Any] = {}
        for name, alias, field in headers:
            raw = request.headers.get(alias)
            if raw is None:
                return None
            value, errors = field.validate(raw)
            if errors:
                return None
            values[name] = value
        try:
            values[body_field.name] = body_model.model_validate_json(await request.body())
        except Exception:  # invalid, or the client went away: FastAPI's handler says which
            return None
        # Last, as FastAPI does for a body that parses: a caller without a valid token gets
        # 401 (403 for another role) whatever else is wrong with the request.
        for name, request_name, call in checks:
            values[name] = await call(**{request_name: request})
        if dependant.request_param_name:
            values[dependant.request_param_name] = request
        return values

    return solve
