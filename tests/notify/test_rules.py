"""Pure parts of notify: signatures, backoff, the routing table, its documentation and the
templates (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.notify.delivery import backoff_seconds
from services.notify.rendering import Templates
from services.notify.routing import REGULATORY_REMINDER, ROUTES, TEMPLATES, routing_table_markdown
from services.notify.signing import sign, verify
from shared.events import Event, IncidentEvent, RiskEvent

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "services" / "notify" / "templates"


def test_a_signature_verifies_only_with_the_secret_the_body_and_a_fresh_timestamp() -> None:
    body = b'{"id":"1"}'
    header = sign("a-subscriber-secret", body, 1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify("a-subscriber-secret", body, header, now=1_700_000_100)
    assert not verify("another-secret-!!", body, header, now=1_700_000_100)
    assert not verify("a-subscriber-secret", body + b" ", header, now=1_700_000_100)
    assert not verify("a-subscriber-secret", body, header, now=1_700_001_000)  # too old
    assert not verify("a-subscriber-secret", body, "v1=deadbeef", now=1_700_000_000)


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    for tries in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (tries - 1))
        samples = [backoff_seconds(tries, base=2.0, cap=60.0) for _ in range(50)]
        assert all(0 <= s <= ceiling for s in samples)
    assert max(backoff_seconds(30, base=2.0, cap=60.0) for _ in range(50)) <= 60.0


def test_every_routed_type_is_an_incident_event_or_the_reminder_and_every_template_exists(
) -> None:
    # deliveries are looked up by incident (services.notify.transaction_cache); risk's events concern a
    # policy and come once per event id (the inbox)
    for event_type in ROUTES:
        assert event_type == REGULATORY_REMINDER \
            or issubclass(Event.registry[event_type], IncidentEvent | RiskEvent)
    for kind in TEMPLATES:
        assert (TEMPLATE_DIR / f"{kind}.txt").exists() and (TEMPLATE_DIR / f"{kind}.html").exists()


def test_the_documentation_shows_the_routing_table_of_the_code() -> None:
    assert routing_table_markdown() in DOC.read_text()


SAMPLE = {
    "incident_id": str(uuid.uuid4()), "org_id": "org-1", "vendor_id": "v-1", "job_id": "j-1",
    "job_type": "forensics", "priority": "P1", "accept_by": "2025-01-01T10:15:00Z",
    "title": "ERP <b>down</b>", "policy_number": "POL-1", "reported_at": "2025-01-01T10:00:00Z",
    "regulatory_grade": "serious", "regulatory_deadline": "2025-01-01T14:00:00Z", "jobs": [{}],
    "reason": "no capacity", "findings": [], "attribution": "criminal", "claim_id": "c-1",
    "payable": "100.00", "approvals_required": 1, "coverage_questions": [], "amount": "100.00",
    "currency": "CNY", "provider_reference": "ref-1", "payment_id": "p-1", "error": "timeout",
    "attempts": 8, "minutes_left": 60, "adjuster": "a-1", "loss_id": "l-1",
    "consumer": "payout", "dead_event_id": "e-1", "dead_event_type": "x", "marked": ["claim c-1"],
    "kind": "exposed_service", "description": "RDP <b>open</b>", "tier": "D",
    "item": {"title": "RDP <b>open</b>", "control": "no_exposed_rdp_or_smb",
             "due_at": "2025-01-04T10:00:00Z"},
}


@pytest.mark.parametrize("kind", TEMPLATES)
def test_each_kind_renders_a_subject_text_and_escaped_html(kind: str) -> None:
    rendered = Templates().render(kind, {
        "data": SAMPLE, "incident": {"title": "ERP <b>down</b>", "policy_number": "POL-1"},
        "incident_id": SAMPLE["incident_id"], "event_type": "x", "event_id": "e",
        "recipient": "org:org-1", "now": datetime.now(UTC),
    })
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.text.strip() and rendered.html.startswith("<!doctype html>")
    assert "<b>down</b>" not in rendered.html
