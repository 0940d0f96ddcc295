"""A PostgreSQL server of the suite's own, so that a scenario can crash and restart it
(`-m immediate`) without touching the machine's server that other suites use."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from glob import glob
from pathlib import Path

from tests.support.infra import free_port


def _server_binaries() -> Path:
    """The newest PostgreSQL installed from Debian's packages (the machine's server)."""
    found = sorted(glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return Path(found[-1])


class PrivatePostgres:
    """initdb, start, crash-restart and remove one throw-away cluster on a free port.

    PostgreSQL refuses to run as root: when the suite runs as root (CI does), the cluster
    belongs to the `postgres` user and its commands run through `runuser`."""

    def __init__(self) -> None:
        self.bin = _server_binaries()
        self.root = Path(tempfile.mkdtemp(prefix="cyberclaims-chaos-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres")

    def _run(self, *argv: str) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync")
        # fsync off is safe here: a crash of the server (not of the machine) leaves what it
        # wrote in the OS's cache. synchronous_commit stays on: off, a commit the services
        # acted on (a Kafka offset committed after it) could vanish in the crash.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   "-c max_connections=300 -c fsync=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "start")

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def crash_restart(self) -> None:
        """Stop without a checkpoint, as a crash would, then start: recovery replays the WAL."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.start()

    def remove(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"
