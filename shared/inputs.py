"""What the API edge accepts, defined once for every service: request bodies without NUL in
any string, bounded integers and timestamps, bounded paging, and JSON bodies only.

PostgreSQL refuses NUL in text and integers beyond BIGINT, and Python's datetime overflows
when a year-1 or year-9999 timestamp is moved to UTC: unchecked, each is a 500 (and, in a
group commit, a failure of other callers' writes). Each is refused here with a 422 naming
the field, or 415 for a body that is not JSON, before any service code runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.problems import problem_response

MAX_COUNT = 1_000_000_000_000
"""The largest count a body may carry (records exposed, hosts affected): far above any real
incident, far below PostgreSQL's BIGINT (2^63 - 1)."""

MAX_OFFSET = 1_000_000_000
"""The largest `offset` of a list endpoint."""

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Every timestamp a body carries lies in [EARLIEST, LATEST); where the rulebook forbids the
future, the service refuses more than 5 minutes ahead of its clock on top of this."""

NUL_FREE = r"^[^\x00]*$"
"""A pattern for path, query and header strings: no NUL character."""


def _in_range(value: datetime) -> datetime:
    # Comparing aware datetimes subtracts their offsets without building a datetime, so a
    # year-1 timestamp at +14:00 compares fine where converting it to UTC would overflow.
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be from {EARLIEST.isoformat()} and before {LATEST.isoformat()}")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_in_range)]
"""An RFC 3339 timestamp with a time zone, within [EARLIEST, LATEST)."""

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
"""A non-negative count of at most MAX_COUNT."""

PageLimit = Annotated[int, Query(ge=1, le=100, description="at most this many items")]
PageOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]


def _holds_nul(value: Any) -> bool:
    """Whether a validated value holds NUL in a string, looking through lists and maps;
    nested request bodies check themselves (and name the nested field)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_nul(v) for v in value)
    return False


class RequestBody(BaseModel):
    """Every request body: unknown fields refused (422), and no string in any field may hold
    NUL (422 naming the field), whatever its type says."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _holds_nul(value):
            raise ValueError("must not contain the NUL character (\\u0000)")
        return value


JSON = "application/json"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class JsonBodiesOnly:
    """Refuses, with 415 problem+json, a request body that is not `application/json` (with
    parameters such as charset, or none): every body the services read is JSON, and FastAPI
    would otherwise try other types as JSON or report them as a 422 of the whole body.
    A plain ASGI middleware, looking at headers only, before the body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in BODY_METHODS:
            headers = Headers(scope=scope)
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
            if has_body and media_type != JSON:
                response = problem_response(
                    415, "Unsupported media type",
                    f"request bodies are {JSON}, not {media_type or 'untyped'}", scope["path"],
                    errors=[{"field": "content-type", "message": f"must be {JSON}"}])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
