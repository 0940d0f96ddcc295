"""Running a service in-process for a test: its lifespan (relay, consumer, workers) and an
HTTP client on its ASGI app."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.security.utils import get_authorization_scheme_param

from shared.auth import Role
from shared.service import Runtime
from shared.settings import LOCAL_JWKS, Environment, PlatformSettings
from shared.signing import TokenSigner, local_signer

TEST_ISSUER = "cyberclaims"
REGISTRY_HINT = "test_registry_authority"
"""A claim only the test harness reads: the authority limit `Tokens.adjuster` wants the
adjuster registered with in payout's registry (the services ignore it, as any unknown claim)."""


@functools.cache
def provider_key() -> Path:
    """The test process's identity provider key, in a temporary directory of its own (a fresh
    key per process, never in the repository); its JWKS is next to it."""
    key = Path(tempfile.mkdtemp(prefix="cyberclaims-keys-")) / "signing-key.pem"
    local_signer(key, issuer=TEST_ISSUER)
    return key


@functools.cache
def provider_signer() -> TokenSigner:
    return local_signer(provider_key(), issuer=TEST_ISSUER)


def provider_jwks_url() -> str:
    """The test signer's JWKS as a `file:` URL (in-process services and the system's
    processes read it; `cyberclaims token` there signs with `provider_key()`)."""
    return provider_key().with_name(LOCAL_JWKS).as_uri()


def hs256_signed(claims: dict[str, object], key: bytes, kid: str) -> str:
    """An HS256 token signed by hand, as an attacker would: PyJWT refuses to key HMAC with a
    JWK (the algorithm-confusion attack keys it with the provider's published key)."""
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{part(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_platform(bootstrap: str, **overrides: object) -> PlatformSettings:
    """Rate limits are off unless a test turns them on: every test client is one address.

    The session timeout is Tansu's shortest useful one: each test starts a service whose group
    the previous test's app has just left, and Tansu keeps a member that left until its
    session expires, then rebalances. At 2 s the new member joined, then lost its partitions
    to that rebalance for seconds (notify's mail tests waited 20 s for nothing); at 1 s it
    joins in about a second, with the old member already gone."""
    settings: dict[str, object] = {"jwks_url": provider_jwks_url(), "jwt_issuer": TEST_ISSUER,
                                   "rate_limits": False, **overrides}
    return PlatformSettings(env=Environment.test, kafka_bootstrap=bootstrap,
                            kafka_session_timeout_ms=1000, outbox_poll_seconds=0.2,
                            **settings)  # type: ignore[arg-type]


@contextmanager
def service_logs(caplog: pytest.LogCaptureFixture, logger: str,
                 level: int = logging.WARNING) -> Iterator[None]:
    """Capture `logger` while a service runs: its start-up replaced the root logger's handlers
    (JSON lines on stdout), pytest's capture among them, so listen on the logger itself."""
    target = logging.getLogger(logger)
    previous = target.level
    target.setLevel(level)
    target.addHandler(caplog.handler)
    try:
        yield
    finally:
        target.removeHandler(caplog.handler)
        target.setLevel(previous)


@asynccontextmanager
async def running(app: FastAPI, *, wait_for_consumer: bool = True
                  ) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan and yield a client; the consumer has joined its group."""
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        if wait_for_consumer and runtime.consumer is not None:
            await asyncio.wait_for(runtime.consumer.ready.wait(), timeout=30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if runtime.name == "payout":
                client.event_hooks["request"].append(AdjusterRegistrar(client).register)
            yield client


class AdjusterRegistrar:
    """What an operator does before an adjuster works: registers them in payout's registry
    with the authority limit `Tokens.adjuster` was given (its `REGISTRY_HINT`), through the
    operator API, before the adjuster's first request on this client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._registered: dict[str, str] = {}
        self._registering = asyncio.Lock()  # concurrent first requests register once
        self._operator = Tokens().operator("test-harness")

    async def register(self, request: httpx.Request) -> None:
        scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        if scheme.lower() != "bearer" or not token:
            return
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return
        limit, subject = claims.get(REGISTRY_HINT), claims.get("sub")
        if not isinstance(limit, str) or not isinstance(subject, str):
            return
        async with self._registering:
            if self._registered.get(subject) == limit:
                return
            response = await self._client.put(
                f"/v1/adjusters/{subject}", headers=self._operator,
                json={"authority_limit": limit, "reason": "test set-up"})
            assert response.status_code == 200, response.text
            self._registered[subject] = limit


class Tokens:
    """Bearer headers for each role, signed by the test run's identity provider for every
    service's audience."""

    def __init__(self) -> None:
        self._signer = provider_signer()

    def policyholder(self, org_id: str) -> dict[str, str]:
        return self._bearer(role=Role.policyholder, sub=f"user@{org_id}", org_id=org_id)

    def vendor(self, vendor_id: str) -> dict[str, str]:
        return self._bearer(role=Role.vendor, sub=f"staff@{vendor_id}", vendor_id=vendor_id)

    def adjuster(self, sub: str = "adjuster-1", authority_limit: str = "1000000"
                 ) -> dict[str, str]:
        """An adjuster's token; `running()`'s client registers them in payout's registry with
        `authority_limit` before their first request (the token itself carries none)."""
        return self._bearer(role=Role.adjuster, sub=sub,
                            **{REGISTRY_HINT: str(Decimal(authority_limit))})

    def operator(self, sub: str = "operator-1") -> dict[str, str]:
        return self._bearer(role=Role.operator, sub=sub)

    def underwriter(self, sub: str = "underwriter-1") -> dict[str, str]:
        return self._bearer(role=Role.underwriter, sub=sub)

    def _bearer(self, **claims: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._signer.issue(**claims)}"}  # type: ignore[arg-type]
