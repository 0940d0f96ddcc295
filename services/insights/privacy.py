"""k-anonymity of published cells, with complementary suppression.

A cell is published only if it covers at least k distinct organisations. Primary suppression
hides every smaller cell. A coarser query publishes the margins of a finer one (`group_by=
industry` is the sum of `group_by=industry,region` over regions), so a margin minus the visible
cells of its row would reveal what the row hides: complementary suppression hides further
cells of that row (the fewest organisations first) until the hidden cells of every row, along
every dimension, cover at least k organisations together, or none is hidden.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass
class Cell:
    key: tuple[str, ...]
    organisations: frozenset[str]
    suppressed: bool = False


def suppress(cells: list[Cell], k: int) -> None:
    """Mark the cells that must not be published (in place)."""
    for cell in cells:
        cell.suppressed = len(cell.organisations) < k
    width = len(cells[0].key) if cells else 0
    changed = True
    while changed:
        changed = False
        for dimension in range(width):
            rows: dict[tuple[str, ...], list[Cell]] = defaultdict(list)
            for cell in cells:
                rows[cell.key[:dimension] + cell.key[dimension + 1:]].append(cell)
            for row in rows.values():
                changed |= _protect_row(row, k)


def _protect_row(row: list[Cell], k: int) -> bool:
    """Hide one more cell of the row if its hidden cells cover fewer than k organisations."""
    hidden = [cell for cell in row if cell.suppressed]
    if not hidden or len(frozenset().union(*(cell.organisations for cell in hidden))) >= k:
        return False
    visible = [cell for cell in row if not cell.suppressed]
    if not visible:
        return False
    min(visible, key=lambda cell: (len(cell.organisations), cell.key)).suppressed = True
    return True
