"""The image's HEALTHCHECK: GET /healthz of the cyberclaims service running in this container.

One image runs every service, so the port is not fixed: read the container's main process
(PID 1, `cyberclaims serve <name>`, possibly under an init such as tini) and ask that service's
settings for its port (`<NAME>_PORT` or the default). A container running anything else (a
migration, a sandbox) has no service to check and is healthy while it runs.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from cyberclaims.registry import service

MAIN_PROCESS = Path("/proc/1/cmdline")


def served_service(cmdline: Path = MAIN_PROCESS) -> str | None:
    argv = cmdline.read_bytes().decode(errors="replace").split("\0")
    if "serve" in argv[:-1]:
        return argv[argv.index("serve") + 1]
    return None


def check(cmdline: Path = MAIN_PROCESS) -> int:
    name = served_service(cmdline)
    if name is None:
        return 0
    port = service(name).settings().port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as response:
        return 0 if response.status == 200 else 1


if __name__ == "__main__":
    try:
        sys.exit(check())
    except Exception as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        sys.exit(1)
