"""RFC 9457 problem details for every error, naming the offending field where there is one."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise from a service or view; rendered as problem+json."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class Unauthorized(Problem):
    status = 401
    title = "Unauthorized"


class Forbidden(Problem):
    status = 403
    title = "Forbidden"


class NotFound(Problem):
    status = 404
    title = "Not found"


class Conflict(Problem):
    status = 409
    title = "Conflict"


class Unprocessable(Problem):
    status = 422
    title = "Unprocessable content"


class TooManyRequests(Problem):
    """The caller has as much under way as it may have at once; it may retry shortly."""

    status = 429
    title = "Too many requests"


class Unavailable(Problem):
    """The request may be retried shortly (with its Idempotency-Key where it has one)."""

    status = 503
    title = "Service unavailable"


RETRY_AFTER_SECONDS = 1


class FieldError(BaseModel):
    field: str
    message: str


class ProblemDetails(BaseModel):
    """What every error response carries (RFC 9457), as the OpenAPI documents it."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = None


def problem_response(status: int, title: str, detail: str, instance: str, *,
                     headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    """`headers` (such as 429's `Retry-After`, 405's `Allow`) go with the status's own."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": instance, **extra}
    sent = {401: {"WWW-Authenticate": "Bearer"},
            429: {"Retry-After": str(RETRY_AFTER_SECONDS)},
            503: {"Retry-After": str(RETRY_AFTER_SECONDS)}}.get(status, {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON,
                        headers={**sent, **(headers or {})} or None)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        extra = dict(exc.extra)
        if exc.field:
            extra["errors"] = [{"field": exc.field, "message": exc.detail}]
        return problem_response(exc.status, exc.title, exc.detail, request.url.path, **extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_path(tuple(e["loc"])), "message": e["msg"]}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, "Unprocessable content", detail, request.url.path,
                                errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = str(exc.detail)
        return problem_response(exc.status_code, title, str(exc.detail), request.url.path,
                                headers=exc.headers)

    @app.exception_handler(PoolTimeout)
    async def _overloaded(request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every database connection stayed busy for the pool's whole timeout: overload, which
        # the client may retry (with its Idempotency-Key), not a server bug.
        return problem_response(503, "Service unavailable",
                                "the service is overloaded; retry shortly", request.url.path)
