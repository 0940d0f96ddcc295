"""Keeps the results table of docs/performance.md in step with bench/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN = "<!-- bench-results:begin (written by `python -m bench`; do not edit by hand) -->"
END = "<!-- bench-results:end -->"
ORDER = ["intake_throughput", "dispatch_latency", "burst", "lifecycle", "insights_query",
         "notify_cost"]


def _load(results_dir: Path) -> list[dict[str, Any]]:
    results = []
    for path in results_dir.glob("*.json"):
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(results, key=lambda r: rank.get(r.get("benchmark", ""), len(ORDER)))


def _run_label(result: dict[str, Any]) -> str:
    kind = "quick run" if result.get("quick") else "full run"
    return f"{kind}, {result.get('run_at', '?')[:10]}, `{result.get('command', '?')}`"


def _value(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value} {unit}".strip()


def render(results: list[dict[str, Any]]) -> str:
    if not results:
        return "No results yet: run `make bench`."
    lines = ["| Benchmark | Figure | Result | Target | Met | Run |",
             "|---|---|---|---|---|---|"]
    for result in results:
        title = result.get("title", result.get("benchmark", "?"))
        run = _run_label(result)
        if result.get("status") != "ok":
            lines.append(f"| {title} | {result.get('status')}: {result.get('reason') or ''} "
                         f"| | | | {run} |")
            continue
        for target in result.get("targets", []):
            met = {True: "yes", False: "**no**", None: "n/a"}[target.get("met")]
            lines.append(f"| {title} | {target['name']} | {_value(target['value'], target['unit'])} "
                         f"| {target['op']} {target['target']} {target['unit']} | {met} | {run} |")
        if not result.get("targets"):
            lines.append(f"| {title} | (no target) | | | | {run} |")
    lines.append("")
    for result in results:
        if result.get("status") != "ok":
            continue
        scalars = {k: v for k, v in result.get("figures", {}).items()
                   if not isinstance(v, dict | list)}
        machine = result.get("machine", {})
        lines.append(f"- **{result.get('title')}** ({_run_label(result)}; seed {result.get('seed')}; "
                     f"{machine.get('cpus')} CPUs, load average at start "
                     f"{machine.get('load_average')}"
                     + (f"; {machine['postgresql']}" if machine.get("postgresql") else "")
                     + (f"; {machine['cpu_weights']}" if machine.get("cpu_weights") else "")
                     + "): "
                     + ", ".join(f"{k} = {v}" for k, v in scalars.items())
                     + (f"; chart `bench/results/{result['chart']}`" if result.get("chart") else ""))
        for note in result.get("notes", []):
            lines.append(f"  - {note}")
    return "\n".join(lines)


def update_performance_doc(results_dir: Path, doc: Path = DOC) -> Path:
    """Replace the text between the markers (appending them if the doc has none)."""
    table = render(_load(results_dir))
    text = doc.read_text() if doc.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = f"{head}{BEGIN}\n{table}\n{END}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{BEGIN}\n{table}\n{END}\n"
    doc.write_text(text)
    return doc
