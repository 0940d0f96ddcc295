"""A loss payout rejected because it crossed the claim's decision on its way
(`LateLossRejected`): the policyholder, whose submission was accepted, is told by mail and in
the feed. Real broker, real SMTP sink, notify's own consumer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fastapi import FastAPI

from shared.events import LateLossRejected, Section
from tests.notify.conftest import Mailbox, emit, unique, wait_until
from tests.notify.test_email import reported
from tests.support.service import Tokens, running

REASON = "submitted after the claim was approved: it is not part of this claim's decision"


async def test_the_policyholder_is_told_of_a_loss_rejected_as_late(
    make_notify: Callable[..., FastAPI], mailbox: Mailbox, broker: str, tokens: Tokens
) -> None:
    org = unique("org")
    contact = f"{org}@example.com"
    incident = reported(org, contact, "Invoice fraud")
    late = LateLossRejected(
        incident_id=incident.incident_id, org_id=org, claim_id=uuid.uuid4(),
        at=datetime.now(UTC), loss_id=uuid.uuid4(), section=Section.funds_transfer_fraud,
        amount=Decimal("40000"), hourly_loss=None, claim_status="approved", reason=REASON)

    def told(messages: list[Any]) -> list[Any]:
        return [m for m in messages if str(late.loss_id) in m.get_body(("plain",)).get_content()]

    async with running(make_notify()) as notify:
        # notify learns the policyholder's address from the report, long before any decision
        # in life; the two topics' events may be applied in either order, so wait for it
        await emit(broker, incident, source="/cyberclaims/intake")
        await wait_until(lambda: mailbox.to(contact))
        await emit(broker, late, source="/cyberclaims/payout")
        [mail] = await wait_until(lambda: told(mailbox.to(contact)))

        async def in_the_feed() -> list[dict[str, Any]]:
            feed = await notify.get("/v1/notifications", headers=tokens.policyholder(org))
            return [item for item in feed.json()["items"] if item["kind"] == "late_loss_rejected"]

        [item] = await wait_until(in_the_feed)

    assert mail["Subject"] == "A loss you submitted is not part of your claim"
    assert REASON in mail.get_body(("plain",)).get_content()
    assert str(late.loss_id) in item["body"] and str(late.claim_id) in item["body"]
