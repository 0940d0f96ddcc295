from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.clock import Clock
from shared.settings import PlatformSettings
from tests.support.service import Tokens, running


@pytest.fixture
def intake_db(service_database: Callable[[str], str]) -> str:
    return service_database("intake")


@pytest.fixture
def make_intake(intake_db: str, platform: PlatformSettings) -> Callable[..., Any]:
    def make(clock: Clock | None = None, **options: bool) -> Any:
        return create_app(IntakeSettings(database_url=intake_db), platform, clock, **options)

    return make


@pytest.fixture
async def intake(make_intake: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(make_intake()) as client:
        yield client


def policy_body(org_id: str, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "policy_number": f"POL-{uuid.uuid4().hex[:10]}",
        "org_id": org_id,
        "holder_name": "Shenzhen Widget Co.",
        "industry": "manufacturing",
        "region": "CN-GD",
        "period_start": (now - timedelta(days=200)).isoformat(),
        "period_end": (now + timedelta(days=165)).isoformat(),
        "aggregate_limit": "5000000.00",
        "retention": "50000.00",
        "sections": {"incident_response": {"sublimit": "200000"},
                     "business_interruption": {"sublimit": "300000"}},
    }
    body.update(overrides)
    return body


def report_body(policy_number: str, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "policy_number": policy_number,
        "category": "ransomware",
        "title": "Files encrypted on the ERP server",
        "description": "Ransom note found on 12 hosts.",
        "occurred_at": (now - timedelta(hours=3)).isoformat(),
        "discovered_at": (now - timedelta(hours=2)).isoformat(),
        "contact": {"name": "Li Wei", "email": "li.wei@example.com", "phone": "+86 755 1234 5678"},
        "systems_down": True,
        "affected_hosts": 12,
    }
    body.update(overrides)
    return body


@pytest.fixture
async def insured(intake: httpx.AsyncClient, tokens: Tokens) -> dict[str, Any]:
    """A fresh org with a registered policy."""
    org_id = f"org-{uuid.uuid4().hex[:8]}"
    body = policy_body(org_id)
    response = await intake.post("/v1/policies", json=body, headers=tokens.operator())
    assert response.status_code == 201, response.text
    return {"org_id": org_id, "policy_number": body["policy_number"],
            "headers": tokens.policyholder(org_id)}
