"""Policies carry the pricing data insights needs (annual premium, employees, annual revenue)
and the contact email risk's notifications go to: validated by intake, optional, and carried
in the policy events."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from shared.topics import POLICIES
from tests.intake.conftest import policy_body
from tests.support.kafka import wait_for_events
from tests.support.service import Tokens

PRICING = {"annual_premium": "36000.00", "employees": 120, "annual_revenue": "80000000.00"}


async def test_pricing_data_is_kept_and_published(intake: httpx.AsyncClient, tokens: Tokens,
                                                  broker: str) -> None:
    body = policy_body(f"org-{uuid.uuid4().hex[:8]}", **PRICING)
    response = await intake.post("/v1/policies", json=body, headers=tokens.operator())
    assert response.status_code == 201, response.text
    assert {name: response.json()[name] for name in PRICING} == PRICING
    [event] = await wait_for_events(broker, POLICIES.name,
                                    lambda e: e.subject == body["policy_number"])
    assert {name: event.data["policy"][name] for name in PRICING} == PRICING


async def test_pricing_data_is_optional(intake: httpx.AsyncClient, tokens: Tokens) -> None:
    response = await intake.post("/v1/policies", json=policy_body("org-plain"),
                                 headers=tokens.operator())
    assert response.status_code == 201, response.text
    assert response.json()["annual_premium"] is None and response.json()["employees"] is None


@pytest.mark.parametrize(("field", "value"), [
    ("annual_premium", "0"), ("annual_premium", "-5.00"), ("annual_premium", "1.001"),
    ("employees", 0), ("employees", 10_000_001), ("annual_revenue", "-1"),
])
async def test_bad_pricing_data_is_refused_naming_the_field(
        intake: httpx.AsyncClient, tokens: Tokens, field: str, value: Any) -> None:
    body = policy_body(f"org-{uuid.uuid4().hex[:8]}", **{field: value})
    response = await intake.post("/v1/policies", json=body, headers=tokens.operator())
    assert response.status_code == 422, response.text
    assert field in response.text


async def test_a_contact_email_is_kept_normalised_and_published(
        intake: httpx.AsyncClient, tokens: Tokens, broker: str) -> None:
    """Risk's notifications about the policy are emailed there (notify's copy of the policy)."""
    body = policy_body(f"org-{uuid.uuid4().hex[:8]}", contact_email="Li.Wei@Widget.example")
    response = await intake.post("/v1/policies", json=body, headers=tokens.operator())
    assert response.status_code == 201, response.text
    assert response.json()["contact_email"] == "Li.Wei@widget.example"
    [event] = await wait_for_events(broker, POLICIES.name,
                                    lambda e: e.subject == body["policy_number"])
    assert event.data["policy"]["contact_email"] == "Li.Wei@widget.example"


@pytest.mark.parametrize("value", ["not-an-email", "a@", "x" * 320 + "@widget.example", 7])
async def test_a_bad_contact_email_is_refused_naming_the_field(
        intake: httpx.AsyncClient, tokens: Tokens, value: Any) -> None:
    body = policy_body(f"org-{uuid.uuid4().hex[:8]}", contact_email=value)
    response = await intake.post("/v1/policies", json=body, headers=tokens.operator())
    assert response.status_code == 422, response.text
    assert "contact_email" in response.text
