"""Signing tokens the way an identity provider does, for development and tests: an ES256 key
pair whose public half is published as a JWKS the services verify against.

Production never signs here: its tokens come from the OIDC provider, and the services only
hold the provider's JWKS URL. In development `cyberclaims token` signs with the local key under
`.data/` (created on first use, readable by its owner only) and `make run`'s services read the
matching `.data/jwks.json`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from shared.auth import Role, audience_of
from shared.clock import Clock, SystemClock
from shared.settings import LOCAL_JWKS, Environment, PlatformSettings

SERVICE_NAMES = ("intake", "triage", "payout", "notify", "risk", "insights")
ALL_AUDIENCES = tuple(audience_of(service) for service in SERVICE_NAMES)
"""A development token's audiences: one token for every service, as the README's commands
use it. A provider issues one audience per token; `--audience` narrows a local one."""


class TokenSigner:
    """Issues ES256 tokens with one private key; `jwks()` is what verifiers need."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, *, issuer: str,
                 ttl_seconds: int = 3600, clock: Clock | None = None) -> None:
        self._private_key = private_key
        self._public_jwk: dict[str, Any] = ECAlgorithm.to_jwk(private_key.public_key(),
                                                              as_dict=True)
        self.kid = thumbprint(self._public_jwk)
        self._issuer = issuer
        self._ttl = ttl_seconds
        self._clock = clock or SystemClock()

    @classmethod
    def generate(cls, *, issuer: str, **options: Any) -> TokenSigner:
        """A fresh key pair (tests: each run has its own, nothing to leak)."""
        return cls(ec.generate_private_key(ec.SECP256R1()), issuer=issuer, **options)

    def private_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._public_jwk, "kid": self.kid, "use": "sig", "alg": "ES256"}]}

    def issue(self, *, role: Role, sub: str, audience: str | Sequence[str] = ALL_AUDIENCES,
              org_id: str | None = None, vendor_id: str | None = None,
              ttl_seconds: int | None = None, **extra: Any) -> str:
        """A token for `role` and `sub`; `extra` claims are signed too (the tests' forged
        `authority_limit`), and the services ignore what they do not know."""
        now = int(self._clock.now().timestamp())
        claims: dict[str, Any] = {
            "sub": sub, "role": role.value, "iss": self._issuer,
            "aud": audience if isinstance(audience, str) else list(audience),
            "iat": now, "exp": now + (ttl_seconds or self._ttl), **extra}
        if org_id is not None:
            claims["org_id"] = org_id
        if vendor_id is not None:
            claims["vendor_id"] = vendor_id
        return jwt.encode(claims, self._private_key, algorithm="ES256",
                          headers={"kid": self.kid})


def thumbprint(public_jwk: dict[str, Any]) -> str:
    """The key's RFC 7638 thumbprint, its `kid`: the same key always has the same name."""
    members = {name: public_jwk[name] for name in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def local_signer(key_path: Path, *, issuer: str, **options: Any) -> TokenSigner:
    """The development (or test) signer: the key at `key_path`, created (mode 0600) on first
    use, and its JWKS written next to it (`jwks.json`), so services reading that JWKS accept
    its tokens."""
    key_path.parent.mkdir(parents=True, exist_ok=True)
    if not key_path.exists():
        fresh = TokenSigner.generate(issuer=issuer, **options)
        partial = key_path.with_name(f".{key_path.name}.{os.getpid()}")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as key_file:
            key_file.write(fresh.private_pem())
        try:  # a link never replaces: of two first uses at once, one key wins
            os.link(partial, key_path)
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    signer = TokenSigner(loaded, issuer=issuer, **options)
    write_jwks(key_path.with_name(LOCAL_JWKS), signer.jwks())
    return signer


def write_jwks(path: Path, document: dict[str, Any]) -> None:
    """Replace the JWKS at `path` in one step (a reader never sees half a file)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(document, indent=2))
    partial.replace(path)


def development_signer(platform: PlatformSettings) -> TokenSigner:
    """The signer of `cyberclaims token` and the demo: the local key (`signing_key_file`).
    Never in production, where tokens come from the identity provider."""
    if platform.env is Environment.production:
        raise ValueError("production tokens come from the identity provider (CYBERCLAIMS_JWKS_URL); "
                         "cyberclaims signs development and test tokens only")
    return local_signer(platform.resolved_signing_key(), issuer=platform.jwt_issuer,
                        ttl_seconds=platform.jwt_ttl_seconds)
