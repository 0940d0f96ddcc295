"""A thin client of the four public HTTP APIs, acting as each kind of user.

Used by `cyberclaims demo` and by the end-to-end tests, so the story is written once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from shared.auth import Role
from shared.signing import TokenSigner

T = TypeVar("T")


class ApiError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.request.method} {response.request.url} -> "
                         f"{response.status_code}: {response.text[:500]}")
        self.response = response


class Actor:
    """One user: a role with its identity claims, calling the services with its token."""

    def __init__(self, api: Api, headers: dict[str, str], name: str) -> None:
        self.api = api
        self.headers = headers
        self.name = name

    def call(self, service: str, method: str, path: str, *, json: Any = None,
             headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
             expect: tuple[int, ...] = (200, 201)) -> Any:
        response = self.api.http.request(method, self.api.urls[service] + path, json=json,
                                         params=params, headers={**self.headers, **(headers or {})})
        if response.status_code not in expect:
            raise ApiError(response)
        return response.json() if response.content else None

    def get(self, service: str, path: str, **params: Any) -> Any:
        return self.call(service, "GET", path, params=params or None)

    def post(self, service: str, path: str, json: Any = None, **options: Any) -> Any:
        return self.call(service, "POST", path, json=json, **options)


KEEP_ALIVE = httpx.Limits(keepalive_expiry=2.0)
"""Idle connections are dropped before the services' own keep-alive timeout (uvicorn's 5 s,
httpx's default too): otherwise a request may go out on a connection the server is closing
at that instant and fail with a reset (seen once in the live security suite)."""


class Api:
    def __init__(self, urls: dict[str, str], tokens: TokenSigner, timeout: float = 15.0) -> None:
        self.urls = urls
        self.tokens = tokens
        self.http = httpx.Client(timeout=timeout, limits=KEEP_ALIVE)

    def close(self) -> None:
        self.http.close()

    def _actor(self, name: str, **claims: Any) -> Actor:
        token = self.tokens.issue(**claims)
        return Actor(self, {"Authorization": f"Bearer {token}"}, name)

    def operator(self, sub: str = "ops-1") -> Actor:
        return self._actor(f"operator {sub}", role=Role.operator, sub=sub)

    def policyholder(self, org_id: str) -> Actor:
        return self._actor(f"policyholder {org_id}", role=Role.policyholder,
                           sub=f"it@{org_id}", org_id=org_id)

    def vendor(self, vendor_id: str) -> Actor:
        return self._actor(f"vendor {vendor_id}", role=Role.vendor, sub=f"soc@{vendor_id}",
                           vendor_id=vendor_id)

    def adjuster(self, sub: str, authority_limit: str) -> Actor:
        """An adjuster, registered first in payout's registry with `authority_limit` by an
        operator (their token carries no authority)."""
        self.operator("adjuster-registrar").call(
            "payout", "PUT", f"/v1/adjusters/{sub}",
            json={"authority_limit": authority_limit, "reason": "registered by the client"},
            expect=(200,))
        return self._actor(f"adjuster {sub}", role=Role.adjuster, sub=sub)


def wait_for(what: str, probe: Callable[[], T], *, until: Callable[[T], object] = bool,
             timeout: float = 60.0, interval: float = 0.25) -> T:
    """Poll `probe` until `until(value)` holds, and return that value (the system is
    eventually consistent: an event takes a moment to reach the next service)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)
