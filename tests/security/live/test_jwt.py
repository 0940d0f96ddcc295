"""Forged and malformed bearer tokens: every one is a 401 problem on every service, never a
5xx and never access."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cyberclaims.client import Api
from shared.auth import audience_of
from shared.settings import PlatformSettings
from shared.signing import ALL_AUDIENCES
from tests.e2e.system import System
from tests.security.support import Figures, platform_settings, status_of
from tests.support.service import hs256_signed, provider_signer

pytestmark = pytest.mark.slow

# A GET each role may call on each service (the attack would otherwise meet a 403 first).
TARGETS = {
    "operator": [("intake", "/v1/incidents"), ("triage", "/v1/vendors"), ("payout", "/v1/claims"),
                 ("notify", "/v1/deliveries")],
    "policyholder": [("intake", "/v1/incidents"), ("notify", "/v1/notifications")],
    "vendor": [("triage", "/v1/jobs"), ("notify", "/v1/notifications")],
    "adjuster": [("payout", "/v1/claims"), ("notify", "/v1/notifications")],
}


OLD_SHARED_SECRET = "Q0X8WwN4WU1jsn8Ch51rlFZxUGFK4kDI4_Q15CaWNww"
"""The HS256 secret the tests signed with before tokens were asymmetric."""


def claims_for(settings: PlatformSettings, as_role: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "attacker", "role": as_role, "iss": settings.jwt_issuer,
                              "aud": list(ALL_AUDIENCES), "iat": now, "exp": now + 600}
    claims |= {"policyholder": {"org_id": "org-attacker"},
               "vendor": {"vendor_id": "v-attacker"}}.get(as_role, {})
    claims |= overrides
    return {key: value for key, value in claims.items() if value is not None}


def signed(settings: PlatformSettings, claims: dict[str, Any], *, algorithm: str = "ES256",
           key: Any = None, kid: str | None = None) -> str:
    """Signed by the system's provider key unless `key` (and named by its `kid` unless `kid`)."""
    provider = provider_signer()
    private = serialization.load_pem_private_key(provider.private_pem(), password=None)
    return jwt.encode(claims, private if key is None else key, algorithm=algorithm,
                      headers={"kid": kid or provider.kid})


def public_jwk_bytes() -> bytes:
    """The provider's public key as published: what an algorithm-confusion attack keys HS256
    with."""
    return json.dumps(provider_signer().jwks()["keys"][0]).encode()


ANOTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    """A token with no signature at all, its header naming `alg`."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}."


Forge = Callable[[PlatformSettings], tuple[str, str]]  # -> (role, token)
ATTACKS: dict[str, Forge] = {
    "alg none": lambda s: ("operator", unsigned(claims_for(s, "operator"))),
    "alg NONE": lambda s: ("operator", unsigned(claims_for(s, "operator"), alg="NONE")),
    "HS256 with the old shared secret": lambda s: ("operator", hs256_signed(
        claims_for(s, "operator"), OLD_SHARED_SECRET.encode(), provider_signer().kid)),
    "HS256 keyed with the public key": lambda s: ("operator", hs256_signed(
        claims_for(s, "operator"), public_jwk_bytes(), provider_signer().kid)),
    "wrong key, the provider's kid": lambda s: ("operator", signed(
        s, claims_for(s, "operator"), key=ANOTHER_KEY)),
    "unknown key": lambda s: ("operator", signed(
        s, claims_for(s, "operator"), key=ANOTHER_KEY, kid="attacker-key")),
    "no kid": lambda s: ("operator", jwt.encode(claims_for(s, "operator"), ANOTHER_KEY,
                                                algorithm="ES256")),
    "signature stripped": lambda s: ("operator", signed(
        s, claims_for(s, "operator")).rsplit(".", 1)[0] + "."),
    "expired": lambda s: ("operator", signed(s, claims_for(
        s, "operator", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600))),
    "nbf in the future": lambda s: ("operator", signed(s, claims_for(
        s, "operator", nbf=int(time.time()) + 3600))),
    "wrong issuer": lambda s: ("operator", signed(s, claims_for(s, "operator", iss="evil"))),
    "wrong audience": lambda s: ("operator", signed(s, claims_for(s, "operator", aud="other-api"))),
    "a token for risk only": lambda s: ("operator", signed(s, claims_for(
        s, "operator", aud=audience_of("risk")))),
    "no exp": lambda s: ("operator", signed(s, claims_for(s, "operator", exp=None))),
    "no sub": lambda s: ("operator", signed(s, claims_for(s, "operator", sub=None))),
    "unknown role": lambda s: ("operator", signed(s, claims_for(s, "superuser"))),
    "role of the wrong type": lambda s: ("operator", signed(s, claims_for(s, "operator", role=3))),
    "sub of the wrong type": lambda s: ("operator", signed(s, claims_for(
        s, "operator", sub={"id": 1}))),
    "org_id: 123": lambda s: ("policyholder", signed(s, claims_for(s, "policyholder", org_id=123))),
    "org_id: a list": lambda s: ("policyholder", signed(s, claims_for(
        s, "policyholder", org_id=["org-a", "org-b"]))),
    "vendor_id: 123": lambda s: ("vendor", signed(s, claims_for(s, "vendor", vendor_id=123))),
    "oversize token (64 KiB)": lambda s: ("operator", signed(s, claims_for(
        s, "operator", padding="x" * 65536))),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_forged_token_is_refused_with_401(system: System, api: Api, figures: Figures,
                                          attack: str) -> None:
    role, token = ATTACKS[attack](platform_settings(system))
    answers = {}
    for service, path in TARGETS[role]:
        status = status_of(api, "GET", api.urls[service] + path,
                           headers={"Authorization": f"Bearer {token}"})
        # An oversize header may be cut off by the server's header bound instead (431).
        refused = status == 401 or (attack.startswith("oversize") and status == 431)
        figures.record("JWT attacks", refused)
        answers[f"{service} {path}"] = status
    assert all(status == 401 or (attack.startswith("oversize") and status == 431)
               for status in answers.values()), f"{attack}: {answers}"
