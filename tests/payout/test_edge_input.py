"""Payout's bodies and lists refuse what the system could not hold (issue 23, findings 9 and
12): amounts that are not plain decimal strings, NUL in reasons and notes, non-finite outage
hours, unbounded offsets and non-JSON bodies; each a 4xx naming the field, never a 500. The
body is checked before the claim is looked up, so no claim is needed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from tests.support.service import Tokens, running

CLAIM = f"/v1/claims/{uuid.uuid4()}"
LOSS = f"{CLAIM}/losses/{uuid.uuid4()}"

BAD: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("approve 1_000", "POST", f"{CLAIM}/approve", {"amount": "1_000", "reason": "r"}, "amount"),
    ("approve 1e3", "POST", f"{CLAIM}/approve", {"amount": "1e3", "reason": "r"}, "amount"),
    ("approve Infinity", "POST", f"{CLAIM}/approve", {"amount": "Infinity"}, "amount"),
    ("approve -1", "POST", f"{CLAIM}/approve", {"amount": "-1.00"}, "amount"),
    ("approve 1.001", "POST", f"{CLAIM}/approve", {"amount": "1.001"}, "amount"),
    ("approve a float", "POST", f"{CLAIM}/approve", {"amount": 10.5}, "amount"),
    ("approve with NUL", "POST", f"{CLAIM}/approve", {"reason": "partial\x00"}, "reason"),
    ("deny with NUL", "POST", f"{CLAIM}/deny", {"reason": "\x00"}, "reason"),
    ("verify NaN", "POST", f"{LOSS}/verify", {"amount": "NaN", "note": "n"}, "amount"),
    ("verify with NUL", "POST", f"{LOSS}/verify", {"note": "n\x00"}, "note"),
    ("reject with NUL", "POST", f"{LOSS}/reject", {"reason": "r\x00"}, "reason"),
    ("outage NaN", "PUT", f"{CLAIM}/outage", {"outage_hours": "NaN", "note": "n"},
     "outage_hours"),
    ("outage 1e400", "PUT", f"{CLAIM}/outage", {"outage_hours": "1e400", "note": "n"},
     "outage_hours"),
    ("outage with NUL", "PUT", f"{CLAIM}/outage", {"outage_hours": "2", "note": "\x00"}, "note"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"),
                         [(m, p, b, f) for _, m, p, b, f in BAD], ids=[n for n, *_ in BAD])
async def test_a_body_the_system_could_not_hold_is_a_422_naming_the_field(
    make_payout: Callable[..., FastAPI], tokens: Tokens, method: str, path: str,
    body: dict[str, Any], field: str
) -> None:
    async with running(make_payout(), wait_for_consumer=False) as api:
        response = await api.request(method, path, json=body, headers=tokens.adjuster())
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}


async def test_lists_and_media_types_are_bounded(make_payout: Callable[..., FastAPI],
                                                 tokens: Tokens) -> None:
    async with running(make_payout(), wait_for_consumer=False) as api:
        listed = await api.get("/v1/claims", params={"offset": 2**63}, headers=tokens.adjuster())
        typed = await api.post(f"{CLAIM}/deny", content=b'{"reason": "no"}',
                               headers={**tokens.adjuster(), "Content-Type": "text/plain"})
    assert listed.status_code == 422 and listed.json()["errors"][0]["field"] == "offset"
    assert typed.status_code == 415, typed.text
    assert typed.headers["content-type"] == "application/problem+json"
