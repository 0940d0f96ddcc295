"""The registry of adjusters is where authority lives: a token's `authority_limit` claim buys
nothing, an adjuster not registered (or inactive) has none, and every change operators make is
kept with who, when, before, after and why."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from cyberclaims.cli import app
from shared.auth import SUBJECT_MAX_LENGTH, Role
from shared.events import Section, SectionTerms
from tests.payout.conftest import apply, reported_incident, serving
from tests.support.service import Tokens, provider_signer, running


def adjuster_token(sub: str, **claims: object) -> dict[str, str]:
    """An adjuster's token as the provider would sign it, with whatever claims it likes."""
    return {"Authorization": "Bearer " + provider_signer().issue(role=Role.adjuster, sub=sub,
                                                                  **claims)}


async def put(payout: httpx.AsyncClient, operator: dict[str, str], sub: str, limit: str, *,
              active: bool = True, reason: str = "hired") -> httpx.Response:
    return await payout.put(f"/v1/adjusters/{sub}", headers=operator,
                            json={"authority_limit": limit, "active": active, "reason": reason})


async def test_authority_comes_from_the_registry_never_from_the_token(
        quiet_payout: FastAPI, tokens: Tokens) -> None:
    sub = f"forger-{uuid.uuid4().hex[:8]}"
    boastful = adjuster_token(sub, authority_limit="100000000")
    operator = tokens.operator()
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        incident = await reported_incident(quiet_payout, retention=Decimal("0"))
        invoice = incident.submitted(Section.incident_response, amount="5000")
        await apply(quiet_payout, invoice)
        claim = (await payout.get(f"/v1/incidents/{incident.incident_id}/claim",
                                  headers=boastful)).json()
        verify = f"/v1/claims/{claim['id']}/losses/{invoice.loss_id}/verify"

        # Not in the registry: no authority at all, whatever the token claims.
        me = await payout.get("/v1/me", headers=boastful)
        assert me.status_code == 200 and me.json()["authority_limit"] is None
        refused = await payout.post(verify, headers=boastful, json={"note": "as claimed"})
        assert refused.status_code == 403 and "no authority" in refused.json()["detail"]

        # Registered at 1,000: the 5,000 invoice is beyond it, the claim notwithstanding.
        assert (await put(payout, operator, sub, "1000")).status_code == 200
        assert (await payout.get("/v1/me", headers=boastful)).json()["authority_limit"] == "1000.00"
        beyond = await payout.post(verify, headers=boastful, json={"note": "as claimed"})
        assert beyond.status_code == 403 and "exceeds your authority" in beyond.json()["detail"]

        # Inactive: nothing, even at a limit that would cover it.
        assert (await put(payout, operator, sub, "10000", active=False,
                          reason="on leave")).status_code == 200
        assert (await payout.post(verify, headers=boastful,
                                  json={"note": "as claimed"})).status_code == 403
        assert (await put(payout, operator, sub, "10000", reason="back")).status_code == 200
        verified = await payout.post(verify, headers=boastful, json={"note": "as claimed"})
        assert verified.status_code == 200, verified.text


async def test_rejecting_and_assessing_need_a_registered_active_adjuster(
        quiet_payout: FastAPI, tokens: Tokens) -> None:
    boastful = adjuster_token(f"forger-{uuid.uuid4().hex[:8]}", authority_limit="100000000")
    adjuster = tokens.adjuster(f"desk-{uuid.uuid4().hex[:8]}", "1000000")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        incident = await reported_incident(quiet_payout, retention=Decimal("0"))
        invoice = incident.submitted(Section.incident_response, amount="5000")
        interruption = incident.submitted(Section.business_interruption, hourly_loss="100")
        for loss in (invoice, interruption):
            await apply(quiet_payout, loss)
        await apply(quiet_payout, incident.completed({}))
        claim = (await payout.get(f"/v1/incidents/{incident.incident_id}/claim",
                                  headers=adjuster)).json()
        losses = f"/v1/claims/{claim['id']}/losses"
        rejecting = await payout.post(f"{losses}/{invoice.loss_id}/reject", headers=boastful,
                                      json={"reason": "no invoice"})
        assert rejecting.status_code == 403 and "no authority" in rejecting.json()["detail"]
        per_hour = await payout.post(f"{losses}/{interruption.loss_id}/verify",
                                     headers=boastful, json={"note": "rate checked"})
        assert per_hour.status_code == 403 and "no authority" in per_hour.json()["detail"]
        for loss in (invoice, interruption):
            assert (await payout.post(f"{losses}/{loss.loss_id}/verify", headers=adjuster,
                                      json={"note": "checked"})).status_code == 200
        assessing = await payout.post(f"/v1/claims/{claim['id']}/assess", headers=boastful)
        assert assessing.status_code == 403 and "no authority" in assessing.json()["detail"]


async def two_approver_claim(app: FastAPI, payout: httpx.AsyncClient,
                             headers: dict[str, str]) -> str:
    """A claim awaiting two approvals (1,200,000 payable); the URL that approves it."""
    incident = await reported_incident(app, sections={
        Section.incident_response: SectionTerms(sublimit=Decimal("5000000"))})
    await apply(app, incident.completed({Section.incident_response: "1250000"}))
    claim = (await payout.get(f"/v1/incidents/{incident.incident_id}/claim",
                              headers=headers)).json()
    return f"/v1/claims/{claim['id']}/approve"


async def test_an_approval_counts_only_while_its_adjuster_keeps_the_authority(
        quiet_payout: FastAPI, tokens: Tokens) -> None:
    operator = tokens.operator()
    first_sub, second_sub, third_sub = (f"four-eyes-{n}-{uuid.uuid4().hex[:8]}" for n in "abc")
    first, second, third = (tokens.adjuster(sub, "2000000")
                            for sub in (first_sub, second_sub, third_sub))
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        url = await two_approver_claim(quiet_payout, payout, first)
        assert (await payout.post(url, headers=first, json={})).status_code == 200
        # The first approver is taken off the desk before the second approval.
        assert (await put(payout, operator, first_sub, "2000000", active=False,
                          reason="left the company")).status_code == 200
        second_approval = await payout.post(url, headers=second, json={})
        assert second_approval.status_code == 200, second_approval.text
        assert second_approval.json()["status"] == "pending_approval"
        assert second_approval.json()["payment"] is None
        third_approval = await payout.post(url, headers=third, json={})
        assert third_approval.status_code == 200, third_approval.text
        assert third_approval.json()["status"] == "approved"


async def test_the_longest_subjects_a_token_may_carry_decide_a_claim_together(
        quiet_payout: FastAPI, tokens: Tokens) -> None:
    """Two approvers with 128-character subjects: both names fit what the claim records."""
    first, second = (tokens.adjuster(letter * SUBJECT_MAX_LENGTH, "2000000") for letter in "pq")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        url = await two_approver_claim(quiet_payout, payout, first)
        assert (await payout.post(url, headers=first, json={})).status_code == 200
        approved = await payout.post(url, headers=second, json={})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved"


async def test_registry_changes_are_operator_only_and_audited(
        quiet_payout: FastAPI, tokens: Tokens) -> None:
    sub = f"audited-{uuid.uuid4().hex[:8]}"
    operator, other_operator = tokens.operator("ops-li"), tokens.operator("ops-wang")
    async with running(quiet_payout, wait_for_consumer=False) as payout:
        senior = tokens.adjuster(f"senior-{uuid.uuid4().hex[:8]}", "5000000")
        for caller in (senior, tokens.policyholder("org-x"), tokens.vendor("v-x")):
            assert (await put(payout, caller, sub, "100000000")).status_code == 403
            assert (await payout.get("/v1/adjusters", headers=caller)).status_code == 403
        assert (await put(payout, {}, sub, "1000")).status_code == 401

        created = await put(payout, operator, sub, "250000", reason="joined the claims desk")
        assert created.status_code == 200, created.text
        assert created.json()["updated_by"] == "operator:ops-li"
        assert (await put(payout, operator, sub, "250000", reason="same again")).status_code == 200
        raised = await put(payout, other_operator, sub, "1000000", reason="promoted")
        assert raised.json() | {"updated_at": None} == {
            "subject": sub, "authority_limit": "1000000.00", "active": True,
            "updated_by": "operator:ops-wang", "updated_at": None}

        history = await payout.get(f"/v1/adjusters/{sub}/history", headers=operator)
        assert history.status_code == 200
        changes = [{k: v for k, v in change.items() if k != "at"}
                   for change in history.json()["changes"]]
        assert changes == [  # the unchanged PUT is not a change
            {"changed_by": "operator:ops-li", "old_authority_limit": None,
             "new_authority_limit": "250000.00", "old_active": None, "new_active": True,
             "reason": "joined the claims desk"},
            {"changed_by": "operator:ops-wang", "old_authority_limit": "250000.00",
             "new_authority_limit": "1000000.00", "old_active": True, "new_active": True,
             "reason": "promoted"}]
        listed = (await payout.get("/v1/adjusters", params={"limit": 100},
                                   headers=operator)).json()
        assert listed["total"] >= 1
        missing = await payout.get(f"/v1/adjusters/nobody-{sub}/history", headers=operator)
        assert missing.status_code == 404

        for body, field in (({"authority_limit": "-1", "reason": "x"}, "authority_limit"),
                            ({"authority_limit": "1e3", "reason": "x"}, "authority_limit"),
                            ({"authority_limit": "1000"}, "reason"),
                            ({"authority_limit": "1000", "reason": "x", "role": "god"}, "role")):
            bad = await payout.put(f"/v1/adjusters/{sub}", headers=operator, json=body)
            assert bad.status_code == 422, bad.text
            assert field in bad.text


async def test_operators_change_the_registry_and_retry_payments_from_the_cli(
        quiet_payout: FastAPI, tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cyberclaims adjuster` and `cyberclaims payments retry` against a payout served over
    HTTP: what the runbook pastes, with payout's refusals shown and exit code 1."""
    sub = f"cli-{uuid.uuid4().hex[:8]}"
    operator = tokens.operator("ops-cli")
    token = operator["Authorization"].removeprefix("Bearer ")
    async with serving(quiet_payout, lifespan="on") as url, \
            httpx.AsyncClient(base_url=url) as payout:
        monkeypatch.setenv("PAYOUT_HOST", "127.0.0.1")
        monkeypatch.setenv("PAYOUT_PORT", url.rsplit(":", 1)[1])

        async def cli(*args: str) -> Result:  # in a thread: the CLI blocks, payout serves here
            return await asyncio.to_thread(CliRunner().invoke, app, [*args, "--token", token])

        registered = await cli("adjuster", sub, "--authority-limit", "2500", "--reason", "lead")
        assert registered.exit_code == 0, registered.output
        assert f"adjuster {sub}: authority limit 2500.00, active" in registered.output
        history = (await payout.get(f"/v1/adjusters/{sub}/history", headers=operator)).json()
        assert [c["reason"] for c in history["changes"]] == ["lead"]

        refused = await cli("adjuster", sub, "--authority-limit", "-1", "--reason", "typo")
        assert refused.exit_code == 1 and "not changed: HTTP 422" in refused.output

        unknown = await cli("payments", "retry", str(uuid.uuid4()))
        assert unknown.exit_code == 1 and "not retried: HTTP 404" in unknown.output
