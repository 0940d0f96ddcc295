"""The suppression rule on its own (no I/O): primary, complementary along every dimension, and
exposure withheld from finer cells where the coarser grouping hides it."""

from __future__ import annotations

from services.insights.privacy import Cell, suppress
from services.insights.statistics import ClaimFacts, ExposureFacts, experience

K = 3


def cell(*key: str, orgs: int, prefix: str = "") -> Cell:
    name = prefix or "-".join(key)
    return Cell(key, frozenset(f"{name}-{i}" for i in range(orgs)))


def hidden_rows_cover_k(cells: list[Cell], k: int) -> bool:
    """In every row along every dimension, the hidden cells cover k organisations or none."""
    width = len(cells[0].key)
    for dimension in range(width):
        rows: dict[tuple[str, ...], list[Cell]] = {}
        for c in cells:
            rows.setdefault(c.key[:dimension] + c.key[dimension + 1:], []).append(c)
        for row in rows.values():
            hidden = [c for c in row if c.suppressed]
            covered = frozenset().union(*(c.organisations for c in hidden))
            if hidden and len(covered) < k and len(hidden) < len(row):
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
    assert all(len(c.organisations) >= K for c in cells if not c.suppressed)


def claim(org: str, industry: str, category: str) -> ClaimFacts:
    return ClaimFacts(org_id=org, dimensions={"industry": industry, "region": "CN-GD",
                                              "size_band": "1-49", "category": category,
                                              "attack_vector": "phishing", "period": "2026Q1"},
                      paid=100_00, incurred=100_00, case_reserve=0, to_dispatch=None,
                      to_containment=None, to_payment=None, outage_seconds=None)


def exposure(org: str, industry: str) -> ExposureFacts:
    return ExposureFacts(org_id=org, seconds=86_400 * 90, annual_premium=10_000_00,
                         dimensions={"industry": industry, "region": "CN-GD",
                                     "size_band": "1-49", "period": "2026Q1"})


def test_a_finer_cell_withholds_the_exposure_its_coarser_grouping_hides() -> None:
    orgs = {"finance": [f"f{i}" for i in range(3)], "energy": ["e0"],
            "telecom": [f"t{i}" for i in range(6)]}
    claims = [claim(org, industry, "ddos" if industry == "energy" else "ransomware")
              for industry, names in orgs.items() for org in names]
    exposures = [exposure(org, industry) for industry, names in orgs.items() for org in names]
    by_industry = {c["dimensions"]["industry"]: c for c in
                   experience(claims, exposures, ("industry",), {}, K)}
    assert by_industry["energy"]["suppressed"] and by_industry["finance"]["suppressed"]
    assert not by_industry["telecom"]["suppressed"]
    finer = {c["dimensions"]["industry"]: c for c in
             experience(claims, exposures, ("industry", "category"), {}, K)}
    # finance x ransomware covers 3 organisations and is published (energy's lone claim is
    # another category), but finance's exposure and premium are hidden by industry alone
    assert not finer["finance"]["suppressed"]
    assert finer["finance"]["figures"]["earned_premium"] is None
    assert finer["finance"]["figures"]["frequency_per_100_policy_years"] is None
    assert finer["telecom"]["figures"]["earned_premium"] is not None
