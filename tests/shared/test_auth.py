"""Verified tokens are remembered only while they are valid, and only as the exact string."""

from __future__ import annotations

import time

import pytest

from shared.auth import Role, TokenService
from shared.problems import Unauthorized
from shared.settings import PlatformSettings


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(PlatformSettings(jwt_secret="s" * 40), cache_size=2)


def test_a_remembered_token_is_refused_once_it_expires(tokens: TokenService) -> None:
    token = tokens.issue(role=Role.operator, sub="ops", ttl_seconds=1)
    assert tokens.verify(token).sub == "ops"
    time.sleep(1.1)
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
