"""Verified tokens are remembered only while they are valid, and only as the exact string."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import timedelta
from decimal import Decimal

import jwt
import pytest

from shared.auth import Role, TokenService
from shared.clock import ManualClock
from shared.problems import Unauthorized
from shared.settings import PlatformSettings


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def tokens(clock: ManualClock) -> TokenService:
    return TokenService(PlatformSettings(jwt_secret="s" * 40), cache_size=2, clock=clock)


def test_a_remembered_token_is_refused_once_it_expires(tokens: TokenService,
                                                        clock: ManualClock) -> None:
    token = tokens.issue(role=Role.operator, sub="ops", ttl_seconds=60)
    assert tokens.verify(token).sub == "ops"
    clock.advance(timedelta(seconds=59))
    assert tokens.verify(token).sub == "ops"
    clock.advance(timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token)


def test_a_tampered_copy_of_a_remembered_token_is_refused(tokens: TokenService) -> None:
    token = tokens.issue(role=Role.policyholder, sub="it", org_id="org-a")
    assert tokens.verify(token).org_id == "org-a"
    header, claims, signature = token.split(".")
    with pytest.raises(Unauthorized):
        tokens.verify(f"{header}.{claims}.{signature[:-2]}AA")


def test_a_token_of_another_key_is_refused_even_with_the_same_claims(tokens: TokenService) -> None:
    forged = TokenService(PlatformSettings(jwt_secret="f" * 40)).issue(role=Role.operator, sub="ops")
    tokens.verify(tokens.issue(role=Role.operator, sub="ops"))
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        tokens.verify(forged)


def test_the_memory_of_verified_tokens_is_bounded(tokens: TokenService) -> None:
    issued = [tokens.issue(role=Role.operator, sub=f"ops-{n}") for n in range(5)]
    for token in issued:
        tokens.verify(token)
    assert len(tokens._verified) == 2
    assert tokens.verify(issued[0]).sub == "ops-0"  # forgotten, so decoded again


def _signed(settings: PlatformSettings, **claims: object) -> str:
    now = int(time.time())
    return jwt.encode({"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "iat": now,
                       "exp": now + 60, **claims}, settings.jwt_secret, algorithm="HS256")


@pytest.mark.parametrize("claims", [
    {"role": "policyholder", "sub": "it", "org_id": 123},
    {"role": "policyholder", "sub": "it", "org_id": "org\x00a"},
    {"role": "policyholder", "sub": "it", "org_id": "o" * 257},
    {"role": "vendor", "sub": "it", "vendor_id": []},
    {"role": "operator", "sub": 5},
    {"role": ["operator"], "sub": "it"},
    {"role": "adjuster", "sub": "it", "authority_limit": "NaN"},
    {"role": "adjuster", "sub": "it", "authority_limit": "Infinity"},
    {"role": "adjuster", "sub": "it", "authority_limit": "-1"},
    {"role": "adjuster", "sub": "it", "authority_limit": -1},
    {"role": "adjuster", "sub": "it", "authority_limit": True},
    {"role": "adjuster", "sub": "it", "authority_limit": "1e400"},
    {"role": "adjuster", "sub": "it", "authority_limit": "a lot"},
    {"role": "adjuster", "sub": "it", "authority_limit": {"amount": 5}},
], ids=lambda claims: repr(claims)[:60])
def test_claims_of_the_wrong_type_or_range_are_refused_as_401(claims: dict[str, object]) -> None:
    settings = PlatformSettings(jwt_secret="s" * 40)
    with pytest.raises(Unauthorized):
        TokenService(settings).verify(_signed(settings, **claims))


def test_an_authority_limit_of_1e400_as_a_json_number_is_refused() -> None:
    """1e400 is infinity once parsed as JSON: written into the payload by hand."""
    settings = PlatformSettings(jwt_secret="s" * 40)
    token = _signed(settings, role="adjuster", sub="it", authority_limit=1.0)
    header, payload, _ = token.split(".")
    body = base64.urlsafe_b64decode(payload + "==").replace(b"1.0", b"1e400")
    forged_payload = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
    signing_input = f"{header}.{forged_payload}".encode()
    signature = base64.urlsafe_b64encode(
        hmac.new(settings.jwt_secret.encode(), signing_input, hashlib.sha256).digest()
    ).rstrip(b"=").decode()
    with pytest.raises(Unauthorized, match="authority_limit"):
        TokenService(settings).verify(f"{header}.{forged_payload}.{signature}")


@pytest.mark.parametrize("limit", [0, 1000, 1000.5, "2500.00"])
def test_a_finite_non_negative_authority_limit_is_admitted(limit: object) -> None:
    settings = PlatformSettings(jwt_secret="s" * 40)
    principal = TokenService(settings).verify(
        _signed(settings, role="adjuster", sub="it", authority_limit=limit))
    assert principal.authority_limit == Decimal(str(limit))
