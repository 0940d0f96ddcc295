"""Sampling profiles of a running service with py-spy (attached by pid, non-blocking).

py-spy writes collapsed stacks (`frame;frame;frame count`, the format flamegraph.pl and
https://www.speedscope.app read); we add a plain-text summary of where the samples fall.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.common import RESULTS_DIR, Options


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def start_profile(pid: int, duration: float, output: Path, rate: int = 100
                  ) -> subprocess.Popen[bytes] | None:
    """Sample `pid` for `duration` seconds into `output` (collapsed stacks); None without py-spy."""
    binary = py_spy()
    if binary is None:
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(duration))),
         "--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def finish_profile(process: subprocess.Popen[bytes] | None, timeout: float = 60) -> str | None:
    """Wait for py-spy; returns its error output if it failed."""
    if process is None:
        return "py-spy is not installed (pip install py-spy)"
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return "py-spy did not finish"
    if process.returncode != 0:
        return stderr.decode(errors="replace")[-2000:]
    return None


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (module.py)` so lines of a function add up."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    return f"{name} ({'/'.join(Path(file).parts[-2:])})" if file else name


EVENT_LOOP_LEAVES = frozenset({"Runner.run (asyncio/runners.py)", "EpollSelector.select (selectors.py)"})
"""Leaf frames of the event loop itself: uvloop runs in C below `Runner.run`, the standard loop
waits in `select`. Mostly the loop waiting for I/O; on a machine short of CPU also a process
runnable but descheduled there (py-spy samples it all the same), so it is counted apart."""


def summarise(collapsed: Path, top: int = 30) -> str:
    """Where the samples are: by leaf function (self) and by any frame on the stack (total),
    the event loop's own frames (`EVENT_LOOP_LEAVES`) counted apart."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    samples = in_loop = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        if frames[-1] in EVENT_LOOP_LEAVES:
            in_loop += count
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
        leaf_file = frames[-1].rpartition("(")[2].rstrip(")")
        by_file[leaf_file.split("/")[0] if "/" in leaf_file else leaf_file] += count
    if samples == 0:
        return "no samples\n"

    def table(title: str, counter: Counter[str]) -> list[str]:
        lines = [title]
        for frame, count in counter.most_common(top):
            lines.append(f"  {100 * count / samples:5.1f}%  {frame}")
        return lines

    lines = [f"{samples} samples, {100 * in_loop / samples:.0f}% in the event loop (waiting, "
             "or descheduled)", ""]
    lines += [*table("Self time (leaf frame):", own), ""]
    lines += [*table("Total time (frame anywhere on the stack):", total), ""]
    lines += table("Self time by package (leaf frame's directory):", by_file)
    return "\n".join(lines) + "\n"


def profile_note(options: Options, service: str, benchmark: str, error: str | None) -> str:
    """Summarise `<results>/<service>_profile.collapsed` (written by `start_profile`) into
    `<service>_profile.txt`; the note saying where it is, or why there is none."""
    collapsed = options.results_dir / f"{service}_profile.collapsed"
    if error or not collapsed.exists():
        return f"profiling failed: {error}"
    summary = options.results_dir / f"{service}_profile.txt"
    label = "quick run" if options.quick else "full run"
    summary.write_text(f"py-spy profile of {service} under {benchmark} ({label}; "
                       f"command: {options.command})\n\n" + summarise(collapsed))
    repository = RESULTS_DIR.parent.parent
    shown = summary.relative_to(repository) if summary.is_relative_to(repository) else summary
    return f"profile of {service} written to {shown}"


class ProfileSet:
    """py-spy on several processes at once, each into results/profile_<process>.txt (a summary
    of its own top frames; the collapsed stacks beside it, for a flame graph)."""

    def __init__(self, options: Options, benchmark: str, rate: int = 50) -> None:
        self.options = options
        self.benchmark = benchmark
        self.rate = rate
        self._running: dict[str, subprocess.Popen[bytes] | None] = {}

    def _collapsed(self, name: str) -> Path:
        return self.options.results_dir / f"profile_{name.replace(' ', '_')}.collapsed"

    def start(self, pids: dict[str, int], duration: float) -> None:
        for name, pid in pids.items():
            self._running[name] = start_profile(pid, duration, self._collapsed(name), self.rate)

    async def finish(self) -> str | None:
        """Wait for every profile; a note naming where they are (None if none was taken)."""
        if not self._running:
            return None
        written, failed = [], []
        label = "quick run" if self.options.quick else "full run"
        for name, process in self._running.items():
            error = await asyncio.to_thread(finish_profile, process)
            collapsed = self._collapsed(name)
            if error or not collapsed.exists():
                failed.append(f"{name}: {(error or 'no output')[:200]}")
                continue
            summary = collapsed.with_suffix(".txt")
            summary.write_text(f"py-spy profile of {name} under {self.benchmark} ({label}; "
                               f"command: {self.options.command})\n\n"
                               + summarise(collapsed, top=15))
            written.append(summary.name)
        repository = RESULTS_DIR.parent.parent
        where = self.options.results_dir
        shown = where.relative_to(repository) if where.is_relative_to(repository) else where
        note = f"profiles written to {shown}: {', '.join(written)}"
        return note + (f"; failed: {'; '.join(failed)}" if failed else "")
