"""Every benchmark runs end to end at its quick size (`python -m bench --quick`), so `make bench`
cannot rot unnoticed: each one starts its world, loads it, reads its figures off Kafka and the
services, and writes a result with a value for every target. Whether a target is met is the
benchmark's report, not a test: nothing here depends on how fast the machine is.

It is `make bench`'s first step, not part of `make test` (marked `bench`): it starts every
benchmark's world of processes, some at a low priority, and on a machine busy with other work
they took longer to come up than the benchmarks allow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import BENCHMARKS
from bench.system import ALL_SERVICES
from tests.support.infra import drop_databases

pytestmark = [pytest.mark.slow, pytest.mark.bench]

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 900


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    results_dir = tmp_path_factory.mktemp("bench-results")
    # Its own databases: a `make bench` running meanwhile keeps its own.
    prefix = f"cyberclaims_smoke_{os.getpid()}_"
    run = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--results-dir", str(results_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "CYBERCLAIMS_BENCH_DATABASE_PREFIX": prefix})
    try:
        output, _ = run.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGTERM)  # the bench stops the services it started
        output, _ = run.communicate(timeout=60)
        pytest.fail(f"the quick benchmarks took over {TIMEOUT_SECONDS} s:\n{output[-3000:]}")
    finally:
        drop_databases(*(prefix + name for name in [*ALL_SERVICES, "baseline"]))
    assert run.returncode == 0, output[-6000:]
    yield {path.stem: json.loads(path.read_text()) for path in results_dir.glob("*.json")}


def test_every_benchmark_ran_at_its_quick_size(quick_results: dict[str, dict[str, Any]]) -> None:
    assert set(quick_results) == set(BENCHMARKS)
    assert all(result["quick"] for result in quick_results.values())


def test_the_documented_results_are_left_alone(quick_results: dict[str, dict[str, Any]]) -> None:
    """Each result names its command, and so the temporary directory: if the smoke run had
    written the committed results or the doc's table, that name would show up there."""
    smoke_command = quick_results["burst"]["command"]
    assert "--results-dir" in smoke_command
    documented = [ROOT / "docs" / "performance.md", *(ROOT / "bench" / "results").glob("*.json")]
    assert not [path for path in documented if smoke_command in path.read_text()]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_reports_a_value_for_every_target(
        quick_results: dict[str, dict[str, Any]], name: str) -> None:
    result = quick_results[name]
    assert result["status"] == "ok", result.get("reason")
    assert all(target["value"] is not None for target in result["targets"]), result["targets"]


def test_nothing_is_lost_under_the_quick_loads(quick_results: dict[str, dict[str, Any]]) -> None:
    burst = quick_results["burst"]["figures"]
    for system in ("as_deployed", "equal_weights", "replicas"):
        assert burst[system]["lost"] == 0 and burst[system]["dead_letters"] == 0, burst[system]
        assert all(b["dispatched"] == b["accepted"] == b["reports"]
                   for name, b in burst[system].items() if name.startswith("burst_"))
    latency = quick_results["dispatch_latency"]["figures"]
    assert latency["not_dispatched"] == 0 and latency["dead_letters"] == 0
    assert [(step["accepted"], step["not_dispatched"]) for step in latency["lower_rates"]] \
        == [(step["reports"], 0) for step in latency["lower_rates"]], \
        quick_results["dispatch_latency"]["notes"]
    lifecycle = quick_results["lifecycle"]["figures"]
    assert lifecycle["paid"] == lifecycle["accepted"] == lifecycle["reports"], \
        quick_results["lifecycle"]["notes"]  # they name what the vendor panel failed on
    assert lifecycle["payments_failed"] == 0 and lifecycle["dead_letters"] == 0
    assert lifecycle["cpu_ms_per_paid_claim"]["whole machine"] > 0
    throughput = quick_results["intake_throughput"]["figures"]
    assert throughput["intake"]["errors"] == 0 and throughput["baseline"]["errors"] == 0
