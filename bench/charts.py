"""matplotlib without a display: one PNG per benchmark, next to its JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def figure(columns: int = 1, width: float = 6.0, height: float = 4.0) -> tuple[Any, Any]:
    fig, axes = plt.subplots(1, columns, figsize=(width * columns, height))
    return fig, axes


def save(fig: Any, directory: Path, name: str, title: str) -> str:
    fig.suptitle(title)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def per_second(times: list[float], start: float) -> tuple[list[int], list[int]]:
    """Counts of events per whole second since `start` (for throughput-over-time lines)."""
    if not times:
        return [], []
    last = int(max(times) - start)
    counts = [0] * (last + 1)
    for t in times:
        second = int(t - start)
        if 0 <= second <= last:
            counts[second] += 1
    return list(range(last + 1)), counts
