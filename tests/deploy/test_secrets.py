"""No secret literal is committed in the deployment files: every secret is a reference (a
required compose variable, a Kubernetes secretKeyRef, a shell substitution)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import ROOT

SCANNED = [ROOT / "Dockerfile", ROOT / ".dockerignore", ROOT / "docker-compose.yml",
           ROOT / "docs" / "operations.md",
           *(p for p in sorted((ROOT / "deploy").rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts)]

SECRET_KEY = r"[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key)[A-Za-z0-9_.-]*"
# KEY=value (env files, shell, --from-literal) or KEY: value (YAML): the value must be a reference.
ASSIGNMENT = re.compile(rf"(?i)\b(?P<key>{SECRET_KEY})[\"']?(?:=|:\s+)(?P<value>[^\s#,]*)")
URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:(?P<password>[^@\s/]+)@")
PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    "long random-looking string": re.compile(
        r"(?<![A-Za-z0-9+/_-])(?=[A-Za-z0-9+/_-]*[0-9])(?=[A-Za-z0-9+/_-]*[a-z])"
        r"(?=[A-Za-z0-9+/_-]*[A-Z])[A-Za-z0-9+/_-]{24,}={0,2}"),
}


# A JSON patch's `path:` (a JSON pointer such as /spec/template/spec/initContainers/0/...):
# words and list indexes, mixed-case and long like a random string, but readable.
JSON_POINTER = re.compile(r"^\s*(?:- )?(?:op: \w+\s+)?path: (?:/(?:[a-z][A-Za-z.]*(?:~1[a-z.]+)*|[0-9]+))+$")


def is_reference(value: str) -> bool:
    """Not a secret: empty, a substitution or placeholder, a boolean or a number."""
    value = value.strip("\"'")
    return (value == "" or value.startswith(("$", "<")) or value.endswith(":")
            or value.lower() in ("true", "false", "null") or value.isdigit())


def findings(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in ASSIGNMENT.finditer(line):
            if not is_reference(match.group("value")):
                found.append(f"line {number}: {match.group('key')} has a literal value")
        for match in URL_CREDENTIALS.finditer(line):
            if not is_reference(match.group("password")):
                found.append(f"line {number}: a password in a URL")
        for name, pattern in PATTERNS.items():
            if pattern.search(line) and not (name == "long random-looking string"
                                             and JSON_POINTER.match(line)):
                found.append(f"line {number}: {name}")
    return found


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_secret_literal(path: Path) -> None:
    text = path.read_text()
    assert "cyberclaims-dev-secret" not in text  # the HS256 development secret of old
    assert findings(text) == []


@pytest.mark.parametrize("text", [
    "POSTGRES_PASSWORD: hunter2-but-longer",
    "CYBERCLAIMS_JWT_SECRET=0123456789abcdef0123456789abcdef",
    "url: postgresql+asyncpg://intake:s3cret@postgres:5432/intake",
    "--from-literal=jwt-secret=plaintext",
    "value: dGhpc0lzQVNlY3JldFZhbHVlVGhhdElzTG9uZw==",
    "-----BEGIN RSA PRIVATE KEY-----",
    "path: /dGhpc0lzQVNlY3JldFZhbHVl/VGhhdElzTG9uZw==",  # a path of random segments
])
def test_the_scan_catches_literals(text: str) -> None:
    assert findings(text)


@pytest.mark.parametrize("text", [
    "CYBERCLAIMS_JWT_SECRET: ${CYBERCLAIMS_JWT_SECRET:?set CYBERCLAIMS_JWT_SECRET}",
    "INTAKE_DATABASE_URL: postgresql+asyncpg://intake:${INTAKE_DB_PASSWORD:?set it}@postgres/intake",
    'kubectl create secret generic x --from-literal=jwt-secret="$(openssl rand -base64 48)"',
    "CYBERCLAIMS_JWT_SECRET=",
    "name: cyberclaims-jwt",
    "        path: /spec/template/spec/initContainers/0/imagePullPolicy",
    "        path: /spec/egress/2/to/0/podSelector/matchLabels/strimzi.io~1cluster",
])
def test_the_scan_accepts_references(text: str) -> None:
    assert findings(text) == []


def test_no_secret_object_is_committed() -> None:
    for path in (ROOT / "deploy").rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "Secret":
                assert not document.get("data") and not document.get("stringData"), path
            if isinstance(document, dict):
                for generator in document.get("secretGenerator", ()):
                    raise AssertionError(f"{path}: secretGenerator {generator.get('name')}")
