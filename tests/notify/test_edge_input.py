"""Notify's subscription body, list parameters and media types refuse what PostgreSQL could
not hold (issue 23, findings 3 and 9): NUL in any string of a body or query, offsets beyond
their bound, bodies that are not JSON; each a 4xx naming the field, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from tests.support.service import Tokens, running

SUBSCRIPTION = {"url": "https://hooks.example.com/cyberclaims", "secret": "s" * 32}


@pytest.mark.parametrize(("body", "field"), [
    ({**SUBSCRIPTION, "secret": "a-long-enough\x00-secret"}, "secret"),
    ({**SUBSCRIPTION, "owner": "vendor:acme\x00"}, "owner"),
    ({**SUBSCRIPTION, "event_types": ["job_dispatched\x00"]}, "event_types"),
])
async def test_nul_in_a_subscription_is_a_422_naming_the_field(
    make_notify: Callable[..., FastAPI], tokens: Tokens, body: dict[str, Any], field: str
) -> None:
    async with running(make_notify(run_workers=False), wait_for_consumer=False) as api:
        response = await api.post("/v1/subscriptions", json=body, headers=tokens.operator())
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}


async def test_list_parameters_and_media_types_are_bounded(
    make_notify: Callable[..., FastAPI], tokens: Tokens
) -> None:
    operator = tokens.operator()
    async with running(make_notify(run_workers=False), wait_for_consumer=False) as api:
        cases = [
            (await api.get("/v1/deliveries", params={"offset": 2**63}, headers=operator),
             422, "offset"),
            (await api.get("/v1/notifications", params={"offset": 2**63}, headers=operator),
             422, "offset"),
            (await api.get("/v1/deliveries", params={"recipient": "org:a\x00"},
                           headers=operator), 422, "recipient"),
            (await api.get("/v1/deliveries", params={"event_type": "x\x00"}, headers=operator),
             422, "event_type"),
            (await api.get("/v1/notifications", params={"recipient": "org:a\x00"},
                           headers=operator), 422, "recipient"),
            (await api.post("/v1/subscriptions", content=b"url=x", headers={
                **operator, "Content-Type": "application/x-www-form-urlencoded"}),
             415, "content-type"),
        ]
    for response, status, field in cases:
        assert response.status_code == status, response.text
        assert field in {error["field"] for error in response.json()["errors"]}
