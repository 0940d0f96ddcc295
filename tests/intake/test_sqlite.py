"""Reporting on SQLite (the `make run` default), where a report is stored by three statements in
one transaction instead of PostgreSQL's single statement: the same answers, the same rows."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.migrations import migrate
from tests.intake.conftest import register, report_body, sql_rows, sql_value
from tests.support.service import Tokens


@pytest.fixture
def intake_db(tmp_path: Path) -> str:
    """Replaces the PostgreSQL database for this module: the `api` and `db` fixtures use it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}"
    migrate("intake", url)
    return url


async def test_a_report_stores_its_incident_timeline_entry_and_event(
    api: httpx.AsyncClient, tokens: Tokens, db: AsyncEngine
) -> None:
    insured = await register(api, tokens)
    response = await api.post("/v1/incidents", json=report_body(insured["policy_number"]),
                              headers={**insured["headers"], "Idempotency-Key": "first"})
    assert response.status_code == 201, response.text
    incident_id = response.json()["id"]
    assert [item["type"] for item in response.json()["timeline"]] == ["incident.reported"]
    [(event_id, state)] = await sql_rows(
        db, "SELECT event_id, state FROM outbox WHERE event_type = 'cyberclaims.incident.reported.v1'")
    assert state == "pending"
    assert await sql_value(db, "SELECT count(*) FROM timeline WHERE event_id = :e",
                           e=event_id) == 1
    stored = await api.get(f"/v1/incidents/{incident_id}", headers=insured["headers"])
    assert stored.json()["title"] == response.json()["title"]


async def test_a_retry_is_answered_from_the_first_report_and_stores_nothing_more(
    api: httpx.AsyncClient, tokens: Tokens, db: AsyncEngine
) -> None:
    insured = await register(api, tokens)
    headers = {**insured["headers"], "Idempotency-Key": "again"}
    body = report_body(insured["policy_number"])
    first = await api.post("/v1/incidents", json=body, headers=headers)
    retry = await api.post("/v1/incidents", json=body, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == first.json()["id"]
    other_body = await api.post("/v1/incidents", json={**body, "title": "Another"},
                                headers=headers)
    assert other_body.status_code == 409
    assert other_body.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await sql_value(db, "SELECT count(*) FROM incidents") == 1
    assert await sql_value(db, "SELECT count(*) FROM outbox WHERE event_type = "
                               "'cyberclaims.incident.reported.v1'") == 1


async def test_a_report_against_another_orgs_policy_is_not_found_and_stores_nothing(
    api: httpx.AsyncClient, tokens: Tokens, db: AsyncEngine
) -> None:
    owner, stranger = await register(api, tokens), await register(api, tokens)
    response = await api.post("/v1/incidents", json=report_body(owner["policy_number"]),
                              headers={**stranger["headers"], "Idempotency-Key": "probe"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert await sql_value(db, "SELECT count(*) FROM incidents") == 0
    assert await sql_value(db, "SELECT count(*) FROM timeline") == 0
