"""Bearer tokens from the identity provider: RS256 or ES256 JWTs, verified against the
provider's published keys (its JWKS), with the issuer and this service's audience checked.

A token says who the caller is and in which role; it carries no authority. What an adjuster
may decide on is payout's registry of adjusters (services/payout/adjusters.py), kept by
operators, so a leaked signing key or a careless provider cannot mint an unlimited approver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlparse

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.clock import Clock, SystemClock
from shared.inputs import NUL_FREE
from shared.problems import Forbidden, Unauthorized
from shared.settings import PlatformSettings

ALGORITHMS = ("RS256", "ES256")
"""Asymmetric only: a service holds public keys and can verify, never sign. HS256 (a shared
secret) and `none` are refused everywhere, development and tests included."""

log = logging.getLogger(__name__)


def audience_of(service: str) -> str:
    """The audience a token must name to be accepted by `service` (e.g. `cyberclaims-payout`):
    a token obtained for intake is refused by payout."""
    return f"cyberclaims-{service}"


class Role(StrEnum):
    policyholder = "policyholder"
    vendor = "vendor"
    adjuster = "adjuster"
    operator = "operator"
    underwriter = "underwriter"
    actuary = "actuary"  # insights: aggregate loss experience only
    regulator = "regulator"  # insights: aggregate loss experience only


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)  # one verified token's principal serves many requests

    role: Role
    sub: str
    org_id: str | None = None
    vendor_id: str | None = None

    @property
    def recipient(self) -> str:
        """The address notify files this caller's in-app notifications under."""
        if self.role is Role.policyholder:
            return f"org:{self.org_id}"
        if self.role is Role.vendor:
            return f"vendor:{self.vendor_id}"
        return f"{self.role.value}:{self.sub}"


SUBJECT_MAX_LENGTH = 128
"""The longest `sub` (and `org_id`) a token may carry: every service records who acted as the
role and the subject (`operator:<sub>`), and the columns that hold them are sized for it."""
VENDOR_ID_MAX_LENGTH = 64
"""The longest `vendor_id`: triage's vendor registry allows no longer."""


ClaimText = Annotated[str, Field(strict=True, max_length=SUBJECT_MAX_LENGTH, pattern=NUL_FREE)]
VendorClaim = Annotated[str, Field(strict=True, max_length=VENDOR_ID_MAX_LENGTH,
                                   pattern=NUL_FREE)]


class _Claims(BaseModel):
    """The claims a principal is made of, with the types they must have: a token whose claims
    have others (`org_id: 123`) is refused like a forged one. Other claims (an old token's
    `authority_limit` among them) are ignored."""

    role: Role
    sub: ClaimText
    org_id: ClaimText | None = None
    vendor_id: VendorClaim | None = None


REQUIRED_CLAIM = {Role.policyholder: "org_id", Role.vendor: "vendor_id"}


class KeySet:
    """The provider's public signing keys by `kid`, from its JWKS URL (`https://`, or `file:`
    for development and tests). Fetched at start-up; fetched again when a token names a key
    not seen yet (the provider rotated its keys), at most once per `refresh_seconds`, so
    tokens with made-up `kid`s cannot hammer the provider. A failed fetch keeps the keys
    already known: an outage of the provider never refuses a token signed by a known key."""

    def __init__(self, url: str, *, refresh_seconds: float, timeout_seconds: float = 5.0,
                 clock: Clock | None = None) -> None:
        self._url = url
        self._clock = clock or SystemClock()
        self._refresh_seconds = refresh_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._http = httpx.AsyncClient(timeout=timeout_seconds)

    async def start(self) -> None:
        await self._refresh()
        if not self._keys:
            log.warning("no usable signing keys at %s yet; tokens are refused until there are",
                        self._url)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        known = self._keys.get(kid)
        if known is not None:
            return known
        async with self._lock:  # concurrent unknown kids wait for one fetch
            if kid not in self._keys and self._may_refresh():
                await self._refresh()
        return self._keys.get(kid)

    def _may_refresh(self) -> bool:
        return (self._fetched_at is None
                or self._clock.now().timestamp() - self._fetched_at >= self._refresh_seconds)

    async def _refresh(self) -> None:
        self._fetched_at = self._clock.now().timestamp()
        try:
            document = await self._fetch()
        except (OSError, httpx.HTTPError, ValueError) as exc:
            log.warning("signing keys not refreshed from %s: %s", self._url, exc)
            return
        keys = parse_jwks(document)
        if keys:
            self._keys = keys

    async def _fetch(self) -> Any:
        parsed = urlparse(self._url)
        if parsed.scheme == "file":
            text = await asyncio.to_thread(Path(unquote(parsed.path)).read_text)
            return json.loads(text)
        response = await self._http.get(self._url)
        response.raise_for_status()
        return response.json()


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWKS document: RSA or EC public keys with a `kid`, for RS256 or
    ES256; anything else (a symmetric `oct` key, an unknown curve) is skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        if key.algorithm_name in ALGORITHMS:
            keys[entry["kid"]] = key
    return keys


class TokenVerifier:
    """Verifies the provider's tokens for one service (its audience). A verified token is
    remembered until it expires (at most `cache_size` of them, least recently used out first):
    clients send the same bearer token with every request, and checking a signature costs far
    more than a cheap request."""

    def __init__(self, settings: PlatformSettings, *, audience: str, keys: KeySet,
                 cache_size: int = 10_000, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._issuer = settings.jwt_issuer
        self._audience = audience
        self._keys = keys
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    async def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None and known[1] > self._clock.now().timestamp():
            self._verified.move_to_end(token)
            return known[0]
        principal, expires_at = await self._decode(token)
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    async def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS:
            raise Unauthorized(f"invalid token: algorithm {algorithm!r} is not accepted "
                               f"(only {', '.join(ALGORITHMS)})")
        if not isinstance(kid, str):
            raise Unauthorized("invalid token: no `kid` naming its signing key")
        key = await self._keys.key(kid)
        if key is None:
            raise Unauthorized(f"invalid token: signed by an unknown key ({kid[:64]})")
        try:
            claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name],
                                issuer=self._issuer, audience=self._audience,
                                options={"require": ["exp", "iss", "aud", "sub"]})
            # PyJWT checked `exp` (an integer, not past) on the system's time; the injected
            # clock (the same one, but in tests) must agree, as for a remembered token.
            if claims["exp"] <= self._clock.now().timestamp():
                raise jwt.ExpiredSignatureError("Signature has expired")
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        try:
            typed = _Claims.model_validate(claims)
        except ValidationError as exc:
            wrong = ", ".join(sorted({".".join(map(str, error["loc"])) for error in exc.errors()}))
            raise Unauthorized(f"token claims of the wrong type or range: {wrong}") from exc
        needed = REQUIRED_CLAIM.get(typed.role)
        if needed and getattr(typed, needed) in (None, ""):
            raise Unauthorized(f"a {typed.role.value} token must carry {needed}")
        principal = Principal(role=typed.role, sub=typed.sub, org_id=typed.org_id,
                              vendor_id=typed.vendor_id)
        return principal, float(claims["exp"])


class RoleBearer(SecurityBase):
    """The dependency that admits a verified bearer token of one of `roles`: 401 without a
    valid token, 403 for any other role. In OpenAPI it is the `HTTPBearer` scheme.

    One dependency rather than a chain (scheme, then token, then role): FastAPI pays for
    every dependency on every request, about 12 µs each."""

    def __init__(self, roles: tuple[Role, ...]) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "HTTPBearer"
        self.roles = frozenset(roles)

    async def __call__(self, request: Request) -> Principal:
        scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        if not token or scheme.lower() != "bearer":
            raise Unauthorized("missing bearer token")
        tokens: TokenVerifier = request.app.state.tokens
        principal = await tokens.verify(token)
        if principal.role not in self.roles:
            raise Forbidden(f"role {principal.role.value} may not call this endpoint")
        return principal


def require(*roles: Role) -> Any:
    """A dependency that admits only `roles` (403 for any other valid token)."""
    return Depends(RoleBearer(roles))
