"""The system under test, as in production: a Tansu broker, one fresh PostgreSQL database per
service, and each service its own process (`python -m cyberclaims.cli serve <name>`).

Everything listens on free ports, so a benchmark never collides with `make run` or the tests.
Databases are named `cyberclaims_bench_<service>`: dropped and recreated at the start of each
benchmark, kept afterwards for inspection. `CYBERCLAIMS_BENCH_DATABASE_PREFIX` replaces
`cyberclaims_bench_` (the tests' smoke run uses its own, so it never drops a running
benchmark's databases).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import yaml

from bench.common import HARNESS_NICENESS, lower_priority
from cyberclaims.broker import broker_command, wait_for_port
from cyberclaims.registry import SERVICES
from shared.kafka import ensure_topics
from shared.settings import DATA_DIR, PlatformSettings
from shared.signing import TokenSigner, local_signer

SIGNING_KEY = (DATA_DIR / "bench" / "signing-key.pem").resolve()
"""The benchmark's token key (created on first use); its services read the JWKS next to it."""


def token_service() -> TokenSigner:
    """Signs with the benchmark's key, whose JWKS its services read. `System.start` calls it
    first: a service that started before the key existed found no JWKS and refused the first
    tokens until its next look-up of the keys."""
    return local_signer(SIGNING_KEY, issuer=PlatformSettings().jwt_issuer)
ALL_SERVICES = [entry.name for entry in SERVICES]
STAND_INS = ("payments", "smtp")
"""Stand-ins for outside systems: the sandbox bank and the SMTP sink."""
STAND_IN_START_SECONDS = 120.0
"""How long a niced stand-in may take to listen: on a machine busy with other work, Python's
start at nice 10 took over 30 s."""


DEPLOYMENTS = Path(__file__).resolve().parents[1] / "deploy" / "k8s" / "base"
NICENESS_WEIGHT_STEP = 1.25
"""Each step of niceness divides a process's CPU weight by about 1.25 (the kernel's
`sched_prio_to_weight`), for a session's autogroup as for a process."""


def millicores(quantity: str) -> int:
    """A Kubernetes CPU quantity (`500m`, `1`, `0.5`) in millicores."""
    return int(quantity[:-1]) if quantity.endswith("m") else round(float(quantity) * 1000)


def cpu_request(service: str) -> int:
    """The CPU, in millicores, that `service`'s Kubernetes Deployment requests (deploy/k8s/base)."""
    deployment = yaml.safe_load((DEPLOYMENTS / service / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return millicores(str(container["resources"]["requests"]["cpu"]))


def niceness_as_deployed(services: list[str]) -> dict[str, int]:
    """Each service's niceness, so that on this machine the services share the CPU under
    contention as they do on a Kubernetes node: by the weight of their CPU requests.

    A pod's CPU request sets its cgroup's weight; here each service leads a session of its own,
    whose autogroup weight its niceness sets. The dispatch path (intake, triage) requests five
    times what payout and notify request, so those two run at niceness 7 (weight 1/4.8)."""
    return _niceness({name: cpu_request(name) for name in services})


def _niceness(requests: dict[str, int]) -> dict[str, int]:
    heaviest = max(requests.values(), default=0)
    return {name: min(19, round(math.log(heaviest / request, NICENESS_WEIGHT_STEP)))
            for name, request in requests.items()}


def cpu_weights_description(services: list[str]) -> str:
    """How the services share the CPU, for the results."""
    requests = {name: cpu_request(name) for name in services}
    niceness = _niceness(requests)
    weights = (f"{name} {requests[name]}m" + (f" (nice {niceness[name]})" if niceness[name]
                                              else "") for name in services)
    return ("where services share the machine, weighed by their Kubernetes CPU requests: "
            + ", ".join(weights))


def bench_database(name: str) -> str:
    """The name of a benchmark's database `name` (a service, or "baseline")."""
    return os.environ.get("CYBERCLAIMS_BENCH_DATABASE_PREFIX", "cyberclaims_bench_") + name


def postgres_admin_dsn() -> str:
    """Where bench databases are created (trust auth on the bench machine)."""
    return os.environ.get("CYBERCLAIMS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_built(name: str) -> bool:
    return importlib.util.find_spec(f"services.{name}.app") is not None


def sandbox_built(name: str) -> bool:
    return importlib.util.find_spec(f"cyberclaims.sandbox.{name}") is not None


async def _recreate_database(name: str) -> str:
    admin = postgres_admin_dsn()
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return admin.rsplit("/", 1)[0] + f"/{name}"


def fresh_database(name: str) -> str:
    """Drop and create database `name`; returns its plain (asyncpg) DSN."""
    return asyncio.run(_recreate_database(name))


async def _autovacuum_on() -> bool:
    connection = await asyncpg.connect(postgres_admin_dsn())
    try:
        return bool(await connection.fetchval("SELECT current_setting('autovacuum')::boolean"))
    finally:
        await connection.close()


AUTOVACUUM_STAND_IN_SECONDS = 10.0
TABLES_DUE = """
SELECT name, vacuum_due FROM (
    SELECT format('%I.%I', s.schemaname, s.relname) AS name,
           s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0)
           OR s.n_ins_since_vacuum > 1000 + 0.2 * greatest(c.reltuples, 0) AS vacuum_due,
           s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0) AS analyze_due
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
) AS tables
WHERE vacuum_due OR analyze_due
ORDER BY name
"""
"""The tables autovacuum would take up, by its default thresholds (PostgreSQL 15): vacuum past
50 dead rows plus a fifth of the table, or 1,000 inserted rows plus a fifth; analyze past 50
changed rows plus a tenth."""


class AutovacuumStandIn:
    """Vacuums and analyzes, every `interval` seconds, the tables of the benchmark's databases
    that autovacuum would, when the server runs without it.

    This machine's PostgreSQL has autovacuum off (its CI configuration,
    /etc/postgresql/15/main/conf.d/90-ci.conf); production's has it on. Without it no table is
    ever analyzed: the plans a service prepared while its tables were empty stay as they grow
    (intake's relay marked rows sent by a sequential scan of its outbox, 25 to 43 ms a pass
    after 30 s of load, under 1 ms with the table analyzed), and dead row versions stay in the
    indexes, so each event costs PostgreSQL more as a run goes on. Autovacuum visits a database
    once a minute; the stand-in goes every 10 s because the benchmark's tables grow from empty
    within seconds, where production's were analyzed at their working size long before. Like
    autovacuum it takes only the tables past its thresholds (`TABLES_DUE`): a `VACUUM
    (ANALYZE)` of a whole database, its catalogs included, cost PostgreSQL about half a second
    of CPU per round of six nearly empty databases, 5 % of a core with nothing happening. One
    connection per database for the whole run, so its work counts in PostgreSQL's CPU."""

    def __init__(self, interval: float = AUTOVACUUM_STAND_IN_SECONDS) -> None:
        self.interval = interval
        self.databases: list[str] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start, unless the server's own autovacuum runs; whether it started."""
        if asyncio.run(_autovacuum_on()):
            return False
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),),
                                        name="autovacuum stand-in", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            if self._thread.is_alive():
                print("the autovacuum stand-in is still in a VACUUM; left to finish", flush=True)

    async def _run(self) -> None:
        connections: dict[str, asyncpg.Connection] = {}
        try:
            while not await asyncio.to_thread(self._stopping.wait, self.interval):
                for dsn in list(self.databases):
                    try:
                        if dsn not in connections:
                            connections[dsn] = await asyncpg.connect(dsn)
                        await _maintain(connections[dsn])
                    except Exception as exc:  # e.g. the database dropped: try again next time
                        print(f"autovacuum stand-in: {exc!r}", flush=True)
                        if (failed := connections.pop(dsn, None)) is not None:
                            failed.terminate()
        finally:
            for connection in connections.values():
                await connection.close()


async def _maintain(connection: asyncpg.Connection) -> None:
    """Vacuum (and analyze) or only analyze each table autovacuum would take up now."""
    for table in await connection.fetch(TABLES_DUE):
        await connection.execute(f"{'VACUUM (ANALYZE)' if table['vacuum_due'] else 'ANALYZE'} "
                                 f"{table['name']}")


def autovacuum_description() -> str:
    """How the benchmark's databases are vacuumed and analyzed, for the results."""
    try:
        autovacuum_on = asyncio.run(_autovacuum_on())
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable ({type(exc).__name__})"
    if autovacuum_on:
        return "PostgreSQL's autovacuum"
    return (f"autovacuum is off on this server: a stand-in vacuums and analyzes every "
            f"{AUTOVACUUM_STAND_IN_SECONDS:g} s")


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process, from /proc (None once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a process has used so far."""
    try:
        return _cpu_seconds_in(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None


def _cpu_seconds_in(stat: str) -> float:
    """User plus system CPU time, from the text of a `/proc/<pid>/stat`."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float | None:
    """CPU time so far of the PostgreSQL processes running on this machine (the server and
    its backends), None if there are none (the benchmark's PostgreSQL runs elsewhere). The
    services keep their connections pooled, so a backend seldom ends between two readings
    and takes its CPU time with it."""
    used = []
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = path.read_text()
        except OSError:  # the process ended meanwhile
            continue
        if stat.startswith(f"{path.parent.name} (postgres)"):
            used.append(_cpu_seconds_in(stat))
    return sum(used) if used else None


def measuring_cpu_seconds() -> float:
    """CPU time so far of this process (the benchmark's watcher) and of the children it has
    waited for (the load generators, once joined)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class System:
    """Start the broker and the chosen services; `stop()` ends every process it started."""

    def __init__(self, services: list[str], *, payments: bool = False, smtp: bool = False,
                 extra_env: dict[str, str] | None = None, equal_weights: bool = False,
                 replicas: dict[str, int] | None = None) -> None:
        """`equal_weights`: every service at niceness 0 instead of weighed by its CPU request;
        `replicas`: how many processes of a service run (default one each), sharing its
        database and its consumer group, each on a port of its own."""
        self.services = services
        self.equal_weights = equal_weights
        self.instances = {name: [name] + [f"{name}-{i}" for i in range(2, 1 + (replicas or {})
                                                                      .get(name, 1))]
                          for name in services}
        self.want_payments = payments
        self.want_smtp = smtp
        self.workdir = Path(tempfile.mkdtemp(prefix="cyberclaims-bench-"))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        replica_names = [instance for names in self.instances.values() for instance in names[1:]]
        self.ports = {name: free_port()
                      for name in [*ALL_SERVICES, *replica_names, *STAND_INS, "broker"]}
        self.bootstrap = f"127.0.0.1:{self.ports['broker']}"
        self.urls = {name: f"http://127.0.0.1:{self.ports[name]}" for name in self.ports}
        self.database_urls: dict[str, str] = {}
        self.autovacuum = AutovacuumStandIn()
        self.env = {
            **os.environ,
            "CYBERCLAIMS_ENV": "development",
            "CYBERCLAIMS_SIGNING_KEY_FILE": str(SIGNING_KEY),
            "CYBERCLAIMS_KAFKA_BOOTSTRAP": self.bootstrap,
            "CYBERCLAIMS_LOG_LEVEL": "WARNING",
            "CYBERCLAIMS_RATE_LIMITS": "false",  # the load generator is one address
            "PAYOUT_PAYMENT_PROVIDER_URL": self.urls["payments"],
            "NOTIFY_SMTP_HOST": "127.0.0.1",
            "NOTIFY_SMTP_PORT": str(self.ports["smtp"]),
            **(extra_env or {}),
        }

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> System:
        if self.processes:
            return self  # already running
        token_service()  # the key and its JWKS, before any service reads them
        try:
            self._spawn("broker", broker_command(self.ports["broker"]))
            wait_for_port(self.ports["broker"])
            asyncio.run(ensure_topics(self.bootstrap))
            for name in self.services:
                dsn = fresh_database(bench_database(name))
                self.database_urls[name] = dsn
                prefix = name.upper()
                self.env[f"{prefix}_DATABASE_URL"] = sqlalchemy_url(dsn)
                self.env[f"{prefix}_PORT"] = str(self.ports[name])
                self.env[f"{prefix}_HOST"] = "127.0.0.1"
                subprocess.run(cli_argv("migrate", name), env=self.env, check=True,
                               capture_output=True)
            # The sandbox bank and the SMTP sink run elsewhere in production: below everything.
            if self.want_payments and sandbox_built("payments"):
                self._spawn("payments", cli_argv("sandbox-payments", "--port",
                                                 str(self.ports["payments"])),
                            niceness=HARNESS_NICENESS)
                wait_for_port(self.ports["payments"], timeout=STAND_IN_START_SECONDS)
            if self.want_smtp and sandbox_built("smtp"):
                self._spawn("smtp", cli_argv("smtp-sink", "--port", str(self.ports["smtp"]),
                                             "--maildir", str(self.workdir / "mail")),
                            niceness=HARNESS_NICENESS)
                wait_for_port(self.ports["smtp"], timeout=STAND_IN_START_SECONDS)
            self.autovacuum.databases.extend(self.database_urls.values())
            self.autovacuum.start()
            niceness = ({name: 0 for name in self.services} if self.equal_weights
                        else niceness_as_deployed(self.services))
            for name in self.services:
                for instance in self.instances[name]:
                    env = {**self.env, f"{name.upper()}_PORT": str(self.ports[instance])}
                    self._spawn(instance, cli_argv("serve", name), env, niceness=niceness[name])
            for instance in self.instance_names():
                self.wait_ready(instance)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """Start another process (e.g. the baseline app) that `stop()` will end."""
        return self._spawn(name, argv, env)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, *,
               niceness: int = 0) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(log)
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   env=env or self.env, start_new_session=True)
        if niceness:
            # The child is still starting Python, so the threads it starts later inherit
            # its niceness.
            lower_priority(process.pid, niceness)
        self.processes[name] = process
        return process

    def wait_ready(self, name: str, path: str = "/readyz", timeout: float = 90.0) -> None:
        url = self.urls[name] + path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}:\n"
                                   + self.log_tail(name))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{url} not ready after {timeout}s:\n" + self.log_tail(name))

    def crashed(self) -> str | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return f"{name} exited with code {process.returncode}:\n{self.log_tail(name)}"
        return None

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """End every process; the working directory (logs, mail) goes too unless a process had
        already exited by then (a crash: its log is kept and its path printed)."""
        crashed = [name for name, process in self.processes.items() if process.poll() is not None]
        self.autovacuum.stop()
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self._logs:
            log.close()
        if crashed:
            print(f"{', '.join(crashed)} exited early; logs kept in {self.workdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- measurements ----------------------------------------------------------------------------

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def instance_names(self) -> list[str]:
        """Every service process: a service's name, then `<service>-2` ... for its replicas."""
        return [instance for name in self.services for instance in self.instances[name]]

    def rss(self) -> dict[str, int | None]:
        """Each service process's resident memory in KiB right now."""
        return {name: rss_kib(self.pid(name)) for name in self.instance_names()}

    def cpu(self, excluding: Collection[str] = ()) -> dict[str, float | None]:
        """Each service's CPU time so far (its replicas' included)."""
        used: dict[str, float | None] = {}
        for name in self.services:
            if name in excluding:
                continue
            seconds = [cpu_seconds(self.pid(instance)) for instance in self.instances[name]]
            used[name] = None if None in seconds else sum(s for s in seconds if s is not None)
        return used

    def machine_cpu(self) -> dict[str, float | None]:
        """CPU time so far of everything a benchmark runs on this machine: each service, the
        broker, the stand-ins for outside systems, PostgreSQL and the measuring process."""
        stand_ins = [cpu_seconds(self.pid(name)) for name in STAND_INS if name in self.processes]
        return {**self.cpu(), "broker": cpu_seconds(self.pid("broker")),
                "stand-ins": sum(seconds for seconds in stand_ins if seconds is not None),
                "postgresql": postgres_cpu_seconds(), "measuring": measuring_cpu_seconds()}


def machine_cpu_used(before: dict[str, float | None], after: dict[str, float | None],
                     services: list[str]) -> dict[str, float]:
    """CPU seconds each process used between two `System.machine_cpu` readings, the
    services' total and the whole machine's (what was measured)."""
    used = {name: end - start for name, start in before.items()
            if start is not None and (end := after.get(name)) is not None}
    return {**{name: used[name] for name in services if name in used},
            "all services": sum(used.get(name, 0.0) for name in services),
            **{name: seconds for name, seconds in used.items() if name not in services},
            "whole machine": sum(used.values())}


def cpu_percent_at_rest(system: System, *, settle_seconds: float, seconds: float
                        ) -> dict[str, float]:
    """Each process's CPU with nothing to do, in per cent of one core, over `seconds` after
    `settle_seconds` (start-up and the consumer groups' joins): what the system costs between
    incidents, its polling loops and its consumers' empty fetches, and the broker answering
    them. Nothing of the benchmark's own (watcher, rest probe) runs meanwhile."""
    time.sleep(settle_seconds)
    before = system.machine_cpu()
    started = time.monotonic()
    time.sleep(seconds)
    used = machine_cpu_used(before, system.machine_cpu(), system.services)
    elapsed = time.monotonic() - started
    return {name: round(100 * cpu / elapsed, 1) for name, cpu in used.items()}


def cpu_ms_each(used: dict[str, float], count: int) -> dict[str, float]:
    """CPU milliseconds per item (report, incident) of each process in `used`."""
    return {name: round(1000 * seconds / count, 2) for name, seconds in used.items()}


def cpu_ms_text(cpu_ms: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms}" for name, ms in cpu_ms.items())


QUIET_CORES = 0.3
"""The services are at rest when together they use less CPU than this (in cores) over a
second: about twice what their idle polling takes. Only the services' own processes count,
not the broker's or PostgreSQL's."""
AT_REST_TIMEOUT_SECONDS = 120.0


async def until_at_rest(system: System, timeout: float = AT_REST_TIMEOUT_SECONDS,
                        excluding: Collection[str] = ()) -> float | None:
    """Seconds until the services (but those `excluding`) together use less than
    `QUIET_CORES` (every consumer has caught up); None if they still did not after `timeout`,
    or as soon as one has stopped."""
    started = time.monotonic()
    before = system.cpu(excluding)
    while time.monotonic() - started < timeout:
        await asyncio.sleep(1.0)
        after = system.cpu(excluding)
        used = [a - b for b, a in zip(before.values(), after.values(), strict=True)
                if a is not None and b is not None]
        if len(used) < len(after):  # a service has stopped: it will never be at rest
            return None
        if sum(used) < QUIET_CORES:
            return round(time.monotonic() - started, 1)
        before = after
    return None


@dataclass(frozen=True)
class CatchUp:
    """What the services did after a measured window: how long until they were at rest (None:
    not within the time given), and each process's CPU from the window's start until then."""

    seconds: float | None
    cpu_used: dict[str, float]

    def note(self, count: int, item: str) -> str:
        """The catch-up, with the CPU per `item` (every consumer's work included)."""
        if self.seconds is None:
            when = ("the services were still busy (or one had stopped) when the benchmark "
                    "stopped waiting")
        else:
            when = f"the services were at rest {self.seconds:g} s later"
        return (f"{when} (payout and notify catching up); CPU ms per {item} counted until then: "
                + cpu_ms_text(cpu_ms_each(self.cpu_used, count)))


async def catch_up(system: System, cpu_before: dict[str, float | None],
                   timeout: float = AT_REST_TIMEOUT_SECONDS,
                   excluding: Collection[str] = ()) -> CatchUp:
    """Wait until the services (but those `excluding`) are at rest (payout and notify,
    weighed below the dispatch path, may still be catching up); CPU counted from the
    `System.machine_cpu` reading `cpu_before`."""
    seconds = await until_at_rest(system, timeout, excluding)
    return CatchUp(seconds, machine_cpu_used(cpu_before, system.machine_cpu(), system.services))


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cyberclaims.cli", *args]


class RssSampler:
    """Samples every service's RSS in a background asyncio task; keeps the peak of each."""

    def __init__(self, system: System, interval: float = 0.5) -> None:
        self.system = system
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.samples: list[tuple[float, dict[str, int | None]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            sample = self.system.rss()
            self.samples.append((time.time(), sample))
            for name, value in sample.items():
                if value is not None:
                    self.peak[name] = max(self.peak.get(name, 0), value)
            await asyncio.sleep(self.interval)
