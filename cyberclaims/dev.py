"""`cyberclaims dev`: the whole system on embedded defaults, as child processes.

Order: broker, topics, the databases (the embedded PostgreSQL unless a server is configured,
`cyberclaims.postgres`; each service's database created when missing, then migrated), a check
that the broker still holds what the databases saw (`cyberclaims.broker.check_kept_state`),
then every service (API, consumer and relay in one process each), each awaited on /readyz.
Output is prefixed per process; Ctrl-C (or SIGTERM, or the terminal closing: SIGHUP) waits (a
few seconds at most) until the system is drained, records whether it was, and stops all. Should
the supervisor die without that (SIGKILL), every child is sent its stop signal by the kernel (a
parent-death signal): none outlives it and holds its port. A run that finds its ports taken
names what holds them and stops before starting anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from cyberclaims.broker import (
    BROKER_STORE,
    broker_command,
    check_kept_state,
    create_bucket,
    object_store_env,
    port_in_use,
    record_drained,
    wait_for_port,
)
from cyberclaims.doctor import collect
from cyberclaims.postgres import (
    EMBEDDED_DATA,
    ensure_databases,
    initialise,
    server_command,
    unprivileged,
)
from cyberclaims.postgres import STOP_SIGNAL as POSTGRES_STOP_SIGNAL
from cyberclaims.registry import ServiceEntry, available_services
from services.notify.settings import NotifySettings
from services.payout.settings import PayoutSettings
from shared.clock import SystemClock
from shared.kafka import ensure_topics
from shared.migrations import migrate
from shared.settings import DATA_DIR, PlatformSettings
from shared.signing import development_signer

DRAIN_TIMEOUT_SECONDS = 15.0
OBJECT_STORE_PORT = "CYBERCLAIMS_OBJECT_STORE_PORT"
"""The variable naming the port of the broker's storage (cyberclaims.sandbox.objectstore)."""
DEFAULT_OBJECT_STORE_PORT = 8011
PR_SET_PDEATHSIG = 1  # prctl(2), <linux/prctl.h>
COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m", "\033[37m"]
RESET = "\033[0m"
LOCAL_WEBHOOKS = {"NOTIFY_WEBHOOK_ALLOWLIST": "127.0.0.1"}
"""`make run`'s default: the demo's webhook receiver listens on loopback, which notify calls
only when allow-listed (the variable, when set, wins)."""


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str | None = None
    port: int | None = None
    env: dict[str, str] | None = None
    before_exec: Callable[[], None] | None = None
    """What the child runs first (the embedded PostgreSQL's `unprivileged`)."""
    stop_signal: signal.Signals = signal.SIGTERM


class Supervisor:
    def __init__(self, echo: bool = True) -> None:
        self.processes: list[tuple[Child, subprocess.Popen[bytes]]] = []
        self.width = 8
        self.echo = echo
        self.output: list[str] = []

    def start(self, child: Child) -> subprocess.Popen[bytes]:
        """Start `child` in a session of its own (Ctrl-C reaches the supervisor alone, which
        drains before it stops the children), bound to die with the calling thread."""
        colour = COLOURS[len(self.processes) % len(COLOURS)]
        process = subprocess.Popen(child.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=child.env,
                                   preexec_fn=dying_with(os.getpid(), child.stop_signal,
                                                         child.before_exec))
        self.processes.append((child, process))
        prefix = f"{colour}{child.name:<{self.width}}|{RESET} "
        threading.Thread(target=self._pump, args=(process, prefix), daemon=True).start()
        return process

    def stop(self) -> None:
        for child, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, child.stop_signal)
        deadline = time.monotonic() + 10
        for _, process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

    def _pump(self, process: subprocess.Popen[bytes], prefix: str) -> None:
        """Copy a child's output, prefixed; kept in memory instead when not echoing (tests)."""
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            text = prefix + line.decode(errors="replace")
            if self.echo:
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                self.output.append(text)

    def crashed(self) -> str | None:
        for child, process in self.processes:
            if process.poll() is not None:
                return f"{child.name} exited with code {process.returncode}"
        return None


def dying_with(parent: int, stop_signal: signal.Signals = signal.SIGTERM,
               before: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """What a child runs before its program (Linux): `before`, then ask the kernel for
    `stop_signal` when the thread that started it dies, however it dies (SIGKILL included), and
    end at once should `parent` already be gone (after `before`: a change of credentials
    clears the request). Elsewhere, `before` alone: `stop` remains the only way children end."""
    if not sys.platform.startswith("linux"):
        return before
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls it

    def bind() -> None:
        if before is not None:
            before()
        libc.prctl(PR_SET_PDEATHSIG, stop_signal)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return bind


def stack_ports(platform: PlatformSettings, start_broker: bool) -> dict[int, str]:
    """Every port `run_dev` listens on, and what listens there: where the services and the
    stand-ins are configured to be (each movable by its variable)."""
    ports = {port_of(PayoutSettings().payment_provider_url): "payments",
             NotifySettings().smtp_port: "smtp"}
    embedded = embedded_postgres_port(available_services())
    if embedded is not None:
        ports[embedded] = "postgres"
    if start_broker:
        ports[port_of(f"tcp://{platform.kafka_bootstrap}")] = "broker"
        ports[object_store_port()] = "objects"
    for entry in available_services():
        ports[entry.settings().port] = entry.name
    return ports


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def object_store_port() -> int:
    return int(os.environ.get(OBJECT_STORE_PORT, DEFAULT_OBJECT_STORE_PORT))


def refuse_stale_stack(ports: dict[int, str]) -> None:
    """Stop before starting anything when a port of the stack is taken (most often by the
    children of an earlier run that did not stop), naming the ports and the processes."""
    taken = sorted(port for port in ports if port_in_use(port))
    if not taken:
        return
    holders = listening_processes(set(taken))
    lines = [f"  {port:<5} ({ports[port]}): "
             + (", ".join(f"pid {pid} {command}" for pid, command in holders.get(port, []))
                or "held by a process this user cannot see")
             for port in taken]
    pids = sorted({pid for found in holders.values() for pid, _ in found})
    raise SystemExit(
        "cannot start: ports of the stack are in use, most likely by an earlier `make run` "
        "that did not stop:\n" + "\n".join(lines) + "\n"
        + (f"Stop it (`kill {' '.join(map(str, pids))}`), then run `make run` again; "
           if pids else "Stop what holds them, then run `make run` again; ")
        + "or move this run to other ports (CYBERCLAIMS_KAFKA_BOOTSTRAP, "
          "CYBERCLAIMS_EMBEDDED_POSTGRES_PORT, "
          f"{OBJECT_STORE_PORT}, INTAKE_PORT ..., PAYOUT_PAYMENT_PROVIDER_URL, NOTIFY_SMTP_PORT).")


def listening_processes(ports: set[int]) -> dict[int, list[tuple[int, str]]]:
    """Which of this user's processes listen on `ports` (Linux /proc; empty elsewhere)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[3] == "0A" and port in ports:  # 0A: LISTEN
                    inodes[f"socket:[{fields[9]}]"] = port
    found: dict[int, list[tuple[int, str]]] = {}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                port = inodes.get(os.readlink(fd), 0)
                if port:
                    pid = int(fd_dir.parent.name)
                    command = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                    found.setdefault(port, []).append((pid, command.decode(errors="replace")
                                                       .strip()[:80]))
                    break
    return found


def wait_ready(url: str, supervisor: Supervisor, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crashed = supervisor.crashed()
        if crashed:
            raise RuntimeError(crashed)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cyberclaims.cli", *args]


def extra_children() -> list[Child]:
    """Development stand-ins for the outside world, when the project ships them."""
    from importlib.util import find_spec

    children = []
    payments, smtp = port_of(PayoutSettings().payment_provider_url), NotifySettings().smtp_port
    if find_spec("cyberclaims.sandbox.payments"):
        children.append(Child("payments", cli_argv("sandbox-payments", "--port", str(payments)),
                              f"http://127.0.0.1:{payments}/healthz", payments))
    if find_spec("cyberclaims.sandbox.smtp"):
        children.append(Child("smtp", cli_argv("smtp-sink", "--port", str(smtp)), None, smtp))
    return children


def drained(bootstrap: str, databases: dict[str, str], timeout: float = DRAIN_TIMEOUT_SECONDS
            ) -> bool:
    """Wait until every outbox row is published and every consumer group caught up."""
    deadline = time.monotonic() + timeout
    while True:
        report = asyncio.run(collect(bootstrap, databases, SystemClock()))
        if (report.broker_error is None
                and all(h.error is None and h.outbox_pending == 0 for h in report.services.values())
                and not any(sum(topics.values()) for topics in report.lag.values())):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def embedded_postgres_port(services: Iterable[ServiceEntry]) -> int | None:
    """The embedded PostgreSQL's port when a service's database is on it, else None."""
    return next((settings.embedded_postgres_port
                 for settings in (entry.settings() for entry in services)
                 if settings.uses_embedded_postgres), None)


def prepare_databases(supervisor: Supervisor, databases: Mapping[str, str],
                      embedded_port: int | None, embedded_data: Path = EMBEDDED_DATA) -> None:
    """Start the embedded PostgreSQL on `embedded_port` (its data in `embedded_data`) unless
    that is None, create each service's database (`databases`: the URLs by service) when
    missing, and migrate each."""
    if embedded_port is not None:
        initialise(embedded_data)
        supervisor.start(Child("postgres", server_command(embedded_data, embedded_port),
                               before_exec=unprivileged(), stop_signal=POSTGRES_STOP_SIGNAL))
        wait_for_port(embedded_port)
    ensure_databases(databases.values())
    for name, url in databases.items():
        print(f"migrating {name} ...", flush=True)
        migrate(name, url)


def database_urls(services: Iterable[ServiceEntry]) -> dict[str, str]:
    return {entry.name: entry.settings().resolved_database_url(entry.name)
            for entry in services}


def run_dev(start_broker: bool = True) -> None:
    platform = PlatformSettings()
    services = available_services()
    databases = database_urls(services)
    DATA_DIR.mkdir(exist_ok=True)
    if not platform.jwks_url:  # the services read the local key's JWKS: make sure it is there
        development_signer(platform)
    refuse_stale_stack(stack_ports(platform, start_broker))
    supervisor = Supervisor()
    for stop in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: drain, then stop the children
        signal.signal(stop, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if start_broker:
            port = port_of(f"tcp://{platform.kafka_bootstrap}")
            objects = object_store_port()
            store = f"http://127.0.0.1:{objects}"
            supervisor.start(Child("objects", cli_argv("object-store", "--port", str(objects),
                                                       "--root", str(BROKER_STORE))))
            wait_for_port(objects)
            create_bucket(store)
            supervisor.start(Child("broker", broker_command(port, durable=True),
                                   env={**os.environ, **object_store_env(store)}))
            wait_for_port(port)
        asyncio.run(ensure_topics(platform.kafka_bootstrap))
        stand_ins = extra_children()
        for child in stand_ins:
            supervisor.start(child)
            if child.ready_url:
                wait_ready(child.ready_url, supervisor)
            elif child.port:
                wait_for_port(child.port)
        prepare_databases(supervisor, databases, embedded_postgres_port(services))
        check_kept_state(platform.kafka_bootstrap, databases)
        urls = []
        for entry in services:
            settings = entry.settings()
            base = f"http://{settings.host}:{settings.port}"
            supervisor.start(Child(entry.name, cli_argv("serve", entry.name),
                                   env={**LOCAL_WEBHOOKS, **os.environ}))
            urls.append((entry.name, base))
        for _, base in urls:
            wait_ready(f"{base}/readyz", supervisor)
        _banner(urls, stand_ins)
        while True:
            crashed = supervisor.crashed()
            if crashed:
                raise SystemExit(crashed)
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nwaiting until every event is published and consumed ...", flush=True)
        settled = drained(platform.kafka_bootstrap, databases)
        record_drained(settled)
        print("stopping (drained) ..." if settled else
              "stopping, NOT drained: the broker keeps the events in flight under "
              f"{BROKER_STORE}, and the services take them up when they start again", flush=True)
    finally:
        supervisor.stop()


def _banner(urls: list[tuple[str, str]], stand_ins: list[Child]) -> None:
    """Where everything listens, read from what was started (every port can be moved)."""
    bases, ports = dict(urls), {child.name: child.port for child in stand_ins}
    lines = ["", "cyberclaims is running:"]
    lines += [f"  {name:<8} {base}   (API docs: {base}/docs)" for name, base in urls]
    if ports.get("payments"):
        lines.append(f"  payments http://127.0.0.1:{ports['payments']}   (sandbox payment provider)")
    if ports.get("smtp"):
        lines.append(f"  mail     smtp://127.0.0.1:{ports['smtp']} -> .data/mail/*.eml   (SMTP sink)")
    if "payout" in bases:
        lines.append(f"  console  {bases['payout']}/console   (adjusters)")
    operations = [f"{bases[name]}/operations" for name in ("payout", "triage", "notify")
                  if name in bases]
    if operations:
        lines.append(f"  operations {', '.join(operations)}   (operators)")
    lines += [
        "",
        "Try it in another terminal (README, 'Quick start'):",
        "  make demo",
        "or, by hand: the curl commands of the README's quick start.",
        "",
        "Stop with Ctrl-C.",
        "",
    ]
    print("\n".join(lines), flush=True)
