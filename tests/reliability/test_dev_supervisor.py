"""`make run` (`cyberclaims dev`) leaves nothing behind: SIGKILL its supervisor (or close its
terminal: SIGHUP) and its broker, object store, embedded PostgreSQL, stand-ins and services are
gone within seconds, their ports free; a run that meets a stale stack on its ports says so and
starts nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cyberclaims.broker import port_in_use
from cyberclaims.dev import OBJECT_STORE_PORT, cli_argv
from cyberclaims.registry import SERVICES
from tests.support.infra import free_port
from tests.support.service import TEST_ISSUER, provider_jwks_url

pytestmark = pytest.mark.slow
STARTED = "cyberclaims is running:"
GONE_WITHIN_SECONDS = 10.0


@contextmanager
def dev_stack(workdir: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, int], list[str],
                                               set[int]]]:
    """`cyberclaims dev` in `workdir` (its own .data) on free ports; yields the supervisor, the
    ports, its output so far and a set for the children the test saw. Whatever of them is left
    at the end is killed (the test failed)."""
    ports = {name: free_port() for name in
             [*(entry.name for entry in SERVICES), "broker", "objects", "postgres", "payments", "smtp"]}
    supervisor = subprocess.Popen(cli_argv("dev"), cwd=workdir, env=stack_env(ports), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[str] = []
    assert supervisor.stdout is not None
    threading.Thread(target=lambda: output.extend(iter(supervisor.stdout.readline, "")),
                     daemon=True).start()
    seen: set[int] = set()
    try:
        yield supervisor, ports, output, seen
    finally:
        for pid in seen | descendants(supervisor.pid):
            kill(pid)
        kill(supervisor.pid)
        supervisor.wait(timeout=10)


def stack_env(ports: dict[str, int]) -> dict[str, str]:
    """Every port of the stack moved, through the variables the services and stand-ins read."""
    return {**os.environ, "CYBERCLAIMS_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['broker']}",
            OBJECT_STORE_PORT: str(ports["objects"]),
            "CYBERCLAIMS_EMBEDDED_POSTGRES_PORT": str(ports["postgres"]),
            "PAYOUT_PAYMENT_PROVIDER_URL": f"http://127.0.0.1:{ports['payments']}",
            "NOTIFY_SMTP_PORT": str(ports["smtp"]), "CYBERCLAIMS_JWKS_URL": provider_jwks_url(),
            "CYBERCLAIMS_JWT_ISSUER": TEST_ISSUER,
            **{f"{entry.name.upper()}_PORT": str(ports[entry.name]) for entry in SERVICES}}


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (from /proc: children are in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_gone(children: set[int], output: list[str]) -> None:
    """Every one of `children` ends within `GONE_WITHIN_SECONDS`; else the failure names the
    ones left, with their command lines."""
    deadline = time.monotonic() + GONE_WITHIN_SECONDS
    while left := [pid for pid in children if alive(pid)]:
        if time.monotonic() >= deadline:
            named = "\n".join(f"  {pid}: {command_line(pid)}" for pid in sorted(left))
            raise AssertionError(f"children outlived the supervisor after "
                                 f"{GONE_WITHIN_SECONDS}s:\n{named}\n{''.join(output[-60:])}")
        time.sleep(0.2)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "(gone)"


def wait_until(condition: Callable[[], bool], timeout: float, what: str, output: list[str]
               ) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {timeout}s:\n{''.join(output[-60:])}"
        time.sleep(0.2)


def test_a_stale_stack_is_named_and_a_killed_supervisor_leaves_nothing(tmp_path: Path) -> None:
    with dev_stack(tmp_path) as (supervisor, ports, output, seen):
        wait_until(lambda: any(STARTED in line for line in output)
                   or supervisor.poll() is not None, 240, "the stack did not start", output)
        assert supervisor.poll() is None, "".join(output[-60:])
        # The banner says where things listen, every port moved.
        for where in (f":{ports['payout']}/console", f":{ports['payments']}   (sandbox",
                      f"smtp://127.0.0.1:{ports['smtp']} ", f":{ports['triage']}/operations"):
            wait_until(lambda where=where: any(where in line for line in output), 10,
                       f"the banner does not name {where}", output)
        children = descendants(supervisor.pid)
        seen.update(children)
        assert len(children) >= len(ports) - 1  # every service, the stand-ins, the broker
        assert all(port_in_use(port) for port in ports.values())

        # A second run on the same ports finds them taken, names the holders, starts nothing.
        intake = next(pid for pid in children if b"serve\0intake" in
                      Path(f"/proc/{pid}/cmdline").read_bytes())
        second = subprocess.run(cli_argv("dev"), cwd=tmp_path, env=stack_env(ports),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "ports of the stack are in use" in second.stderr, second.stderr
        assert f"{ports['intake']} (intake): pid {intake}" in second.stderr, second.stderr
        assert f"{ports['broker']} (broker)" in second.stderr, second.stderr
        assert f"{ports['postgres']} (postgres)" in second.stderr, second.stderr
        assert STARTED not in second.stdout

        # The supervisor killed hard: the kernel stops its children.
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=5)
        wait_gone(children, output)
        wait_until(lambda: not any(port_in_use(port) for port in ports.values()),
                   GONE_WITHIN_SECONDS, "ports still held", output)


def test_a_closed_terminal_stops_the_stack_as_ctrl_c_does(tmp_path: Path) -> None:
    """SIGHUP (the terminal closed): drain, then stop every child, then exit."""
    with dev_stack(tmp_path) as (supervisor, ports, output, seen):
        wait_until(lambda: any(STARTED in line for line in output)
                   or supervisor.poll() is not None, 240, "the stack did not start", output)
        children = descendants(supervisor.pid)
        seen.update(children)

        supervisor.send_signal(signal.SIGHUP)
        supervisor.wait(timeout=60)
        assert any("stopping" in line for line in output), "".join(output[-60:])
        wait_gone(children, output)
        wait_until(lambda: not any(port_in_use(port) for port in ports.values()),
                   GONE_WITHIN_SECONDS, "ports still held", output)
