"""Sampling profiles of a running service with py-spy (attached by pid, non-blocking).

py-spy writes collapsed stacks (`frame;frame;frame count`, the format flamegraph.pl and
https://www.speedscope.app read); we add a plain-text summary of where the samples fall.
"""

from __future__ import annotations

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


def summarise(collapsed: Path, top: int = 30) -> str:
    """Where the samples are: by leaf function (self) and by any frame on the stack (total)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
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

    lines = [f"{samples} samples", ""]
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
