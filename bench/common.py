"""What every benchmark shares: options, statistics, machine facts and the result file."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
HARNESS_NICENESS = 10
"""The priority of every process a benchmark adds beside the system under test (the load
generator, the vendor panel, the stand-ins for outside systems). The watcher is not niced:
that would delay its timestamps."""


AUTOGROUP_TRIES = 5
"""Tries to nice a session's group: the kernel takes one change per 100 ms system-wide from a
process without CAP_SYS_ADMIN."""


def lower_priority(pid: int, niceness: int = HARNESS_NICENESS) -> None:
    """Run `pid`, which leads a session of its own, at `niceness`.

    With the kernel's autogroup (`kernel.sched_autogroup_enabled`, on by default in many
    kernels, this machine's among them) the CPU is shared between sessions first, each
    session weighing the same whatever its niceness: a process's niceness only ranks it
    against its own session. So the session's group is niced as well (`/proc/<pid>/autogroup`);
    without it, the stand-ins ran as a service's equal under contention. A process in a CPU
    cgroup of its own (a container's) is not scheduled by autogroup: there the write is
    harmless and the niceness ranks it against the whole cgroup."""
    if os.getsid(pid) != pid:  # the group is the whole session's: never nice the caller's
        raise ValueError(f"process {pid} does not lead a session of its own")
    os.setpriority(os.PRIO_PROCESS, pid, niceness)
    group = Path(f"/proc/{pid}/autogroup")
    for _ in range(AUTOGROUP_TRIES):
        try:
            group.write_text(str(niceness))
            return
        except FileNotFoundError:  # a kernel without autogroup: the niceness is enough
            return
        except BlockingIOError:  # another group changed within the last 100 ms
            time.sleep(0.1)
        except OSError as exc:
            print(f"warning: could not nice the scheduling group of process {pid}: {exc!r}",
                  file=sys.stderr, flush=True)
            return
    print(f"warning: the scheduling group of process {pid} was not niced (busy)",
          file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    quick: bool = False
    seed: int = 20251101
    profile: bool = False
    results_dir: Path = RESULTS_DIR
    command: str = "python -m bench"
    burst_size: int | None = None
    """Reports in each burst of the burst benchmark (None: its full or quick size)."""

    def size(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


@dataclass(frozen=True)
class Target:
    """A figure compared with its target; `op` is ">=" (at least) or "<=" (at most)."""

    name: str
    value: float | None
    op: str
    target: float
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.op == ">=" else self.value <= self.target


class Skipped(Exception):
    """The benchmark cannot run here (e.g. a service is not built yet)."""


@dataclass
class Outcome:
    figures: dict[str, Any]
    targets: list[Target] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    chart: str | None = None


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (p in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary_ms(seconds: list[float]) -> dict[str, float | None]:
    def ms(value: float | None) -> float | None:
        return round(value * 1000, 1) if value is not None else None

    return {"count": len(seconds), "p50_ms": ms(percentile(seconds, 50)),
            "p95_ms": ms(percentile(seconds, 95)), "p99_ms": ms(percentile(seconds, 99)),
            "max_ms": ms(max(seconds) if seconds else None)}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_mib": memory_kib // 1024 if memory_kib else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def write_result(options: Options, name: str, title: str, *, status: str, started: float,
                 outcome: Outcome | None = None, reason: str | None = None,
                 machine_at_start: dict[str, Any] | None = None) -> dict[str, Any]:
    """bench/results/<name>.json: figures, targets and whether each was met, and how."""
    outcome = outcome or Outcome(figures={})
    targets = [{**asdict(t), "met": t.met} for t in outcome.targets]
    result = {
        "benchmark": name,
        "title": title,
        "status": status,
        "reason": reason,
        "quick": options.quick,
        "command": options.command,
        "seed": options.seed,
        "run_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_seconds": round(time.time() - started, 1),
        "machine": machine_at_start or machine(),
        "parameters": outcome.parameters,
        "figures": outcome.figures,
        "targets": targets,
        "notes": outcome.notes,
        "chart": outcome.chart,
    }
    options.results_dir.mkdir(parents=True, exist_ok=True)
    path = options.results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    tmp.replace(path)
    return result


def print_result(result: dict[str, Any]) -> None:
    label = " (quick run)" if result["quick"] else ""
    print(f"\n== {result['title']}{label}: {result['status']}", flush=True)
    if result.get("reason"):
        print(f"   {result['reason']}")
    for key, value in result["figures"].items():
        if not isinstance(value, list | dict) or len(str(value)) < 120:
            print(f"   {key}: {value}")
    for target in result["targets"]:
        verdict = {True: "met", False: "NOT met", None: "no figure"}[target["met"]]
        print(f"   target {target['name']}: {target['value']} {target['unit']} "
              f"(target {target['op']} {target['target']}) -> {verdict}")
    for note in result["notes"]:
        print(f"   note: {note}")
    print(flush=True)
