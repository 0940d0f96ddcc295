"""Every benchmark runs end to end at its quick size (`python -m bench --quick`), so `make bench`
cannot rot unnoticed: each one starts its world, loads it, reads its figures off Kafka and the
services, and writes a result with a value for every target. Whether a target is met is the
benchmark's report, not a test: nothing here depends on how fast the machine is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import BENCHMARKS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# What a full `make bench` writes and a smoke run must not touch.
DOCUMENTED = [ROOT / "docs" / "performance.md",
              *sorted((ROOT / "bench" / "results").glob("*.json"))]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    results_dir = tmp_path_factory.mktemp("bench-results")
    documented = {path: path.read_bytes() for path in DOCUMENTED}
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--results-dir", str(results_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert {path: path.read_bytes() for path in DOCUMENTED} == documented
    return {path.stem: json.loads(path.read_text()) for path in results_dir.glob("*.json")}


def test_every_benchmark_ran_at_its_quick_size(quick_results: dict[str, dict[str, Any]]) -> None:
    assert set(quick_results) == set(BENCHMARKS)
    assert all(result["quick"] for result in quick_results.values())


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_reports_a_value_for_every_target(quick_results: dict[str, dict[str, Any]],
                                                          name: str) -> None:
    result = quick_results[name]
    assert result["status"] == "ok", result.get("reason")
    assert all(target["value"] is not None for target in result["targets"]), result["targets"]


def test_nothing_is_lost_under_the_quick_loads(quick_results: dict[str, dict[str, Any]]) -> None:
    burst = quick_results["burst"]["figures"]
    assert burst["dispatched"] == burst["accepted"] == burst["reports"]
    assert burst["dead_letters"] == 0
    latency = quick_results["dispatch_latency"]["figures"]
    assert latency["not_dispatched"] == 0 and latency["dead_letters"] == 0
    lifecycle = quick_results["lifecycle"]["figures"]
    assert lifecycle["paid"] == lifecycle["accepted"] == lifecycle["reports"]
    assert lifecycle["payments_failed"] == 0 and lifecycle["dead_letters"] == 0
    throughput = quick_results["intake_throughput"]["figures"]
    assert throughput["intake"]["errors"] == 0 and throughput["baseline"]["errors"] == 0
