"""The Dockerfile (no Docker engine here to build it): multi-stage from an exact python:3.11 slim
release, the locked dependencies, a numeric non-root user, a healthcheck, the CLI as
entrypoint; the build context stays small."""

from __future__ import annotations

import ast
import importlib.util
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
        else:
            assert instruction[0] == "ARG", "only build arguments come before the first FROM"
    return stages


def _base_image() -> str:
    """The default of the PYTHON_IMAGE build argument declared before the first FROM."""
    declared = [args for keyword, args in _instructions() if keyword == "ARG"
                and args.startswith("PYTHON_IMAGE=")]
    assert declared, "the base image is one build argument, PYTHON_IMAGE"
    return declared[0].partition("=")[2]


def test_the_base_image_is_an_exact_release() -> None:
    """A patch release and a Debian release, never a moving tag like 3.11-slim (a digest may
    be appended at release time)."""
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", _base_image())
    assert _instructions()[0][0] == "ARG", "declared before the first FROM, for every stage"


def test_multi_stage_from_python_slim() -> None:
    stages = _stages()
    assert len(stages) >= 2
    names = []
    for stage in stages:
        match = re.fullmatch(r"(\S+) AS (\S+)", stage[0][1], re.IGNORECASE)
        assert match, stage[0]
        assert match.group(1) == "${PYTHON_IMAGE}"
        names.append(match.group(2))
    runtime = stages[-1]
    copies_from = [args for keyword, args in runtime if keyword == "COPY" and "--from=" in args]
    assert copies_from and all(f"--from={names[0]}" in args for args in copies_from)
    assert not any(keyword == "RUN" and "pip install" in args for keyword, args in runtime), \
        "the runtime stage only copies the built virtualenv"


def test_runtime_runs_as_numeric_non_root_user() -> None:
    users = [args for keyword, args in _stages()[-1] if keyword == "USER"]
    assert users
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)


def test_healthcheck_and_entrypoint() -> None:
    runtime = dict(_stages()[-1])
    assert "CMD" in runtime["HEALTHCHECK"]
    assert "healthcheck.py" in runtime["HEALTHCHECK"]
    assert ast.literal_eval(runtime["ENTRYPOINT"]) == ["cyberclaims"]


def test_non_editable_install_of_the_project_from_the_lock() -> None:
    build = _stages()[0]
    installs = [args for keyword, args in build if keyword == "RUN" and "pip install" in args]
    # The locked versions, checked against their hashes; then the project alone, resolving
    # nothing again (an install without the lock would pick versions of its own).
    assert installs == ["pip install --require-hashes -r requirements.lock",
                        "pip install --no-deps ."]
    copied = " ".join(args for keyword, args in build if keyword == "COPY")
    for path in ("requirements.lock", "pyproject.toml", "README.md", "shared", "services",
                 "cyberclaims"):
        assert path in copied


def test_healthcheck_script_is_copied_and_in_the_context() -> None:
    copied = [args for keyword, args in _stages()[-1] if keyword == "COPY"]
    assert any(args.startswith("deploy/docker/healthcheck.py ") for args in copied)
    assert (ROOT / "deploy/docker/healthcheck.py").is_file()


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "ignore everything, then allow what the build copies"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"requirements.lock", "pyproject.toml", "README.md", "shared", "services",
                       "cyberclaims", "deploy/docker"}


def _healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy/docker/healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_asks_the_served_service_on_its_port(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    healthcheck = _healthcheck_module()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("INTAKE_PORT", str(server.server_port))
        cmdline = tmp_path / "cmdline"
        cmdline.write_bytes(b"/opt/venv/bin/python\0/opt/venv/bin/cyberclaims\0serve\0intake\0")
        assert healthcheck.served_service(cmdline) == "intake"
        assert healthcheck.check(cmdline) == 0
        cmdline.write_bytes(b"/opt/venv/bin/cyberclaims\0migrate\0intake\0")
        assert healthcheck.check(cmdline) == 0
    finally:
        server.shutdown()
        server.server_close()
    cmdline.write_bytes(b"/opt/venv/bin/cyberclaims\0serve\0intake\0")
    with pytest.raises(OSError):
        healthcheck.check(cmdline)
