"""The vendor registry, and who may see and do what (rulebook section 2)."""

from __future__ import annotations

import uuid

from tests.triage.conftest import Desk, completion_report


async def test_vendor_registry_is_for_operators(desk: Desk) -> None:
    operator = desk.tokens.operator()
    vendor_id = f"acme-{uuid.uuid4().hex[:6]}"
    body = {"vendor_id": vendor_id, "name": "Acme Forensics", "capabilities": ["forensics"],
            "regions": [desk.region], "capacity": 3, "rating": 4.2}
    created = await desk.client.post("/v1/vendors", json=body, headers=operator)
    assert created.status_code == 201, created.text
    assert created.json() == {**body, "active": True, "open_jobs": 0}
    assert (await desk.client.post("/v1/vendors", json=body, headers=operator)).status_code == 409

    for headers in (desk.tokens.vendor(vendor_id), desk.tokens.policyholder("org-x"),
                    desk.tokens.adjuster()):
        assert (await desk.client.get("/v1/vendors", headers=headers)).status_code == 403
        assert (await desk.client.post("/v1/vendors", json=body, headers=headers)).status_code == 403
    assert (await desk.client.get("/v1/vendors")).status_code == 401

    for field, value in [("regions", ["Guangdong"]), ("capabilities", ["hacking"]),
                         ("capacity", -1), ("rating", 6), ("unknown", 1)]:
        bad = await desk.client.post("/v1/vendors", json={**body, "vendor_id": "x-1", field: value},
                                     headers=operator)
        assert bad.status_code == 422, (field, bad.text)
        assert bad.json()["errors"][0]["field"].startswith(field)

    update = {key: value for key, value in body.items() if key != "vendor_id"}
    changed = await desk.client.put(f"/v1/vendors/{vendor_id}", headers=operator,
                                    json={**update, "regions": ["*"], "active": False})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["regions"], changed.json()["active"]) == (["*"], False)
    missing = await desk.client.put("/v1/vendors/nobody", json=update, headers=operator)
    assert missing.status_code == 404
    listed = (await desk.client.get("/v1/vendors", headers=operator)).json()
    assert vendor_id in {v["vendor_id"] for v in listed}


async def test_vendors_see_only_their_jobs(desk: Desk) -> None:
    mine = await desk.vendor("mine", capabilities=["forensics"])
    other = await desk.vendor("other", capabilities=["legal_counsel"])
    incident_id = await desk.report(await desk.policy(), category="insider_misuse")
    forensics, legal = (await desk.triaged(incident_id))["jobs"]
    assert (forensics["vendor_id"], legal["vendor_id"]) == (mine, other)

    as_mine = desk.tokens.vendor(mine)
    assert (await desk.client.get(f"/v1/jobs/{forensics['id']}", headers=as_mine)).status_code == 200
    for action, body in [("", None), ("/accept", None), ("/decline", {"reason": "x"}),
                         ("/complete", completion_report(desk.clock.now()))]:
        method = "GET" if not action else "POST"
        response = await desk.client.request(method, f"/v1/jobs/{legal['id']}{action}",
                                             json=body, headers=as_mine)
        assert response.status_code == 404, (action, response.text)
    assert (await desk.client.get(f"/v1/jobs/{uuid.uuid4()}", headers=as_mine)).status_code == 404

    listed = (await desk.client.get("/v1/jobs", headers=as_mine)).json()
    assert {j["id"] for j in listed["items"]} == {forensics["id"]}
    by_incident = await desk.client.get("/v1/jobs", params={"incident_id": str(incident_id)},
                                        headers=desk.tokens.operator())
    assert [j["id"] for j in by_incident.json()["items"]] == [forensics["id"], legal["id"]]
    dispatched = await desk.client.get("/v1/jobs", params={"status": "dispatched"}, headers=as_mine)
    assert dispatched.json()["total"] == 1
    assert (await desk.client.get("/v1/jobs", params={"status": "bogus"},
                                  headers=as_mine)).status_code == 422

    holder = desk.tokens.policyholder("org-x")
    adjuster = desk.tokens.adjuster()
    assert (await desk.client.get("/v1/jobs", headers=holder)).status_code == 403
    assert (await desk.client.get(f"/v1/jobs/{legal['id']}", headers=holder)).status_code == 403
    assert (await desk.client.get("/v1/jobs", headers=adjuster)).status_code == 403
    assert (await desk.act(legal["id"], "accept", other)).status_code == 200
    # Only vendors act on jobs, only operators cancel or assign.
    as_operator = await desk.client.post(f"/v1/jobs/{forensics['id']}/accept",
                                         headers=desk.tokens.operator())
    assert as_operator.status_code == 403
    assert (await desk.client.post(f"/v1/jobs/{forensics['id']}/cancel",
                                   headers=as_mine)).status_code == 403

    triage_path = f"/v1/incidents/{incident_id}/triage"
    assert (await desk.client.get(triage_path, headers=adjuster)).status_code == 200
    assert (await desk.client.get(triage_path, headers=holder)).status_code == 403
    assert (await desk.client.get(triage_path, headers=as_mine)).status_code == 403
    assert (await desk.client.get(f"/v1/incidents/{uuid.uuid4()}/triage",
                                  headers=adjuster)).status_code == 404
