"""Issue 23, finding 8: logs never hold secrets, tokens or personal data. Services run on
PostgreSQL while requests provoke errors (INSERTs the database refuses, forged and malformed
tokens, invalid bodies), and every line they log, formatted as in production, is scanned for
the contact, description, webhook secret and token strings the requests carried."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from shared.logs import JsonFormatter
from shared.settings import PlatformSettings
from tests.intake.conftest import policy_body, report_body, trigger
from tests.support.service import Tokens, running

CONTACT = {"name": "Wang Privatename", "email": "wang.private@example.org",
           "phone": "+86 139 5555 0199"}
DESCRIPTION = "CONFIDENTIAL-DESCRIPTION-of-the-breach"
WEBHOOK_SECRET = "whsec-TOPSECRET-0123456789abcdef"
WEBHOOK_URL = "https://hooks.example.com/services/T0/B0/SECRETPATH"
SENSITIVE = (*CONTACT.values(), DESCRIPTION, WEBHOOK_SECRET, "SECRETPATH")

@asynccontextmanager
async def inserts_failing(database_url: str, table: str) -> AsyncIterator[None]:
    """While open, every INSERT into `table` fails in the database."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with trigger(engine, "test_fail_inserts", table, "BEFORE INSERT",
                           "RAISE EXCEPTION 'insert refused for the test';"):
            yield
    finally:
        await engine.dispose()


@contextmanager
def production_log() -> Iterator[io.StringIO]:
    """Every record the running services log, as the JSON lines production writes; the root
    logger's level stays the service's own."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("test"))
    # The root, and uvicorn's own logger: a test that ran a real uvicorn server before this
    # one left its logging config behind, where "uvicorn" does not propagate to the root.
    listening = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in listening:
        logger.addHandler(handler)
    try:
        yield lines
    finally:
        for logger in listening:
            logger.removeHandler(handler)


async def served(request: Any) -> httpx.Response | None:
    """The response, or None for an error the server would answer with 500: logged as
    uvicorn logs it ("Exception in ASGI application", with its traceback)."""
    try:
        response: httpx.Response = await request
        return response
    except Exception:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        return None


@pytest.fixture
def databases(service_database: Callable[[str], str]) -> tuple[str, str]:
    """Intake's and notify's (made outside the test's event loop)."""
    return service_database("intake"), service_database("notify")


async def test_errors_leave_no_secret_token_or_personal_data_in_the_logs(
    databases: tuple[str, str], platform: PlatformSettings, tokens: Tokens
) -> None:
    intake_db, notify_db = databases
    org_id = f"org-{uuid.uuid4().hex[:8]}"
    insured = {**tokens.policyholder(org_id), "Idempotency-Key": "k"}
    bearer = insured["Authorization"].removeprefix("Bearer ")
    report = report_body("", contact=CONTACT, description=DESCRIPTION)
    intake = create_intake(IntakeSettings(database_url=intake_db), platform, run_workers=False)
    notify = create_notify(NotifySettings(database_url=notify_db), platform, run_workers=False)
    async with running(intake, wait_for_consumer=False) as api, \
            running(notify, wait_for_consumer=False) as hooks:
        with production_log() as lines:
            policy = policy_body(org_id)
            assert (await api.post("/v1/policies", json=policy,
                                   headers=tokens.operator())).status_code == 201
            report["policy_number"] = policy["policy_number"]
            async with inserts_failing(intake_db, "incidents"):  # together, then one by one
                outcomes = await asyncio.gather(*(served(api.post(
                    "/v1/incidents", json={**report, "title": f"report {n}"},
                    headers={**insured, "Idempotency-Key": f"k-{n}"})) for n in range(8)))
            assert all(outcome is None for outcome in outcomes)
            subscription = {"url": WEBHOOK_URL, "secret": WEBHOOK_SECRET}
            async with inserts_failing(notify_db, "subscriptions"):
                await served(hooks.post("/v1/subscriptions", json=subscription,
                                        headers=tokens.vendor("acme")))
            refused = [
                await api.post("/v1/incidents", json={**report, "title": "a\x00b"}, headers=insured),
                await api.post("/v1/incidents", json={**report, "records_exposed": 2**63},
                               headers=insured),
                await api.post("/v1/incidents", json=report,
                               headers={**insured, "Authorization": f"Bearer {bearer[:-3]}AAA"}),
                await api.post("/v1/incidents", json=report,
                               headers={**insured, "Authorization": f"Bearer {bearer}.{bearer}"}),
                await hooks.post("/v1/subscriptions", json={**subscription, "url": "ftp://x"},
                                 headers=tokens.vendor("acme")),
                await hooks.post("/v1/subscriptions", json={**subscription, "owner": 5},
                                 headers=tokens.vendor("acme")),
            ]
            assert [r.status_code for r in refused] == [422, 422, 401, 401, 422, 422]

    log = lines.getvalue()
    assert "writing them one at a time" in log  # the failed INSERT was logged, with its error
    assert "Exception in ASGI application" in log
    for value in (*SENSITIVE, bearer, bearer.split(".")[1]):
        assert value not in log, value


def test_a_logged_validation_error_bearer_token_or_email_address_is_redacted() -> None:
    """What a consumer logs when an event fails validation quotes the event's values; an SMTP
    error quotes the recipient."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3YW5nIn0.c2lnbmF0dXJl"
    with production_log() as lines:
        try:
            IntakeSettings.model_validate({"port": {"contact": CONTACT}})
        except ValueError:
            logging.getLogger("shared.consumer").warning("handler failed", exc_info=True)
        logging.getLogger("shared.consumer").warning("refused Authorization: Bearer %s", token)
        logging.getLogger("shared.consumer").warning("token %s", token)
        logging.getLogger("services.notify.delivery").warning(
            "delivery 1 try 1 failed: SMTPRecipientsRefused: {%r: (550, 'no such user')}",
            CONTACT["email"])
    log = lines.getvalue()
    assert "input_value=<hidden>" in log and log.count("<hidden>") == 3
    assert "'<email>': (550" in log
    for value in (*CONTACT.values(), token, token.split(".")[1]):
        assert value not in log, value
