"""The request fingerprint that tells a retry (same Idempotency-Key, same report) from a
conflict (same key, another report): a unit test, no I/O."""

from __future__ import annotations

import json

from services.intake.schemas import IncidentReportIn
from services.intake.service import request_fingerprint
from tests.intake.conftest import report_body


def _fingerprint(raw: str) -> str:
    return request_fingerprint(IncidentReportIn.model_validate_json(raw))


def test_key_order_spacing_and_defaults_left_out_do_not_change_it() -> None:
    body = report_body("POL-1")
    reordered = dict(reversed(list(body.items())))
    with_defaults = {**body, "data_types": [], "records_exposed": None}

    assert _fingerprint(json.dumps(body)) == _fingerprint(json.dumps(reordered, indent=2))
    assert _fingerprint(json.dumps(body)) == _fingerprint(json.dumps(with_defaults))


def test_another_report_has_another() -> None:
    body = report_body("POL-1")

    assert _fingerprint(json.dumps(body)) != _fingerprint(
        json.dumps({**body, "affected_hosts": body["affected_hosts"] + 1}))
