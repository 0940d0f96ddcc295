"""The benchmarks' CPU accounting (burst, dispatch latency): every process on the machine,
not only the services."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.system import machine_cpu_used, measuring_cpu_seconds, postgres_cpu_seconds


def test_the_services_total_and_the_whole_machine_are_summed_apart() -> None:
    before = {"intake": 1.0, "triage": 2.0, "broker": 5.0, "postgresql": 7.0, "measuring": 1.0}
    after = {"intake": 2.5, "triage": 4.0, "broker": 6.0, "postgresql": 9.0, "measuring": 1.5}

    used = machine_cpu_used(before, after, ["intake", "triage"])

    assert used == {"intake": 1.5, "triage": 2.0, "all services": 3.5, "broker": 1.0,
                    "postgresql": 2.0, "measuring": 0.5, "whole machine": 7.0}
    assert list(used)[:3] == ["intake", "triage", "all services"]


def test_a_process_without_both_readings_is_left_out() -> None:
    used = machine_cpu_used({"intake": 1.0, "postgresql": None},
                            {"intake": 2.0, "postgresql": 3.0}, ["intake"])

    assert used == {"intake": 1.0, "all services": 1.0, "whole machine": 1.0}


def test_the_measuring_process_counts_the_children_it_waited_for() -> None:
    before = measuring_cpu_seconds()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)

    assert measuring_cpu_seconds() - before >= 0.05


def test_the_local_postgresql_is_found() -> None:
    """The tests' PostgreSQL runs on this machine (`.ci/run` starts it)."""
    used = postgres_cpu_seconds()
    if used is None:
        pytest.skip("no PostgreSQL process visible on this machine")
    assert used > 0
