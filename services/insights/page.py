"""The insights page's report, rendered on the server: tables and SVG charts from the same
published (suppressed) cells and triangle as the API, so the page shows nothing the API hides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from services.insights.schemas import CellOut, TriangleOut

WIDTH, HEIGHT, MARGIN = 640, 240, 40
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Bar:
    label: str
    x: float
    y: float
    width: float
    height: float
    value: str
    colour: str


@dataclass(frozen=True)
class Curve:
    label: str
    points: str
    colour: str


def bars(items: Sequence[tuple[str, Decimal]], colour: str = COLOURS[0],
         top: Decimal | None = None) -> list[Bar]:
    """Vertical bars scaled to `top` (by default the largest value)."""
    if not items:
        return []
    top = top or max(value for _, value in items) or Decimal(1)
    slot = (WIDTH - 2 * MARGIN) / len(items)
    result = []
    for index, (label, value) in enumerate(items):
        height = float(value / top) * (HEIGHT - 2 * MARGIN)
        result.append(Bar(label, MARGIN + index * slot + slot * 0.1, HEIGHT - MARGIN - height,
                          slot * 0.8, height, str(value), colour))
    return result


def curves(triangle: TriangleOut) -> list[Curve]:
    """One polyline per accident quarter: cumulative value by development month."""
    longest = max((len(row.values) for row in triangle.rows), default=0)
    top = max((max(row.values, default=Decimal(0)) for row in triangle.rows),
              default=Decimal(0)) or Decimal(1)
    step = (WIDTH - 2 * MARGIN) / max(longest - 1, 1)
    result = []
    for index, row in enumerate(triangle.rows):
        points = " ".join(
            f"{MARGIN + month * step:.1f},"
            f"{HEIGHT - MARGIN - float(value / top) * (HEIGHT - 2 * MARGIN):.1f}"
            for month, value in enumerate(row.values))
        result.append(Curve(row.accident_quarter, points, COLOURS[index % len(COLOURS)]))
    return result


def label(cell: CellOut) -> str:
    return " / ".join(cell.dimensions.values()) or "all"


class Pages:
    """The jinja2 environment, built once at start-up."""

    def __init__(self) -> None:
        self._env = Environment(loader=PackageLoader("services.insights", "templates"),
                                autoescape=select_autoescape(default=True),
                                undefined=StrictUndefined, auto_reload=False)

    def report(self, context: dict[str, Any]) -> str:
        cells: list[CellOut] = context["cells"]
        shown = [cell for cell in cells if cell.figures is not None]
        frequency = [(label(c), c.figures.frequency_per_100_policy_years) for c in shown
                     if c.figures is not None and c.figures.frequency_per_100_policy_years is not None]
        severity = [(label(c), c.figures.paid.median) for c in shown
                    if c.figures is not None and c.figures.paid.median is not None]
        severity_p90 = [(label(c), c.figures.paid.p90) for c in shown
                        if c.figures is not None and c.figures.paid.p90 is not None]
        top = max((value for _, value in severity_p90), default=None)  # one scale for both
        return self._env.get_template("report.html").render(
            **context, label=label, width=WIDTH, height=HEIGHT, margin=MARGIN,
            frequency=bars(frequency), severity=bars(severity, top=top),
            severity_p90=bars(severity_p90, COLOURS[1], top=top), curves=curves(context["triangle"]))
