"""docker-compose.yml meets the Compose Specification and the platform's rules: KRaft Kafka,
one database and role per service, migrations before services, no secret without a value
that fails fast when missing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema

from tests.deploy.support import COMPOSE_FILE, LISTEN_ALL, ROOT, SERVICES, compose

SCHEMA = Path(__file__).with_name("compose-spec.json")
VARIABLE = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def test_compose_file_meets_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(compose())


def test_the_schema_refuses_an_unknown_service_key() -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = compose()
    broken["services"]["intake"]["depends"] = ["kafka"]
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_every_variable_is_required_and_fails_fast() -> None:
    """`${NAME:?message}` only: compose stops when a value is missing or empty, and nothing
    falls back to a default secret."""
    text = COMPOSE_FILE.read_text()
    references = VARIABLE.findall(text.replace("$$", ""))
    assert references
    for braced, bare in references:
        assert not bare, f"${bare}: use ${{{bare}:?...}}"
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*:\?.+", braced), braced


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment: dict[str, str] = service.get("environment", {})
    return {key: str(value) for key, value in environment.items()}


def test_kafka_runs_in_kraft_mode_without_auto_created_topics() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka["healthcheck"]["test"]


def test_postgres_creates_one_role_and_database_per_service() -> None:
    postgres = compose()["services"]["postgres"]
    env = _environment(postgres)
    for name in SERVICES:
        assert env[f"{name.upper()}_DB_PASSWORD"].startswith("${")
    (mount,) = [v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v]
    script = ROOT / mount.split(":")[0]
    text = script.read_text()
    assert "for service in " + " ".join(SERVICES) + "; do" in text
    assert 'CREATE ROLE :"role" LOGIN PASSWORD :\'password\'' in text
    assert 'CREATE DATABASE :"role" OWNER :"role"' in text
    assert script.stat().st_mode & 0o111, "the init script must be executable"


def test_services_wait_for_their_migration_and_the_topics() -> None:
    services = compose()["services"]
    for name, port in SERVICES.items():
        migration = services[f"migrate-{name}"]
        assert migration["command"] == ["migrate", name]
        assert migration["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert set(_environment(migration)) == {f"{name.upper()}_DATABASE_URL"}
        service = services[name]
        assert service["command"] == ["serve", name]
        depends = service["depends_on"]
        assert depends[f"migrate-{name}"]["condition"] == "service_completed_successfully"
        assert depends["kafka-topics"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == "service_healthy"
        assert f"{port}:{port}" in service["ports"]
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])


def test_services_run_production_settings_against_real_kafka() -> None:
    services = compose()["services"]
    for name, port in SERVICES.items():
        env = _environment(services[name])
        prefix = name.upper()
        assert env["CYBERCLAIMS_ENV"] == "production"
        assert env["CYBERCLAIMS_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["CYBERCLAIMS_KAFKA_IDEMPOTENT_PRODUCER"] == "true"
        assert env["CYBERCLAIMS_KAFKA_CREATE_TOPICS"] == "false"
        assert env["CYBERCLAIMS_JWKS_URL"].startswith("${CYBERCLAIMS_JWKS_URL:?")
        assert env["CYBERCLAIMS_JWT_ISSUER"].startswith("${CYBERCLAIMS_JWT_ISSUER:?")
        assert env[f"{prefix}_HOST"] == LISTEN_ALL
        assert env[f"{prefix}_PORT"] == str(port)
        url = env[f"{prefix}_DATABASE_URL"]
        assert url.startswith(f"postgresql+asyncpg://{name}:${{{prefix}_DB_PASSWORD:?")
        assert url.endswith(f"@postgres:5432/{name}")
    assert _environment(services["payout"])["PAYOUT_PAYMENT_PROVIDER_URL"] == \
        "http://sandbox-payments:8010"
    notify = _environment(services["notify"])
    assert (notify["NOTIFY_SMTP_HOST"], notify["NOTIFY_SMTP_PORT"]) == ("smtp-sink", "1025")


def test_app_containers_are_locked_down() -> None:
    for name, service in compose()["services"].items():
        if service.get("image") != "cyberclaims:local":
            continue
        assert service["read_only"] is True, name
        assert service["user"] == "10001:10001", name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_development_stand_ins_are_there() -> None:
    services = compose()["services"]
    assert services["sandbox-payments"]["command"][:1] == ["sandbox-payments"]
    assert "8010" in services["sandbox-payments"]["command"]
    assert services["smtp-sink"]["command"][:1] == ["smtp-sink"]
    assert "1025" in services["smtp-sink"]["command"]
