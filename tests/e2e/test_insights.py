"""`cyberclaims simulate` against the whole system: a small synthetic book through the public
APIs, and insights' loss experience counting its claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cyberclaims.client import Api, wait_for
from cyberclaims.simulate import book, drive

pytestmark = pytest.mark.slow


def test_a_simulated_book_shows_in_the_loss_experience(api: Api) -> None:
    now = datetime.now(UTC)
    the_book = book(12, 1, 15, start=now - timedelta(days=365))  # seed 15: three past claims
    played = drive(api, the_book, say=lambda _: None)
    assert played == 3
    operator = api.operator()

    def total() -> dict[str, Any]:
        cells: list[dict[str, Any]] = operator.get("insights", "/v1/insights/experience")["cells"]
        return cells[0]

    cell = wait_for("the claims in the experience", total,
                    until=lambda c: c["figures"] is not None and c["figures"]["claims"] == played
                    and c["figures"]["paid"]["claims"] == 2)  # one of the three is denied
    assert cell["figures"]["exposure_policy_years"] != "0.0000"
    by_industry = operator.get("insights", "/v1/insights/experience", group_by="industry")
    assert {c["dimensions"]["industry"] for c in by_industry["cells"]} <= {
        "telecom", "internet", "manufacturing", "finance"}
