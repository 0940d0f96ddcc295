"""`cyberclaims simulate` against the whole system: a small synthetic book through the public
APIs, its past imported as history, and insights' loss experience counting both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cyberclaims.client import Api, wait_for
from cyberclaims.simulate import book, bordereaux, drive, import_history

pytestmark = pytest.mark.slow


def test_a_simulated_book_shows_in_the_loss_experience(api: Api) -> None:
    now = datetime.now(UTC)
    the_book = book(12, 1, 15, start=now - timedelta(days=365))  # seed 15: three past claims
    played = drive(api, the_book, say=lambda _: None)
    assert played == 3
    operator = api.operator()

    def total() -> dict[str, Any]:
        cells: list[dict[str, Any]] = operator.get("insights", "/v1/insights/experience",
                                                   source="live")["cells"]
        return cells[0]

    cell = wait_for("the claims in the experience", total,
                    until=lambda c: c["figures"] is not None and c["figures"]["claims"] == played
                    and c["figures"]["paid"]["claims"] == 2)  # one of the three is denied
    assert cell["figures"]["exposure_policy_years"] != "0.0000"
    by_industry = operator.get("insights", "/v1/insights/experience", group_by="industry")
    assert {c["dimensions"]["industry"] for c in by_industry["cells"]} <= {
        "telecom", "internet", "manufacturing", "finance"}


def test_a_simulated_past_is_imported_as_history_once(api: Api) -> None:
    now = datetime.now(UTC)
    past = book(12, 2, 16, start=now - timedelta(days=4 * 365))  # settled two years ago
    bodies = bordereaux(past, seed=16, now=now)
    imported = import_history(api, bodies, say=lambda _: None)
    assert imported == len(past.claims) > 0
    assert import_history(api, bodies, say=lambda _: None) == imported  # the same import: 200
    [history] = api.operator().get("insights", "/v1/insights/experience", source="history",
                                   group_by="source")["cells"]
    assert history["figures"]["claims"] == imported
