"""Run by `make test` before pytest: checks that PostgreSQL answers, and installs the headless
browser the console tests drive (Debian's `chromium`; Playwright's own download cannot work here).

`.ci/run` starts PostgreSQL when it is down; the suites create their own databases and start
their own Tansu broker on a free port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from tests.support.settings import postgres_admin_url

CHROMIUM = Path("/usr/bin/chromium")


def check_postgres() -> None:
    url = urlparse(postgres_admin_url().replace("+asyncpg", ""))
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    with socket.socket() as sock:
        sock.settimeout(3)
        if sock.connect_ex((host, port)) != 0:
            sys.exit(f"PostgreSQL does not answer on {host}:{port}; start it "
                     "(README, 'Running the tests') or set CYBERCLAIMS_TEST_POSTGRES")
    print(f"PostgreSQL answers on {host}:{port}")


def install_chromium() -> None:
    """The adjuster console's browser test drives Debian's chromium through Playwright."""
    if CHROMIUM.exists():
        print(f"chromium present at {CHROMIUM}")
        return
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        sys.exit(f"{CHROMIUM} is missing: install Debian's chromium package "
                 "(apt-get install -y chromium) to run the console tests")
    print("installing chromium (apt-get) for the console's browser tests ...", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt_get, "update"], check=True, env=environment)
    subprocess.run([apt_get, "install", "-y", "--no-install-recommends", "chromium"], check=True,
                   env=environment)


def main() -> None:
    check_postgres()
    install_chromium()


if __name__ == "__main__":
    main()
