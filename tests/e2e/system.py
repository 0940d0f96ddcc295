"""The whole system as in production: each service its own process, on PostgreSQL (the
machine's, or `make run`'s embedded one) and a real Tansu broker, with the sandbox payment
provider and an SMTP sink. Tests talk to it through the public HTTP APIs only."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cyberclaims.broker import wait_for_port
from cyberclaims.dev import Child, Supervisor, cli_argv, prepare_databases, wait_ready
from cyberclaims.registry import SERVICES
from shared.migrations import migrate
from shared.settings import embedded_postgres_url
from tests.support.infra import drop_databases, free_port, fresh_database, tansu_broker
from tests.support.service import TEST_ISSUER, provider_jwks_url, provider_key

SERVICE_NAMES = [entry.name for entry in SERVICES]


@dataclass(frozen=True)
class System:
    urls: dict[str, str]
    bootstrap: str
    maildir: Path
    env: dict[str, str]
    supervisor: Supervisor

    def logs(self) -> str:
        return "".join(self.supervisor.output[-400:])


@contextmanager
def running_system(workdir: Path, *, backend: str = "postgres",
                   extra_env: dict[str, str] | None = None) -> Iterator[System]:
    """Start everything; `backend` is "postgres" (one database per service on the machine's
    server) or "embedded" (nothing configured: `make run`'s embedded PostgreSQL, started as
    `make run` starts it, its data under `workdir`)."""
    with tansu_broker() as bootstrap:
        maildir = workdir / "mail"
        ports = {name: free_port() for name in [*SERVICE_NAMES, "payments", "smtp"]}
        env = {
            **os.environ,
            "CYBERCLAIMS_ENV": "test",
            "CYBERCLAIMS_KAFKA_BOOTSTRAP": bootstrap,
            "CYBERCLAIMS_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "CYBERCLAIMS_OUTBOX_POLL_SECONDS": "0.2",
            "CYBERCLAIMS_LOG_LEVEL": "WARNING",
            "CYBERCLAIMS_JWKS_URL": provider_jwks_url(),
            "CYBERCLAIMS_JWT_ISSUER": TEST_ISSUER,
            "CYBERCLAIMS_SIGNING_KEY_FILE": str(provider_key()),  # `cyberclaims token`'s
            "CYBERCLAIMS_RATE_LIMITS": "false",  # every test client is one address
            "PAYOUT_PAYMENT_PROVIDER_URL": f"http://127.0.0.1:{ports['payments']}",
            "NOTIFY_SMTP_HOST": "127.0.0.1",
            "NOTIFY_SMTP_PORT": str(ports["smtp"]),
            "NOTIFY_WEBHOOK_ALLOWLIST": "127.0.0.1",  # the demo's receiver
            **(extra_env or {}),
        }
        databases: list[str] = []
        for name in SERVICE_NAMES:
            prefix = name.upper()
            env[f"{prefix}_PORT"] = str(ports[name])
            if backend == "postgres":
                database = f"cyberclaims_e2e_{name}_{os.getpid()}"
                env[f"{prefix}_DATABASE_URL"] = fresh_database(database)
                databases.append(database)
            else:
                env.pop(f"{prefix}_DATABASE_URL", None)
        embedded_port = free_port()
        if backend == "embedded":
            env.pop("CYBERCLAIMS_DATABASE_SERVER", None)
            env["CYBERCLAIMS_EMBEDDED_POSTGRES_PORT"] = str(embedded_port)
        supervisor = Supervisor(echo=False)
        try:
            if backend == "embedded":  # created and migrated as `make run` does
                server = embedded_postgres_url(embedded_port)
                prepare_databases(supervisor, {name: f"{server}/{name}" for name in SERVICE_NAMES},
                                  embedded_port, workdir / "postgres")
            else:  # in this process: a `cyberclaims migrate` child per service spends seconds
                # on imports alone (tests/chaos runs the command itself)
                for name in SERVICE_NAMES:
                    migrate(name, env[f"{name.upper()}_DATABASE_URL"])
            supervisor.start(Child("payments", cli_argv("sandbox-payments", "--port",
                                                        str(ports["payments"])), env=env))
            supervisor.start(Child("smtp", cli_argv("smtp-sink", "--port", str(ports["smtp"]),
                                                    "--maildir", str(maildir)), env=env))
            wait_for_port(ports["payments"])
            wait_for_port(ports["smtp"])
            urls = {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICE_NAMES}
            urls["payments"] = f"http://127.0.0.1:{ports['payments']}"
            for name in SERVICE_NAMES:
                supervisor.start(Child(name, cli_argv("serve", name), env=env))
            for name in SERVICE_NAMES:
                wait_ready(f"{urls[name]}/readyz", supervisor, timeout=90)
            yield System(urls=urls, bootstrap=bootstrap, maildir=maildir, env=env,
                         supervisor=supervisor)
        except BaseException:
            sys.stderr.write("".join(supervisor.output[-200:]))
            raise
        finally:
            supervisor.stop()
            drop_databases(*databases)
