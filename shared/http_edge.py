"""The HTTP edge: what a request must pass before a service reads its body.

Every request (`RequestLimitsMiddleware`): headers larger than `max_header_bytes` get 431, a
body announced (Content-Length) larger than `max_body_bytes` gets 413, and a body that turns
out larger while streaming (chunked, or a lying length) gets 413 as soon as the limit is
passed, so at most the limit is ever buffered.

Every route that takes a bearer token is wrapped (`guard_authenticated_routes`, once, when the
app is assembled) so that, before the endpoint reads a byte of the body:

1. a client address that has sent too many requests without a valid token gets 429;
2. a request without a valid token gets 401 (and counts against its address);
3. a write (POST, PUT, PATCH, DELETE) beyond its principal's or its address's rate gets 429.

Role checks (403) and object-level checks stay with the endpoint's dependencies. The limits'
state lives in the running service (`EdgeLimits` on its `Runtime`), never in a module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Principal, RoleBearer, TokenVerifier
from shared.problems import Unauthorized, problem_response
from shared.ratelimit import RateLimiter
from shared.settings import PlatformSettings

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNKNOWN_ADDRESS = "unknown"


@dataclass(frozen=True)
class EdgeLimits:
    """One running service's rate limiters (see `PlatformSettings` for the rates)."""

    principal_writes: RateLimiter
    address_writes: RateLimiter
    failed_auth: RateLimiter

    @classmethod
    def from_settings(cls, platform: PlatformSettings) -> EdgeLimits | None:
        """None when rate limits are off (`CYBERCLAIMS_RATE_LIMITS=false`)."""
        if not platform.rate_limits:
            return None
        keys = platform.rate_limit_keys
        return cls(
            principal_writes=RateLimiter(platform.principal_write_rate,
                                         platform.principal_write_burst, capacity=keys),
            address_writes=RateLimiter(platform.address_write_rate,
                                       platform.address_write_burst, capacity=keys),
            failed_auth=RateLimiter(platform.failed_auth_rate, platform.failed_auth_burst,
                                    capacity=keys),
        )


def is_authenticated(route: APIRoute) -> bool:
    """Whether the route takes a bearer token (a `RoleBearer` among its dependencies)."""

    def takes_token(dependant: Dependant) -> bool:
        return isinstance(dependant.call, RoleBearer) or any(
            takes_token(d) for d in dependant.dependencies)

    return takes_token(route.dependant)


def guard_authenticated_routes(app: FastAPI) -> None:
    """Wrap every authenticated route of `app` in an `AuthenticatedEdge`, once: the routes
    belong to the services' routers, which every app built in the process shares (the edge
    reads its limits from the app serving the request)."""
    for route in app.router.routes:
        if (isinstance(route, APIRoute) and not isinstance(route.app, AuthenticatedEdge)
                and is_authenticated(route)):
            route.app = AuthenticatedEdge(route.app)


class AuthenticatedEdge:
    """The checks above, in front of one authenticated route (after routing, so unknown paths
    and methods keep their 404 and 405)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = scope["app"].state.runtime
        limits: EdgeLimits | None = runtime.limits
        client = scope.get("client")
        address = client[0] if client else UNKNOWN_ADDRESS
        path = scope["path"]
        if limits is not None and (wait := limits.failed_auth.peek(address)):
            await _too_many(wait, "too many requests without a valid token from this address",
                            path)(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            principal = await _principal(headers, runtime.tokens)
        except Unauthorized as exc:
            if limits is not None:
                limits.failed_auth.take(address)
            await problem_response(401, exc.title, exc.detail, path)(scope, receive, send)
            return
        if limits is not None and scope["method"] in WRITE_METHODS:
            wait = (limits.principal_writes.take(f"{principal.role.value}:{principal.sub}")
                    or limits.address_writes.take(address))
            if wait:
                await _too_many(wait, "too many writes; slow down", path)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _principal(headers: Headers, tokens: TokenVerifier) -> Principal:
    """The caller, as `RoleBearer` will see it (the verified token is cached)."""
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    if not token or scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    return await tokens.verify(token)


def _bounded(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing (413, raised to the endpoint reading the body) once more than
    `limit` bytes of body have arrived, and on every later read."""
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        if received > limit:
            raise _content_too_large(limit)
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _content_too_large(limit)
        return message

    return receive_within_limit


def _content_too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body exceeds {limit} bytes")


def _too_many(wait: float, detail: str, path: str) -> ASGIApp:
    return problem_response(429, "Too many requests", detail, path,
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})


class RequestLimitsMiddleware:
    """431 for headers (names and values together) over `max_header_bytes`; 413 for a body
    over `max_body_bytes`, announced or streamed.

    The server has parsed the headers by then: this bounds what the service keeps and works
    on, and the server's own limit bounds the parse (docs/operations.md, "HTTP limits")."""

    def __init__(self, app: ASGIApp, max_header_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = 0
        announced = b""
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == b"content-length":
                announced = value
        if header_bytes > self.max_header_bytes:
            await problem_response(
                431, "Request header fields too large",
                f"the request's headers exceed {self.max_header_bytes} bytes", scope["path"],
            )(scope, receive, send)
        elif announced.isdigit() and int(announced) > self.max_body_bytes:
            await problem_response(413, "Content too large",
                                   _content_too_large(self.max_body_bytes).detail,
                                   scope["path"])(scope, receive, send)
        else:
            await self.app(scope, _bounded(receive, self.max_body_bytes), send)
