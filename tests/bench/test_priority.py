"""How the benchmarks share the CPU: the stand-ins for outside systems yield it to the services
under test, and the services share it as their Kubernetes CPU requests weigh them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import HARNESS_NICENESS, lower_priority
from bench.system import (
    ALL_SERVICES,
    System,
    cpu_request,
    cpu_weights_description,
    millicores,
    niceness_as_deployed,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _group_niceness(pid: int | str) -> str | None:
    """The niceness of a process's scheduling group ("/autogroup-<n> nice <n>"), or None where
    autogroup does not schedule it: a kernel without autogroup, or a process in a CPU cgroup of
    its own (a container's), for which the kernel prints nothing."""
    group = Path(f"/proc/{pid}/autogroup")
    if not group.exists():
        return None
    shown = group.read_text().split()
    return shown[-1] if shown else None


def test_a_stand_in_is_niced_with_its_session_group() -> None:
    own_before = _group_niceness("self")
    stand_in = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        lower_priority(stand_in.pid)
        assert os.getpriority(os.PRIO_PROCESS, stand_in.pid) == HARNESS_NICENESS
        if own_before is not None:
            assert _group_niceness(stand_in.pid) == str(HARNESS_NICENESS)
        assert _group_niceness("self") == own_before  # the measuring process keeps its own
    finally:
        stand_in.kill()
        stand_in.wait()


def test_only_a_session_leader_is_niced() -> None:
    """Its group is its session's: niced from a process sharing the caller's session, it
    would slow the measuring process down too."""
    child = subprocess.Popen(SLEEPER)
    try:
        with pytest.raises(ValueError, match="session"):
            lower_priority(child.pid)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        child.kill()
        child.wait()


def test_the_system_spawns_at_the_niceness_given() -> None:
    system = System([])
    try:
        stand_in = system._spawn("stand-in", SLEEPER, niceness=HARNESS_NICENESS)
        service = system._spawn("service", SLEEPER)
        assert os.getpriority(os.PRIO_PROCESS, stand_in.pid) == HARNESS_NICENESS
        if _group_niceness("self") is not None:
            assert _group_niceness(stand_in.pid) == str(HARNESS_NICENESS)
            assert _group_niceness(service.pid) == "0"
        assert os.getpriority(os.PRIO_PROCESS, service.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        system.stop()


def test_the_services_are_niced_as_their_kubernetes_cpu_requests_weigh_them() -> None:
    """Intake and triage request 500m, payout, notify and insights 100m (deploy/k8s/base): a
    fifth of the weight, which niceness 7 gives (1024 against 215 in the kernel's table)."""
    assert {name: cpu_request(name) for name in ALL_SERVICES} == {
        "intake": 500, "triage": 500, "payout": 100, "notify": 100, "insights": 100}
    assert niceness_as_deployed(ALL_SERVICES) == {"intake": 0, "triage": 0, "payout": 7,
                                                  "notify": 7, "insights": 7}
    assert niceness_as_deployed(["payout"]) == {"payout": 0}  # alone, nothing to yield to
    assert cpu_weights_description(["intake", "notify"]) == (
        "where services share the machine, weighed by their Kubernetes CPU requests: "
        "intake 500m, notify 100m (nice 7)")


@pytest.mark.parametrize(("quantity", "expected"), [("500m", 500), ("1", 1000), ("0.25", 250),
                                                    ("2", 2000)])
def test_cpu_quantities_in_millicores(quantity: str, expected: int) -> None:
    assert millicores(quantity) == expected
