"""Tokens are verified against the provider's JWKS: RS256/ES256 only, the issuer and this
service's audience checked, keys rotated by the provider picked up, a JWKS outage harmless to
known keys; verified tokens are remembered only while valid, and only as the exact string."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth import KeySet, Role, TokenVerifier, audience_of, parse_jwks
from shared.clock import ManualClock
from shared.problems import Unauthorized
from shared.settings import PlatformSettings
from shared.signing import TokenSigner, write_jwks
from tests.support.service import hs256_signed

ISSUER = "https://idp.example"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def provider(clock: ManualClock) -> TokenSigner:
    return TokenSigner.generate(issuer=ISSUER, clock=clock)


@pytest.fixture
def jwks(tmp_path: Path, provider: TokenSigner) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, provider.jwks())
    return path


def verifier_for(jwks: Path, clock: ManualClock, *, service: str = "payout",
                 refresh_seconds: float = 60, cache_size: int = 10) -> TokenVerifier:
    keys = KeySet(jwks.as_uri(), refresh_seconds=refresh_seconds, clock=clock)
    settings = PlatformSettings(jwks_url=jwks.as_uri(), jwt_issuer=ISSUER)
    return TokenVerifier(settings, audience=audience_of(service), keys=keys,
                         cache_size=cache_size, clock=clock)


@pytest.fixture
async def tokens(jwks: Path, clock: ManualClock) -> AsyncIterator[TokenVerifier]:
    verifier = verifier_for(jwks, clock, cache_size=2)
    yield verifier
    await verifier._keys.aclose()


async def test_a_remembered_token_is_refused_once_it_expires(
        tokens: TokenVerifier, provider: TokenSigner, clock: ManualClock) -> None:
    token = provider.issue(role=Role.operator, sub="ops", ttl_seconds=60)
    assert (await tokens.verify(token)).sub == "ops"
    clock.advance(timedelta(seconds=59))
    assert (await tokens.verify(token)).sub == "ops"
    clock.advance(timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="expired"):
        await tokens.verify(token)


async def test_a_tampered_copy_of_a_remembered_token_is_refused(
        tokens: TokenVerifier, provider: TokenSigner) -> None:
    token = provider.issue(role=Role.policyholder, sub="it", org_id="org-a")
    assert (await tokens.verify(token)).org_id == "org-a"
    header, claims, signature = token.split(".")
    with pytest.raises(Unauthorized):
        await tokens.verify(f"{header}.{claims}.{signature[:-4]}AAAA")


async def test_another_key_is_refused_whether_it_names_the_providers_kid_or_its_own(
        tokens: TokenVerifier, provider: TokenSigner) -> None:
    attacker = TokenSigner.generate(issuer=ISSUER)
    claims = jwt.decode(attacker.issue(role=Role.operator, sub="ops"),
                        options={"verify_signature": False})
    as_provider = jwt.encode(claims, attacker._private_key, algorithm="ES256",
                             headers={"kid": provider.kid})
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        await tokens.verify(as_provider)
    with pytest.raises(Unauthorized, match="unknown key"):
        await tokens.verify(attacker.issue(role=Role.operator, sub="ops"))


async def test_hs256_and_none_are_refused_even_keyed_with_the_published_key(
        tokens: TokenVerifier, provider: TokenSigner) -> None:
    claims = jwt.decode(provider.issue(role=Role.operator, sub="ops"),
                        options={"verify_signature": False})
    public = json.dumps(provider.jwks()["keys"][0]).encode()
    for key in (b"Q0X8WwN4WU1jsn8Ch51rlFZxUGFK4kDI4_Q15CaWNww", public):
        with pytest.raises(Unauthorized, match="'HS256' is not accepted"):
            await tokens.verify(hs256_signed(claims, key, provider.kid))
    unsigned = f"{part({'alg': 'none', 'kid': provider.kid})}.{part(claims)}."
    with pytest.raises(Unauthorized, match="'none' is not accepted"):
        await tokens.verify(unsigned)


async def test_a_token_for_another_service_or_issuer_is_refused(
        tokens: TokenVerifier, provider: TokenSigner) -> None:
    with pytest.raises(Unauthorized, match=r"(?i)audience"):
        await tokens.verify(provider.issue(role=Role.operator, sub="ops",
                                           audience=audience_of("intake")))
    assert (await tokens.verify(provider.issue(role=Role.operator, sub="ops",
                                               audience=audience_of("payout")))).sub == "ops"
    other_issuer = TokenSigner(provider._private_key, issuer="https://evil.example")
    with pytest.raises(Unauthorized, match=r"(?i)issuer"):
        await tokens.verify(other_issuer.issue(role=Role.operator, sub="ops"))


async def test_an_authority_limit_claim_is_ignored(tokens: TokenVerifier,
                                                   provider: TokenSigner) -> None:
    principal = await tokens.verify(provider.issue(role=Role.adjuster, sub="it",
                                                   authority_limit="100000000000"))
    assert principal.model_dump() == {"role": Role.adjuster, "sub": "it", "org_id": None,
                                      "vendor_id": None}


async def test_the_memory_of_verified_tokens_is_bounded(tokens: TokenVerifier,
                                                        provider: TokenSigner) -> None:
    issued = [provider.issue(role=Role.operator, sub=f"ops-{n}") for n in range(5)]
    for token in issued:
        await tokens.verify(token)
    assert len(tokens._verified) == 2
    assert (await tokens.verify(issued[0])).sub == "ops-0"  # forgotten, so decoded again


async def test_a_rotated_key_is_picked_up_and_unknown_kids_fetch_at_most_once_per_interval(
        jwks: Path, provider: TokenSigner, clock: ManualClock) -> None:
    tokens = verifier_for(jwks, clock, refresh_seconds=30)
    try:
        await tokens._keys.start()
        assert (await tokens.verify(provider.issue(role=Role.operator, sub="a"))).sub == "a"
        rotated = TokenSigner.generate(issuer=ISSUER)
        with pytest.raises(Unauthorized, match="unknown key"):
            await tokens.verify(rotated.issue(role=Role.operator, sub="b"))  # not published yet
        write_jwks(jwks, {"keys": provider.jwks()["keys"] + rotated.jwks()["keys"]})
        with pytest.raises(Unauthorized, match="unknown key"):  # fetched 0 s ago: not again
            await tokens.verify(rotated.issue(role=Role.operator, sub="b"))
        clock.advance(timedelta(seconds=30))
        assert (await tokens.verify(rotated.issue(role=Role.operator, sub="b"))).sub == "b"
    finally:
        await tokens._keys.aclose()


async def test_a_jwks_outage_never_refuses_a_known_key(jwks: Path, provider: TokenSigner,
                                                       clock: ManualClock) -> None:
    tokens = verifier_for(jwks, clock, refresh_seconds=0)
    try:
        await tokens._keys.start()
        await asyncio.to_thread(jwks.unlink)  # the provider is down
        with pytest.raises(Unauthorized, match="unknown key"):
            await tokens.verify(TokenSigner.generate(issuer=ISSUER).issue(role=Role.operator,
                                                                          sub="x"))
        assert (await tokens.verify(provider.issue(role=Role.operator, sub="a"))).sub == "a"
    finally:
        await tokens._keys.aclose()


def test_only_asymmetric_signing_keys_are_taken_from_a_jwks(provider: TokenSigner) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key, as_dict=True), "kid": "r"}
    document = {"keys": [
        *provider.jwks()["keys"], rsa_jwk,
        {"kty": "oct", "k": "c2VjcmV0", "kid": "shared-secret", "alg": "HS256"},
        {**provider.jwks()["keys"][0], "kid": "encryption", "use": "enc"},
        {**provider.jwks()["keys"][0], "kid": None},
        "not a key"]}
    assert sorted(parse_jwks(document)) == sorted([provider.kid, "r"])
    assert parse_jwks({"keys": "none"}) == {} and parse_jwks([]) == {}


def part(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _signed(provider: TokenSigner, **claims: object) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": audience_of("payout"), "iat": now, "exp": now + 60,
                       **claims}, provider._private_key, algorithm="ES256",
                      headers={"kid": provider.kid})


@pytest.mark.parametrize("claims", [
    {"role": "policyholder", "sub": "it", "org_id": 123},
    {"role": "policyholder", "sub": "it", "org_id": "org\x00a"},
    {"role": "policyholder", "sub": "it", "org_id": "o" * 129},
    {"role": "operator", "sub": "s" * 129},
    {"role": "vendor", "sub": "it", "vendor_id": "v" * 65},
    {"role": "policyholder", "sub": "it"},
    {"role": "vendor", "sub": "it", "vendor_id": []},
    {"role": "operator", "sub": 5},
    {"role": ["operator"], "sub": "it"},
    {"role": "superuser", "sub": "it"},
], ids=lambda claims: repr(claims)[:60])
async def test_claims_of_the_wrong_type_or_range_are_refused_as_401(
        tokens: TokenVerifier, provider: TokenSigner, claims: dict[str, object]) -> None:
    with pytest.raises(Unauthorized):
        await tokens.verify(_signed(provider, **claims))
