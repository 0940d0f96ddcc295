"""The suppression rule on its own (no I/O): primary, complementary along every dimension (the
claim figures protected by the organisations that claimed, the exposure by those exposed),
exposure withheld from finer cells where the coarser grouping hides it, and the triangles
hiding what the experience by period hides."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.insights.privacy import Cell, suppress
from services.insights.service import quarter_start
from services.insights.statistics import ClaimFacts, ExposureFacts, experience
from services.insights.triangles import Basis, ClaimHistory, triangle_rows

K = 3
VALUATION = datetime(2030, 1, 1, tzinfo=UTC)
"""After every quarter here: the exposure is valued whole."""


def cell(*key: str, orgs: int, prefix: str = "") -> Cell:
    name = prefix or "-".join(key)
    return Cell(key, (frozenset(f"{name}-{i}" for i in range(orgs)),))


def hidden_rows_cover_k(cells: list[Cell], k: int) -> bool:
    """In every row along every dimension, the hidden cells cover k organisations or none."""
    width = len(cells[0].key)
    for dimension in range(width):
        rows: dict[tuple[str, ...], list[Cell]] = {}
        for c in cells:
            rows.setdefault(c.key[:dimension] + c.key[dimension + 1:], []).append(c)
        for row in rows.values():
            hidden = [c for c in row if c.suppressed]
            for index in range(len(row[0].covers)):
                covered = frozenset().union(*(c.covers[index] for c in hidden))
                if 0 < len(covered) < k and len(hidden) < len(row):
                    return False
    return True


def test_a_lone_small_cell_takes_the_smallest_other_with_it() -> None:
    cells = [cell("a", orgs=1), cell("b", orgs=9), cell("c", orgs=4), cell("d", orgs=5)]
    suppress(cells, K)
    assert [c.suppressed for c in cells] == [True, False, True, False]


def test_no_suppression_without_a_small_cell() -> None:
    cells = [cell("a", orgs=3), cell("b", orgs=4)]
    suppress(cells, K)
    assert not any(c.suppressed for c in cells)


def test_every_row_of_every_dimension_is_protected() -> None:
    sizes = {("x", "p"): 1, ("x", "q"): 6, ("x", "r"): 7, ("y", "p"): 8, ("y", "q"): 2,
             ("y", "r"): 9, ("z", "p"): 5, ("z", "q"): 5, ("z", "r"): 1}
    cells = [cell(*key, orgs=n) for key, n in sizes.items()]
    suppress(cells, K)
    assert hidden_rows_cover_k(cells, K)
    assert all(len(c.covers[0]) >= K for c in cells if not c.suppressed)


def claim(org: str, industry: str, category: str, period: str = "2026Q1") -> ClaimFacts:
    return ClaimFacts(org_id=org, dimensions={"industry": industry, "region": "CN-GD",
                                              "size_band": "1-49", "category": category,
                                              "attack_vector": "phishing", "period": period,
                                              "source": "live"},
                      paid=100_00, incurred=100_00, case_reserve=0, to_dispatch=None,
                      to_containment=None, to_payment=None, outage_seconds=None)


def exposure(org: str, industry: str, period: str = "2026Q1") -> ExposureFacts:
    return ExposureFacts(org_id=org, seconds=86_400 * 90, annual_premium=10_000_00,
                         start=quarter_start(period),
                         dimensions={"industry": industry, "region": "CN-GD",
                                     "size_band": "1-49", "period": period, "source": "live"})


def test_a_finer_cell_withholds_the_exposure_its_coarser_grouping_hides() -> None:
    orgs = {"finance": [f"f{i}" for i in range(3)], "energy": ["e0"],
            "telecom": [f"t{i}" for i in range(6)]}
    claims = [claim(org, industry, "ddos" if industry == "energy" else "ransomware")
              for industry, names in orgs.items() for org in names]
    exposures = [exposure(org, industry) for industry, names in orgs.items() for org in names]
    by_industry = {c["dimensions"]["industry"]: c for c in
                   experience(claims, exposures, ("industry",), {}, K, VALUATION)}
    assert by_industry["energy"]["suppressed"] and by_industry["finance"]["suppressed"]
    assert not by_industry["telecom"]["suppressed"]
    finer = {c["dimensions"]["industry"]: c for c in
             experience(claims, exposures, ("industry", "category"), {}, K, VALUATION)}
    # finance x ransomware covers 3 organisations and is published (energy's lone claim is
    # another category), but finance's exposure and premium are hidden by industry alone
    assert not finer["finance"]["suppressed"]
    assert finer["finance"]["figures"]["earned_premium"] is None
    assert finer["finance"]["figures"]["frequency_per_100_policy_years"] is None
    assert finer["telecom"]["figures"]["earned_premium"] is not None


CLAIMANTS = {"energy": ["e0"], "finance": [f"f{i}" for i in range(4)],
             "telecom": [f"t{i}" for i in range(6)]}
"""Energy's one claimant, and two industries that k covers; healthcare (below) is exposed by
k organisations and has no claims."""


def remainder(total: dict[str, Any], cells: list[dict[str, Any]]) -> tuple[int, Decimal]:
    """The total's claims and paid less those of every visible cell: the hidden cells'."""
    visible = [c["figures"] for c in cells if not c["suppressed"]]
    return (total["figures"]["claims"] - sum(f["claims"] for f in visible),
            total["figures"]["paid"]["total"] - sum(f["paid"]["total"] for f in visible))


def test_a_cell_without_claims_protects_no_claimant() -> None:
    """Hiding healthcare (exposure, no claims) beside energy hides no one's claims: the total
    less the visible industries must not be energy's lone claim."""
    claims = [claim(org, industry, "ransomware") for industry, names in CLAIMANTS.items()
              for org in names]
    exposures = [exposure(org, industry) for industry, names in CLAIMANTS.items()
                 for org in names] + [exposure(f"h{i}", "healthcare") for i in range(K)]
    [total] = experience(claims, exposures, (), {}, K, VALUATION)
    by_industry = experience(claims, exposures, ("industry",), {}, K, VALUATION)
    assert not total["suppressed"]
    hidden = {c["dimensions"]["industry"] for c in by_industry if c["suppressed"]}
    assert "energy" in hidden
    assert len({org for industry in hidden for org in CLAIMANTS.get(industry, ())}) >= K
    assert remainder(total, by_industry) != (1, Decimal("100.00"))


def test_a_quarter_without_claims_leaves_no_claimant_in_the_triangle() -> None:
    """The same by accident quarter: the triangle shows the quarters the experience by period
    publishes, so the total less the triangle's latest diagonal must not be e0's claim."""
    quarters = dict(zip(CLAIMANTS, ("2026Q1", "2026Q2", "2026Q3"), strict=True))
    claims = [claim(org, "finance", "ransomware", quarters[group])
              for group, names in CLAIMANTS.items() for org in names]
    exposures = [exposure(org, "finance", quarters[group]) for group, names in CLAIMANTS.items()
                 for org in names] + [exposure(f"h{i}", "finance", "2026Q4") for i in range(K)]
    hidden = {c["dimensions"]["period"]
              for c in experience(claims, exposures, ("period",), {}, K, VALUATION)
              if c["suppressed"]}
    paid_at = datetime(2026, 12, 1, tzinfo=UTC)
    histories = [ClaimHistory(org_id=c.org_id, accident_quarter=c.dimensions["period"],
                              opened_at=paid_at, movements=((paid_at, "paid", Decimal(100)),))
                 for c in claims]
    rows, left_out = triangle_rows(histories, Basis.paid, datetime(2027, 1, 15, tzinfo=UTC),
                                   hidden)
    assert "2026Q1" in left_out
    [total] = experience(claims, exposures, (), {}, K, VALUATION)
    shown = sum((values[-1] for values in rows.values()), Decimal(0))
    assert total["figures"]["paid"]["total"] - shown != Decimal(100)
