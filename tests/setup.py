"""Run by `make test` before pytest: checks that PostgreSQL answers.

`.ci/run` starts PostgreSQL when it is down; the suites create their own databases and start
their own Tansu broker on a free port.
"""

from __future__ import annotations

import socket
import sys
from urllib.parse import urlparse

from tests.support.settings import postgres_admin_url


def main() -> None:
    url = urlparse(postgres_admin_url().replace("+asyncpg", ""))
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    with socket.socket() as sock:
        sock.settimeout(3)
        if sock.connect_ex((host, port)) != 0:
            sys.exit(f"PostgreSQL does not answer on {host}:{port}; start it "
                     "(README, 'Running the tests') or set CYBERCLAIMS_TEST_POSTGRES")
    print(f"PostgreSQL answers on {host}:{port}")


if __name__ == "__main__":
    main()
