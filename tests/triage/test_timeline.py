"""Intake and triage together: a report made in intake is triaged and dispatched, and the
incident's timeline in intake shows both."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from shared.clock import ManualClock
from shared.settings import PlatformSettings
from tests.support.service import Tokens, running
from tests.triage.conftest import Desk, eventually


@pytest.fixture
def intake_db(service_database: Callable[[str], str]) -> str:
    return service_database("intake")


async def test_intake_timeline_shows_triage_and_dispatch(
        make_triage: Callable[..., FastAPI], intake_db: str, platform: PlatformSettings,
        tokens: Tokens, broker: str) -> None:
    region = "CN-XZ"  # intake takes real codes only; no other test here has vendors there
    intake_app = create_intake(IntakeSettings(database_url=intake_db), platform)
    triage_app = make_triage()
    async with running(triage_app) as triage, running(intake_app) as intake:
        desk = Desk(triage_app, triage, tokens, broker, ManualClock(), region)
        vendor_id = await desk.vendor("responder")
        org_id = f"org-{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC)
        policy_number = f"POL-{uuid.uuid4().hex[:10]}"
        registered = await intake.post("/v1/policies", headers=tokens.operator(), json={
            "policy_number": policy_number, "org_id": org_id, "holder_name": "Widget Co.",
            "industry": "manufacturing", "region": region, "critical_infrastructure": True,
            "period_start": (now - timedelta(days=100)).isoformat(),
            "period_end": (now + timedelta(days=265)).isoformat(),
            "aggregate_limit": "5000000.00", "retention": "50000.00",
            "sections": {"incident_response": {"sublimit": "200000"}}})
        assert registered.status_code == 201, registered.text
        await eventually(lambda: desk.policy_version(policy_number), what="triage's policy copy")

        headers = {**tokens.policyholder(org_id), "Idempotency-Key": uuid.uuid4().hex}
        reported = await intake.post("/v1/incidents", headers=headers, json={
            "policy_number": policy_number, "category": "ddos", "title": "Site down",
            "description": "Volumetric attack on the storefront.",
            "occurred_at": (now - timedelta(minutes=50)).isoformat(),
            "discovered_at": (now - timedelta(minutes=40)).isoformat(),
            "contact": {"name": "Li Wei", "email": "li.wei@example.com", "phone": "+86 755 1"},
            "systems_down": True})
        assert reported.status_code == 201, reported.text
        incident_id = reported.json()["id"]

        async def timeline() -> dict[str, Any] | None:
            incident = (await intake.get(f"/v1/incidents/{incident_id}",
                                         headers=tokens.policyholder(org_id))).json()
            kinds = [entry["type"] for entry in incident["timeline"]]
            return incident if kinds.count("job.dispatched") == 2 else None

        incident = await eventually(timeline, what="triage and dispatch on the timeline")
        kinds = [entry["type"] for entry in incident["timeline"]]
        assert kinds[:2] == ["incident.reported", "incident.triaged"]
        assert kinds.count("incident.triaged") == 1
        assert incident["status"] == "response_in_progress"
        assert incident["priority"] == "P1"  # critical infrastructure with systems down
        deadline = datetime.fromisoformat(incident["regulatory_deadline"])
        assert deadline == datetime.fromisoformat(reported.json()["discovered_at"]) + timedelta(hours=1)
        summaries = " ".join(entry["summary"] for entry in incident["timeline"])
        assert f"ddos_mitigation dispatched to {vendor_id}" in summaries
        assert f"crisis_communications dispatched to {vendor_id}" in summaries
