"""The policyholder sees payout's decision and payment in intake's incident timeline."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from shared.events import Section
from shared.settings import PlatformSettings
from tests.intake.conftest import policy_body, report_body
from tests.payout.conftest import Incident, Sandbox, eventually, policy_terms
from tests.support.service import Tokens, running


@pytest.fixture
def intake_db(service_database: Callable[[str], str]) -> str:
    return service_database("intake")


async def test_decision_and_payment_show_on_the_incident_timeline(
    make_payout: Any, intake_db: str, platform: PlatformSettings, broker: str,
    tokens: Tokens, sandbox: Sandbox,
) -> None:
    intake_app = create_intake(IntakeSettings(database_url=intake_db), platform)
    async with running(intake_app) as intake, running(make_payout()) as payout:
        org_id = f"org-{uuid.uuid4().hex[:8]}"
        body = policy_body(org_id)
        assert (await intake.post("/v1/policies", json=body,
                                  headers=tokens.operator())).status_code == 201
        holder = tokens.policyholder(org_id)
        reported = await intake.post("/v1/incidents", json=report_body(body["policy_number"]),
                                     headers={**holder, "Idempotency-Key": "timeline-1"})
        assert reported.status_code == 201, reported.text
        incident_id = uuid.UUID(reported.json()["id"])
        # Triage's part, as triage would publish it: the response completed with a vendor invoice.
        terms = policy_terms(policy_number=body["policy_number"], org_id=org_id)
        await Incident(broker, terms, incident_id=incident_id).complete(
            {Section.incident_response: "90000"})

        async def paid_timeline() -> list[dict[str, Any]] | None:
            incident = (await intake.get(f"/v1/incidents/{incident_id}", headers=holder)).json()
            return incident["timeline"] if incident["status"] == "paid" else None

        timeline = await eventually(paid_timeline, timeout=30)
        kinds = [entry["type"] for entry in timeline]
        assert "claim.approved" in kinds and "payment.succeeded" in kinds
        assert any(e["summary"] == "Paid 40000.00 CNY" for e in timeline)
        claim = (await payout.get(f"/v1/incidents/{incident_id}/claim",
                                  headers=tokens.adjuster())).json()
        assert claim["status"] == "paid"
