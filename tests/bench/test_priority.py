"""The benchmarks' stand-ins for outside systems yield the CPU to the services under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.common import HARNESS_NICENESS, lower_priority


def test_a_stand_in_is_niced_with_its_session_group() -> None:
    own_group = Path("/proc/self/autogroup")
    own_before = own_group.read_text() if own_group.exists() else None
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                start_new_session=True)
    try:
        lower_priority(stand_in.pid)
        assert os.getpriority(os.PRIO_PROCESS, stand_in.pid) == HARNESS_NICENESS
        group = Path(f"/proc/{stand_in.pid}/autogroup")
        if group.exists():  # a kernel with autogroup: "/autogroup-<n> nice <n>"
            assert group.read_text().split()[-1] == str(HARNESS_NICENESS)
            assert own_group.read_text() == own_before  # the measuring process keeps its own
    finally:
        stand_in.kill()
        stand_in.wait()
