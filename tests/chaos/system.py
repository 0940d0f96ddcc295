"""The whole system for fault injection: every service its own process on a private PostgreSQL
and a Tansu broker, the sandbox payment provider, an SMTP sink and a webhook receiver; each
part can be killed, frozen and restarted while the load runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cyberclaims.broker import broker_command, create_bucket, object_store_env, wait_for_port
from cyberclaims.dev import cli_argv
from cyberclaims.registry import available_services
from shared.kafka import ensure_topics
from tests.chaos.postgres import PrivatePostgres
from tests.chaos.receiver import WebhookReceiver
from tests.support.infra import free_port
from tests.support.service import TEST_ISSUER, provider_jwks_url

SERVICE_NAMES = [entry.name for entry in available_services()]

CHAOS_ENV = {
    "CYBERCLAIMS_ENV": "test",
    "CYBERCLAIMS_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "CYBERCLAIMS_OUTBOX_POLL_SECONDS": "0.3",
    "CYBERCLAIMS_LOG_LEVEL": "WARNING",
    "NOTIFY_WEBHOOK_ALLOWLIST": "127.0.0.1",  # the test receiver is local
    "CYBERCLAIMS_JWKS_URL": provider_jwks_url(),
    "CYBERCLAIMS_JWT_ISSUER": TEST_ISSUER,
    "CYBERCLAIMS_RATE_LIMITS": "false",  # every user of the load is one address
    "TRIAGE_TIMER_POLL_SECONDS": "0.3",
    "NOTIFY_WORKER_POLL_SECONDS": "0.3",
    "NOTIFY_BACKOFF_BASE_SECONDS": "0.5",
    "NOTIFY_BACKOFF_CAP_SECONDS": "4",
    "NOTIFY_MAX_ATTEMPTS": "30",
    "NOTIFY_SEND_LEASE_SECONDS": "8",
    "NOTIFY_DELIVERY_DEADLINE_SECONDS": "6",
    "NOTIFY_WEBHOOK_TIMEOUT_SECONDS": "3",
    "PAYOUT_PAYMENT_POLL_SECONDS": "0.3",
    "PAYOUT_PAYMENT_TIMEOUT_SECONDS": "2",
    "PAYOUT_PAYMENT_LEASE_SECONDS": "5",
    "PAYOUT_PAYMENT_RETRY_BASE_SECONDS": "0.5",
    "PAYOUT_PAYMENT_RETRY_MAX_SECONDS": "4",
    "PAYOUT_PAYMENT_MAX_ATTEMPTS": "12",
}


@dataclass
class Part:
    """One process of the system, restartable with the same command line."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class ChaosSystem:
    workdir: Path
    postgres: PrivatePostgres
    bootstrap: str
    urls: dict[str, str]
    env: dict[str, str]
    receiver: WebhookReceiver
    parts: dict[str, Part] = field(default_factory=dict)
    planted_dead_letters: set[str] = field(default_factory=set)  # ce_ids of planted poison

    def databases(self) -> dict[str, str]:
        """Service name -> asyncpg URL of its database (the oracle reads them)."""
        return {name: self.postgres.database_url(f"chaos_{name}").replace("+asyncpg", "")
                for name in SERVICE_NAMES}

    def start(self, name: str) -> None:
        self.parts[name].start(self.env)

    def kill(self, *names: str) -> None:
        for name in names:
            self.parts[name].kill()

    def restart(self, *names: str) -> None:
        for name in names:
            self.start(name)
        self.wait_alive(*names)

    def wait_alive(self, *names: str, timeout: float = 90.0) -> None:
        """Each named service answers /healthz (its database may still be coming back)."""
        deadline = time.monotonic() + timeout
        for name in names:
            url = self.urls.get(name)
            while url is not None:
                if not self.parts[name].running:
                    raise RuntimeError(f"{name} exited; see {self.parts[name].log}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not alive after {timeout}s")
                time.sleep(0.2)

    def stop_services(self) -> None:
        for name in SERVICE_NAMES:
            self.parts[name].stop()

    def restart_broker(self) -> None:
        self.parts["broker"].kill()
        self.start("broker")
        wait_for_port(int(self.bootstrap.rsplit(":", 1)[1]))

    def logs(self, name: str, tail: int = 60) -> str:
        lines = self.parts[name].log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def stop(self) -> None:
        for part in reversed(list(self.parts.values())):
            part.stop()


@contextmanager
def chaos_system(workdir: Path) -> Iterator[ChaosSystem]:
    """Start everything on a private PostgreSQL, the broker on files as `make run` has it."""
    postgres = PrivatePostgres()
    receiver = WebhookReceiver()
    system: ChaosSystem | None = None
    try:
        postgres.start()
        ports = {name: free_port()
                 for name in [*SERVICE_NAMES, "payments", "smtp", "broker", "objects"]}
        store = f"http://127.0.0.1:{ports['objects']}"
        bootstrap = f"127.0.0.1:{ports['broker']}"
        env = {**os.environ, **CHAOS_ENV, **object_store_env(store),
               "CYBERCLAIMS_KAFKA_BOOTSTRAP": bootstrap,
               "PAYOUT_PAYMENT_PROVIDER_URL": f"http://127.0.0.1:{ports['payments']}",
               "NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(ports["smtp"])}
        urls = {name: f"http://127.0.0.1:{ports[name]}" for name in [*SERVICE_NAMES, "payments"]}
        receiver.start()
        system = ChaosSystem(workdir=workdir, postgres=postgres, bootstrap=bootstrap, urls=urls,
                             env=env, receiver=receiver)
        parts = {"objects": cli_argv("object-store", "--port", str(ports["objects"]), "--root",
                                     str(workdir / "broker")),
                 "broker": broker_command(ports["broker"], durable=True),
                 "payments": cli_argv("sandbox-payments", "--port", str(ports["payments"]),
                                     "--ledger", str(workdir / "ledger.jsonl")),
                 "smtp": cli_argv("smtp-sink", "--port", str(ports["smtp"]), "--maildir",
                                  str(workdir / "mail"))}
        for name in SERVICE_NAMES:
            env[f"{name.upper()}_PORT"] = str(ports[name])
            env[f"{name.upper()}_DATABASE_URL"] = postgres.database_url(f"chaos_{name}")
            parts[name] = cli_argv("serve", name)
        system.parts = {name: Part(name, argv, workdir / f"{name}.log")
                        for name, argv in parts.items()}
        system.start("objects")
        wait_for_port(ports["objects"])
        create_bucket(store)
        system.start("broker")
        wait_for_port(ports["broker"])
        asyncio.run(ensure_topics(bootstrap))
        for name in ("payments", "smtp"):
            system.start(name)
            wait_for_port(ports[name])
        for name in SERVICE_NAMES:
            postgres.create_database(f"chaos_{name}")
        migrations = {name: subprocess.Popen(cli_argv("migrate", name), env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                      for name in SERVICE_NAMES}  # at once: each child's time is its imports
        for name, migration in migrations.items():
            output, _ = migration.communicate()
            if migration.returncode != 0:
                raise RuntimeError(f"cyberclaims migrate {name} failed:\n{output.decode()}")
            system.start(name)
        system.wait_alive(*SERVICE_NAMES)
        yield system
    finally:
        if system is not None:
            system.stop()
        receiver.stop()
        postgres.remove()
