"""Email over real SMTP (aiosmtpd): one message per notification, plain text and HTML."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from shared.events import ClaimPendingApproval, Contact, IncidentReported
from tests.notify.conftest import Mailbox, deliveries, emit, unique, wait_until
from tests.support.service import Tokens, running


def reported(org_id: str, email: str, title: str) -> IncidentReported:
    now = datetime.now(UTC)
    return IncidentReported(
        incident_id=uuid.uuid4(), org_id=org_id, policy_number=unique("POL"),
        category="ransomware", title=title, description="Ransom note on 12 hosts.",
        occurred_at=now - timedelta(hours=3), discovered_at=now - timedelta(hours=2),
        reported_at=now, contact=Contact(name="Li Wei", email=email, phone="+86 755 1234 5678"),
        systems_down=True, outage_started_at=None, affected_hosts=12, records_exposed=None,
        data_types=[], ransom_demanded=None, funds_transferred=None,
    )


def _parts(message: Any) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.walk()
            if not part.is_multipart()}


async def test_policyholder_and_adjusters_receive_mail_with_text_and_html_parts(
    make_notify: Callable[..., FastAPI], mailbox: Mailbox, broker: str, tokens: Tokens
) -> None:
    org = unique("org")
    contact = f"{org}@example.com"
    adjusters = f"{unique('adjusters')}@insurer.example"
    event = reported(org, contact, "ERP down <script>alert(1)</script>")

    def ours(messages: list[Any]) -> list[Any]:
        return [m for m in messages if m["X-Cyberclaims-Delivery"] and str(event.incident_id)
                in m.get_body(("plain",)).get_content()]

    async with running(make_notify(adjusters_email=adjusters)) as notify:
        await emit(broker, event, source="/cyberclaims/intake")
        claim = ClaimPendingApproval(incident_id=event.incident_id, org_id=org,
                                     claim_id=uuid.uuid4(), at=datetime.now(UTC),
                                     payable="380000.00", coverage_questions=["LATE_NOTICE"],
                                     approvals_required=1)
        await emit(broker, claim, source="/cyberclaims/payout")
        receipt = (await wait_until(lambda: mailbox.to(contact)))[0]
        # the session's broker also carries other suites' claims, mailed to the same team:
        # this test's alert is the one about its incident
        alert = (await wait_until(lambda: ours(mailbox.to(adjusters))))[0]

        async def both_delivered() -> list[dict[str, Any]]:
            rows = await deliveries(notify, tokens, incident_id=str(event.incident_id),
                                    channel="email", state="delivered")
            return rows if len(rows) == 2 else []

        rows = await wait_until(both_delivered)
        feed = await notify.get("/v1/notifications", headers=tokens.policyholder(org))

    assert {row["target"] for row in rows} == {contact, adjusters}
    assert receipt["Subject"].startswith("We received your incident report: ERP down")
    assert receipt["From"] and receipt["X-Cyberclaims-Delivery"] in {row["id"] for row in rows}
    parts = _parts(receipt)
    assert set(parts) == {"text/plain", "text/html"}
    assert str(event.incident_id) in parts["text/plain"]
    assert "<script>alert(1)</script>" in parts["text/plain"]
    assert "&lt;script&gt;" in parts["text/html"] and "<script>" not in parts["text/html"]
    alert_parts = _parts(alert)
    assert "380000.00" in alert_parts["text/plain"] and "LATE_NOTICE" in alert_parts["text/html"]
    assert len(mailbox.to(contact)) == 1 and len(ours(mailbox.to(adjusters))) == 1
    items = feed.json()["items"]
    assert [item["kind"] for item in items] == ["incident_received"]
    assert str(event.incident_id) in items[0]["body"]
