"""Input that PostgreSQL or Python's datetime cannot hold is refused at the API edge (issue 23,
findings 3, 6, 9 and 12): NUL in any string, integers beyond their bound, timestamps outside
1970..2200, offsets beyond their bound, amounts that are not plain decimal strings and bodies
that are not JSON. Each is a 4xx problem naming the field, never a 500, and nothing is stored."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.intake.conftest import policy_body, register, report_body
from tests.intake.test_validation import NUL, YEAR_1, YEAR_9999, assert_problem
from tests.support.service import Tokens


async def test_policies_losses_and_regulator_reports_refuse_nul_and_bad_dates(
    api: httpx.AsyncClient, tokens: Tokens
) -> None:
    operator = tokens.operator()
    for change, field in ((lambda b: {**b, "holder_name": f"W{NUL}"}, "holder_name"),
                          (lambda b: {**b, "org_id": f"org{NUL}"}, "org_id"),
                          (lambda b: {**b, "period_end": YEAR_9999}, "period_end"),
                          (lambda b: {**b, "retroactive_date": YEAR_1}, "retroactive_date"),
                          (lambda b: {**b, "aggregate_limit": "5_000_000"}, "aggregate_limit")):
        response = await api.post("/v1/policies", json=change(policy_body("org-edge")),
                                  headers=operator)
        assert_problem(response, 422, field)
    insured = await register(api, tokens)
    incident = await api.post("/v1/incidents", json=report_body(insured["policy_number"]),
                              headers={**insured["headers"], "Idempotency-Key": "ok"})
    assert incident.status_code == 201, incident.text
    losses = f"/v1/incidents/{incident.json()['id']}/losses"
    response = await api.post(losses, json={"section": "incident_response", "amount": "1e3",
                                            "description": "invoice"}, headers=insured["headers"])
    assert_problem(response, 422, "amount")
    response = await api.post(losses, json={"section": "incident_response", "amount": "10.00",
                                            "description": f"in{NUL}voice"},
                              headers=insured["headers"])
    assert_problem(response, 422, "description")
    regulator = f"/v1/incidents/{incident.json()['id']}/regulator-report"
    for body, field in (({"reported_at": YEAR_1, "reference": "R-1"}, "reported_at"),
                        ({"reported_at": "2026-01-01T00:00:00Z", "reference": f"R{NUL}"},
                         "reference"),
                        ({"reported_at": "2026-01-01T00:00:00Z", "reference": "R" * 201},
                         "reference")):
        response = await api.post(regulator, json=body, headers=insured["headers"])
        assert_problem(response, 422, field)


async def test_paths_queries_and_headers_refuse_what_the_database_could_not_hold(
    api: httpx.AsyncClient, tokens: Tokens
) -> None:
    insured = await register(api, tokens)
    response = await api.get("/v1/incidents", params={"offset": 2**63},
                             headers=insured["headers"])
    assert_problem(response, 422, "offset")
    response = await api.get("/v1/incidents", params={"offset": 10**9 + 1},
                             headers=insured["headers"])
    assert_problem(response, 422, "offset")
    response = await api.get("/v1/incidents", params={"offset": 10**9},
                             headers=insured["headers"])
    assert response.status_code == 200, response.text
    response = await api.get("/v1/policies/POL%00X", headers=tokens.operator())
    assert_problem(response, 422, "policy_number")
    response = await api.put("/v1/policies/POL%00X", json=policy_body("org-x"),
                             headers=tokens.operator())
    assert_problem(response, 422, "policy_number")


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "application/merge-patch+json",
    "multipart/form-data; boundary=x",
])
async def test_a_body_that_is_not_application_json_is_a_415(
    api: httpx.AsyncClient, tokens: Tokens, content_type: str | None
) -> None:
    insured = await register(api, tokens)
    headers = {**insured["headers"], "Idempotency-Key": uuid.uuid4().hex}
    content = json.dumps(report_body(insured["policy_number"])).encode()
    request = api.build_request("POST", "/v1/incidents", content=content, headers=headers)
    if content_type is not None:  # raw content goes without one
        request.headers["content-type"] = content_type
    response = await api.send(request)
    assert_problem(response, 415, "content-type")


async def test_json_with_a_charset_is_accepted(api: httpx.AsyncClient, tokens: Tokens) -> None:
    insured = await register(api, tokens)
    response = await api.post(
        "/v1/incidents", content=json.dumps(report_body(insured["policy_number"])).encode(),
        headers={**insured["headers"], "Idempotency-Key": uuid.uuid4().hex,
                 "Content-Type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 201, response.text
