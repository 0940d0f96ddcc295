"""A vendor's completion report and the other bodies, paths and lists of triage refuse what
PostgreSQL or Python's datetime could not hold (issue 23, findings 6, 9 and 12): year-1 and
year-9999 timestamps, NUL, unbounded integers and offsets, loose amounts, non-JSON bodies.
Each is a 4xx naming the field, and the job stays accepted (nothing half-written)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.triage.conftest import Desk, completion_report

YEAR_1 = "0001-01-01T00:00:00+14:00"
YEAR_9999 = "9999-12-31T23:59:59-14:00"
NUL = "\x00"
LOSS = {"section": "incident_response", "amount": "100.00", "description": "invoice"}

BAD_REPORTS: list[tuple[str, dict[str, Any], str]] = [
    ("contained in year 1", {"contained_at": YEAR_1}, "contained_at"),
    ("contained in year 9999", {"contained_at": YEAR_9999}, "contained_at"),
    ("outage in year 1", {"outage_started_at": YEAR_1, "outage_ended_at": YEAR_1},
     "outage_started_at"),
    ("outage ending in year 9999",
     {"outage_started_at": "2026-01-01T00:00:00Z", "outage_ended_at": YEAR_9999},
     "outage_ended_at"),
    ("records_confirmed 2^63", {"records_confirmed": 2**63}, "records_confirmed"),
    ("NUL in root cause", {"root_cause": f"VPN{NUL}"}, "root_cause"),
    ("NUL in attack vector", {"attack_vector": f"CVE{NUL}"}, "attack_vector"),
    ("NUL in a loss", {"verified_losses": [{**LOSS, "description": f"in{NUL}voice"}]},
     "verified_losses.0.description"),
    ("a loss of 1_000", {"verified_losses": [{**LOSS, "amount": "1_000"}]},
     "verified_losses.0.amount"),
    ("a loss of NaN", {"verified_losses": [{**LOSS, "amount": "NaN"}]},
     "verified_losses.0.amount"),
    # Beyond what the response's event may carry to the broker (at most 1 MB a message).
    ("51 losses", {"verified_losses": [LOSS] * 51}, "verified_losses"),
    ("a loss described in 1,001 characters",
     {"verified_losses": [{**LOSS, "description": "x" * 1001}]}, "verified_losses.0.description"),
]


@pytest.mark.parametrize(("change", "field"), [(c, f) for _, c, f in BAD_REPORTS],
                         ids=[name for name, _, _ in BAD_REPORTS])
async def test_a_completion_report_the_system_could_not_hold_is_a_422(
    desk: Desk, change: dict[str, Any], field: str
) -> None:
    vendor_id = await desk.vendor("edge", capabilities=["forensics"])
    incident_id = await desk.report(await desk.policy())
    job_id = (await desk.triaged(incident_id))["jobs"][0]["id"]
    await desk.accept(job_id, vendor_id)
    response = await desk.act(job_id, "complete", vendor_id,
                              {**completion_report(desk.clock.now()), **change})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in {error["field"] for error in response.json()["errors"]}
    assert (await desk.job(job_id))["status"] == "accepted"


async def test_vendor_bodies_paths_lists_and_media_types_are_bounded(desk: Desk) -> None:
    operator = desk.tokens.operator()
    vendor = {"vendor_id": "edge-1", "name": f"Edge{NUL}", "capabilities": ["forensics"],
              "regions": [desk.region], "capacity": 1, "rating": 4.0}
    cases = [
        (await desk.client.post("/v1/vendors", json=vendor, headers=operator), 422, "name"),
        (await desk.client.put("/v1/vendors/edge%00", json={**vendor, "name": "Edge"},
                               headers=operator), 422, "vendor_id"),
        (await desk.client.get("/v1/jobs", params={"offset": 2**63}, headers=operator), 422,
         "offset"),
        (await desk.client.post(f"/v1/jobs/{uuid.uuid4()}/decline", content=b"reason=busy",
                                headers={**desk.tokens.vendor("edge-1"),
                                         "Content-Type": "application/x-www-form-urlencoded"}),
         415, "content-type"),
    ]
    for response, status, field in cases:
        assert response.status_code == status, response.text
        assert field in {error["field"] for error in response.json()["errors"]}
