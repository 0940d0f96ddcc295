"""k-anonymity of published cells, with complementary suppression.

A cell's figures rest on organisations, and each kind of figure on its own: the claim figures
on the organisations that claimed, the exposure and premium on the organisations exposed. Each
is a cover, and each is counted twice: over every organisation, and over the live event
stream's alone (an imported row's organisation is whatever its sender writes: counted with the
others only, an importer could unlock a live organisation's cell with made-up ones and
subtract its own amounts again).

A cell is published only if each of its covers holds no organisation or at least k; primary
suppression hides every other cell. A coarser query publishes the margins of a finer one
(`group_by=industry` is the sum of `group_by=industry,region` over regions), so a margin minus
the visible cells of its row would reveal what the row hides: complementary suppression hides
further cells of that row until, in every row along every dimension, the hidden cells together
hold, for each cover, no organisation or at least k. A cover that falls short takes the
visible cell with the fewest of its organisations (among those with any); where none is left,
the whole row's cover is short, and so is the margin's, which its own grouping hides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass


@dataclass
class Cell:
    key: tuple[str, ...]
    covers: Sequence[AbstractSet[str]]  # the organisations behind each kind of figure
    suppressed: bool = False


def suppress(cells: list[Cell], k: int) -> None:
    """Mark the cells that must not be published (in place)."""
    for cell in cells:
        cell.suppressed = any(_short((cover,), k) for cover in cell.covers)
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


def _short(groups: Iterable[AbstractSet[str]], k: int) -> bool:
    """Whether the groups together hold some organisations, but fewer than k."""
    covered: set[str] = set()
    for organisations in groups:
        if len(organisations) >= k:
            return False
        covered.update(organisations)
        if len(covered) >= k:
            return False
    return bool(covered)


def _protect_row(row: list[Cell], k: int) -> bool:
    """Hide one more cell of the row if one cover of its hidden cells falls short of k."""
    hidden = [cell for cell in row if cell.suppressed]
    if not hidden:
        return False
    for index in range(len(row[0].covers)):
        if not _short((cell.covers[index] for cell in hidden), k):
            continue
        candidates = [cell for cell in row if not cell.suppressed and cell.covers[index]]
        if candidates:
            min(candidates, key=lambda cell: (len(cell.covers[index]), cell.key)
                ).suppressed = True
            return True
    return False
