"""Keeps the first screen of docs/performance.md in step with bench/results: the current figures
beside their baselines (`FIGURES`), and where the time goes, one profile per process
(`PROFILES`, from `python -m bench lifecycle --profile`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
FIGURES = ("<!-- bench-results:begin (written by `python -m bench`; do not edit by hand) -->",
           "<!-- bench-results:end -->")
PROFILES = ("<!-- bench-profiles:begin (written by `python -m bench`; do not edit by hand) -->",
            "<!-- bench-profiles:end -->")
ORDER = ["intake_throughput", "dispatch_latency", "burst", "lifecycle", "insights_query",
         "notify_cost"]
PROFILE_ORDER = ["intake", "triage", "payout", "notify", "risk", "insights", "vendor_panel",
                 "payments_stand-in"]
FRAMES_PER_PROFILE = 4

Row = tuple[str, Any, Any, str]
"""(figure, this run's value, its baseline, what the baseline is)."""


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
    kind = "quick" if result.get("quick") else "full"
    machine = result.get("machine", {})
    load = machine.get("load_average") or ["?"]
    return f"{kind}, {result.get('run_at', '?')[:16]}, load {load[0]}"


def _value(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value} {unit}".strip()


def _ratio(value: Any, baseline: Any) -> str:
    if not isinstance(value, int | float) or not isinstance(baseline, int | float) or not baseline:
        return ""
    return f" (x{value / baseline:.2f})"


def _intake_rows(figures: dict[str, Any]) -> list[Row]:
    return [("intake req/s", figures.get("intake_rps"), figures.get("baseline_rps"),
             "bare FastAPI + asyncpg insert")]


def _latency_rows(figures: dict[str, Any]) -> list[Row]:
    lowest = (figures.get("lower_rates") or [{}])[0]
    rate = lowest.get("rate_per_second")
    return [(f"p{p} report to dispatch at 50/s, ms", figures.get(f"p{p}_ms"),
             lowest.get(f"p{p}_ms"), f"the same at {rate}/s") for p in (50, 99)]


def _burst_rows(figures: dict[str, Any]) -> list[Row]:
    deployed = figures.get("as_deployed", {}).get("burst_1", {})
    equal = figures.get("equal_weights", {}).get("burst_1", {})
    replicas = figures.get("replicas", {}).get("burst_1", {})
    rest = "incidents_per_second_until_at_rest"
    return [
        ("incidents/s until every service at rest, as deployed", deployed.get(rest),
         deployed.get("incidents_per_second_dispatched"), "dispatched/s, same burst"),
        ("the same, equal weights", equal.get(rest), deployed.get(rest), "as deployed"),
        ("the same, triage and notify 2 replicas each (equal weights)", replicas.get(rest),
         equal.get(rest), "1 replica"),
        ("insights, risk at rest after the others, s (as deployed)",
         _pair(deployed.get("read_models_seconds_after_others", {})), None, ""),
    ]


def _pair(after: dict[str, Any]) -> str:
    return " / ".join(_value(after.get(name)) for name in ("insights", "risk"))


def _lifecycle_rows(figures: dict[str, Any]) -> list[Row]:
    paid, responded = figures.get("report_to_paid", {}), figures.get(
        "report_to_response_completed", {})
    return [("paid claims/s", figures.get("paid_per_second"),
             figures.get("responses_completed_per_second"), "responses completed/s"),
            ("report to paid p99, ms", paid.get("p99_ms"), responded.get("p99_ms"),
             "report to response completed p99"),
            ("report to paid p50, ms", paid.get("p50_ms"), responded.get("p50_ms"),
             "report to response completed p50")]


def _insights_rows(figures: dict[str, Any]) -> list[Row]:
    return [("experience query p95 with writes between, ms",
             figures.get("query_with_writes", {}).get("p95_ms"),
             figures.get("query_unchanged", {}).get("p95_ms"), "no writes between")]


def _notify_rows(figures: dict[str, Any]) -> list[Row]:
    return [("notify CPU per incident, ms (every webhook and mail delivered)",
             figures.get("notify_cpu_ms_per_incident"), figures.get("baseline_cpu_ms_per_incident"),
             "bare asyncio POSTs and SMTP sends of the same notifications")]


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "intake_throughput": _intake_rows, "dispatch_latency": _latency_rows,
    "burst": _burst_rows, "lifecycle": _lifecycle_rows, "insights_query": _insights_rows,
    "notify_cost": _notify_rows,
}


def render(results: list[dict[str, Any]]) -> str:
    if not results:
        return "No results yet: run `make bench`."
    lines = ["| Benchmark | Figure | This run | Baseline, same run | Run |", "|---|---|---|---|---|"]
    for result in results:
        title = result.get("benchmark", "?")
        run = _run_label(result)
        if result.get("status") != "ok":
            lines.append(f"| {title} | {result.get('status')}: {result.get('reason') or ''} "
                         f"| | | {run} |")
            continue
        for figure, value, baseline, what in ROWS.get(title, lambda _: [])(result["figures"]):
            shown = f"{_value(baseline)} ({what})" if baseline is not None else ""
            lines.append(f"| {title} | {figure} | {_value(value)}{_ratio(value, baseline)} "
                         f"| {shown} | {run} |")
    lines += ["", "| Benchmark | Target | Value | Met |", "|---|---|---|---|"]
    for result in results:
        for target in result.get("targets", []):
            met = {True: "yes", False: "**no**", None: "n/a"}[target.get("met")]
            lines.append(f"| {result.get('benchmark')} | {target['name']} {target['op']} "
                         f"{target['target']} {target['unit']} | "
                         f"{_value(target['value'], target['unit'])} | {met} |")
    lines.append("")
    lines.append("Each result's figures, notes, machine (load average at its start), seed and "
                 "command: `bench/results/<benchmark>.json`; its chart beside it (`.png`).")
    return "\n".join(lines)


def render_profiles(results_dir: Path) -> str:
    """Each profile's top frames by self time (a process's own code, not its callers)."""
    found = {path.stem.removeprefix("profile_"): path
             for path in results_dir.glob("profile_*.txt")}
    if not found:
        return "No profiles yet: run `python -m bench lifecycle --profile`."
    lines = []
    for name in sorted(found, key=lambda n: (PROFILE_ORDER.index(n) if n in PROFILE_ORDER
                                             else len(PROFILE_ORDER), n)):
        text = found[name].read_text().splitlines()
        header = text[0]
        samples = next((line for line in text if "samples" in line and line[:1].isdigit()), "")
        own = _section(text, "Self time (leaf frame):")[:FRAMES_PER_PROFILE]
        packages = _section(text, "Self time by package (leaf frame's directory):")[:3]
        lines.append(f"- **{name.replace('_', ' ')}** ({samples}; {header.split('(', 1)[-1]}"
                     f" top frames: {'; '.join(own)}. By package: {'; '.join(packages)}.")
    return "\n".join(lines)


def _section(lines: list[str], title: str) -> list[str]:
    if title not in lines:
        return []
    rows = []
    for line in lines[lines.index(title) + 1:]:
        if not line.strip():
            break
        rows.append(" ".join(line.split()))
    return rows


def _replace(text: str, markers: tuple[str, str], body: str) -> str:
    begin, end = markers
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        return f"{head}{begin}\n{body}\n{end}{tail}"
    return f"{text.rstrip()}\n\n{begin}\n{body}\n{end}\n"


def update_performance_doc(results_dir: Path, doc: Path = DOC) -> Path:
    """Replace the text between each pair of markers (appending them if the doc has none)."""
    text = doc.read_text() if doc.exists() else "# Performance\n"
    text = _replace(text, FIGURES, render(_load(results_dir)))
    text = _replace(text, PROFILES, render_profiles(results_dir))
    doc.write_text(text)
    return doc
