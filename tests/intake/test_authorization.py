"""Rulebook section 2 for intake: 401 without a valid token, 403 for a role that may not call
the endpoint, 404 for another org's objects (never revealing that they exist)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from shared.auth import Role, audience_of
from shared.settings import PlatformSettings
from shared.signing import TokenSigner
from tests.intake.conftest import register, report_body
from tests.support.service import Tokens, provider_signer


async def _two_orgs(api: httpx.AsyncClient, tokens: Tokens) -> tuple[dict[str, Any], ...]:
    a, b = await register(api, tokens), await register(api, tokens)
    for insured in (a, b):
        response = await api.post("/v1/incidents", json=report_body(insured["policy_number"]),
                                  headers={**insured["headers"], "Idempotency-Key": "one"})
        assert response.status_code == 201, response.text
        insured["incident_id"] = response.json()["id"]
    return a, b


async def test_a_policyholder_sees_nothing_of_another_org(
    api: httpx.AsyncClient, tokens: Tokens
) -> None:
    a, b = await _two_orgs(api, tokens)
    incident = f"/v1/incidents/{a['incident_id']}"
    as_b = b["headers"]
    attempts = [
        await api.get(f"/v1/policies/{a['policy_number']}", headers=as_b),
        await api.get(incident, headers=as_b),
        await api.post(f"{incident}/losses", headers=as_b, json={
            "section": "incident_response", "amount": "100.00", "description": "x"}),
        await api.post(f"{incident}/regulator-report", headers=as_b, json={
            "reported_at": "2026-01-01T00:00:00+00:00", "reference": "MIIT-1"}),
        await api.post("/v1/incidents", json=report_body(a["policy_number"]),
                       headers={**as_b, "Idempotency-Key": "steal"}),
    ]
    for response in attempts:
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
    missing = await api.get(f"/v1/incidents/{uuid.uuid4()}", headers=as_b)
    assert missing.status_code == 404  # indistinguishable from someone else's

    listing = (await api.get("/v1/incidents?limit=100", headers=as_b)).json()
    assert [item["id"] for item in listing["items"]] == [b["incident_id"]]
    assert listing["total"] == 1
    # A's own view is untouched by B's attempts.
    mine = (await api.get(incident, headers=a["headers"])).json()
    assert [e["type"] for e in mine["timeline"]] == ["incident.reported"]
    assert mine["regulator_reported_at"] is None


async def test_the_operator_reads_everything(api: httpx.AsyncClient, tokens: Tokens) -> None:
    a, b = await _two_orgs(api, tokens)
    operator = tokens.operator()
    for insured in (a, b):
        assert (await api.get(f"/v1/incidents/{insured['incident_id']}",
                              headers=operator)).status_code == 200
        assert (await api.get(f"/v1/policies/{insured['policy_number']}",
                              headers=operator)).status_code == 200
    listing = (await api.get("/v1/incidents?limit=100", headers=operator)).json()
    assert {a["incident_id"], b["incident_id"]} <= {item["id"] for item in listing["items"]}


async def test_roles_that_may_not_call_an_endpoint_get_403(
    api: httpx.AsyncClient, tokens: Tokens
) -> None:
    a, _ = await _two_orgs(api, tokens)
    incident = f"/v1/incidents/{a['incident_id']}"
    vendor, holder = tokens.vendor("vendor-x"), a["headers"]
    adjuster, operator = tokens.adjuster(), tokens.operator()
    policy = report_body(a["policy_number"])
    forbidden = [
        ("POST", "/v1/incidents", vendor, policy),
        ("GET", "/v1/incidents", vendor, None),
        ("GET", incident, vendor, None),
        ("POST", f"{incident}/losses", vendor, {"section": "incident_response",
                                                "amount": "1.00", "description": "x"}),
        ("POST", f"{incident}/regulator-report", vendor,
         {"reported_at": "2026-01-01T00:00:00+00:00", "reference": "r"}),
        ("GET", f"/v1/policies/{a['policy_number']}", vendor, None),
        ("POST", "/v1/policies", holder, {}),
        ("PUT", f"/v1/policies/{a['policy_number']}", holder, {}),
        ("POST", "/v1/policies", adjuster, {}),
        ("POST", "/v1/incidents", adjuster, policy),
        ("POST", "/v1/incidents", operator, policy),
    ]
    for method, url, headers, body in forbidden:
        response = await api.request(method, url, json=body,
                                     headers={**headers, "Idempotency-Key": "k"})
        assert response.status_code == 403, (method, url, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def _token(platform: PlatformSettings, **changes: Any) -> str:
    """A policyholder's token for intake signed by the test provider's key, with `changes`
    (`key`: another signer, `kid`: another key name; a claim None: left out)."""
    now = int(time.time())
    claims = {"sub": "user@org", "role": "policyholder", "org_id": "org-x",
              "iss": platform.jwt_issuer, "aud": audience_of("intake"), "iat": now,
              "exp": now + 600}
    signer = changes.pop("key", provider_signer())
    kid = changes.pop("kid", provider_signer().kid)
    claims.update(changes)
    key = serialization.load_pem_private_key(signer.private_pem(), password=None)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key,  # type: ignore[arg-type]
                      algorithm="ES256", headers={"kid": kid})


def _hs256(platform: PlatformSettings) -> str:
    """What the platform accepted before: HS256 under a shared secret (the old test one)."""
    claims = jwt.decode(_token(platform), options={"verify_signature": False})
    return jwt.encode(claims, "Q0X8WwN4WU1jsn8Ch51rlFZxUGFK4kDI4_Q15CaWNww", algorithm="HS256",
                      headers={"kid": provider_signer().kid})


def _unsigned(platform: PlatformSettings) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = jwt.decode(_token(platform), options={"verify_signature": False})
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_TOKENS = {
    "bad signature": lambda p: _token(p, key=TokenSigner.generate(issuer="x")),
    "unknown key": lambda p: _token(p, key=(other := TokenSigner.generate(issuer="x")),
                                    kid=other.kid),
    "hs256 with the old shared secret": _hs256,
    "a token for payout": lambda p: _token(p, aud=audience_of("payout")),
    "expired": lambda p: _token(p, exp=int(time.time()) - 30),
    "wrong audience": lambda p: _token(p, aud="someone-else"),
    "wrong issuer": lambda p: _token(p, iss="evil-issuer"),
    "alg none": _unsigned,
    "no expiry": lambda p: _token(p, exp=None),
    "unknown role": lambda p: _token(p, role="superuser"),
    "policyholder without org": lambda p: _token(p, org_id=None),
    "not a jwt": lambda p: "not-a-token",
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_an_invalid_token_is_a_401(api: httpx.AsyncClient, platform: PlatformSettings,
                                         make: Any) -> None:
    response = await api.get("/v1/incidents", headers={"Authorization": f"Bearer {make(platform)}"})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_no_token_is_a_401_everywhere(api: httpx.AsyncClient, tokens: Tokens,
                                            platform: PlatformSettings) -> None:
    for method, url in (("GET", "/v1/incidents"), ("POST", "/v1/incidents"),
                        ("GET", f"/v1/incidents/{uuid.uuid4()}"),
                        ("POST", f"/v1/incidents/{uuid.uuid4()}/losses"),
                        ("POST", "/v1/policies"), ("GET", "/v1/policies/POL-1")):
        response = await api.request(method, url, json={})
        assert response.status_code == 401, (method, url, response.text)
    basic = await api.get("/v1/incidents", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401
    # A token the platform itself issued, for a valid role, is accepted.
    valid = provider_signer().issue(role=Role.policyholder, sub="u", org_id="org-valid",
                                audience=audience_of("intake"))
    ok = await api.get("/v1/incidents", headers={"Authorization": f"Bearer {valid}"})
    assert ok.status_code == 200 and ok.json()["items"] == []
