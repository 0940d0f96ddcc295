"""Typed settings shared by every service; each service subclasses with its own env prefix.

Settings fail fast: outside development a JWKS URL (the identity provider's public keys) must
be set, and in production it must be `https://`, so a misconfigured pod crashes at start-up
instead of accepting tokens signed by a key nobody vouched for.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MEBIBYTE = 1024 * 1024
DATA_DIR = Path(".data")
LOCAL_SIGNING_KEY = DATA_DIR / "signing-key.pem"
LOCAL_JWKS = "jwks.json"
"""The development key's JWKS, next to the key (shared/signing.py writes it)."""


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class PlatformSettings(BaseSettings):
    """What all services share. Read from `CYBERCLAIMS_*` variables (and `.env`)."""

    model_config = SettingsConfigDict(env_prefix="CYBERCLAIMS_", env_file=".env", extra="ignore")

    env: Environment = Environment.development
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_idempotent_producer: bool = Field(
        default=False,
        description="On against Apache Kafka; Tansu (the dev broker) rejects it.",
    )
    jwks_url: str = Field(
        default="",
        description="The identity provider's JWKS (its public signing keys): `https://` in "
                    "production; empty in development: `.data/jwks.json`, the key "
                    "`cyberclaims token` signs with.",
    )
    signing_key_file: str = Field(
        default="",
        description="Development and tests only: the private key `cyberclaims token` signs "
                    "with (created on first use); empty: .data/signing-key.pem.",
    )
    jwks_refresh_seconds: float = Field(
        default=60.0, gt=0,
        description="Least time between two fetches of the JWKS when tokens name unknown keys.",
    )
    jwt_issuer: str = Field(default="cyberclaims",
                            description="The `iss` every token must carry (the provider's).")
    jwt_ttl_seconds: int = Field(default=3600, gt=0,
                                 description="Lifetime of development tokens.")
    log_level: str = "INFO"
    otlp_endpoint: str = Field(
        default="",
        description="OTLP/HTTP traces endpoint (e.g. http://otel-collector:4318/v1/traces); "
                    "empty: tracing off, nothing instrumented (shared/tracing.py).",
    )
    kafka_create_topics: bool = Field(
        default=True,
        description="Create missing catalog topics at start-up (dev); off where topics are "
                    "managed (Strimzi KafkaTopic in Kubernetes, a one-off job in compose).",
    )
    kafka_session_timeout_ms: int = Field(
        default=10_000, ge=1000,
        description="Consumer group session timeout; a new member joins in about half of it.",
    )
    consumer_max_attempts: int = Field(default=3, ge=1)
    consumer_batch_size: int = Field(
        default=100, ge=1,
        description="Most events a consumer applies in one transaction (1: one at a time).",
    )
    consumer_commit_interval_ms: int = Field(
        default=100, ge=0,
        description="How often a busy consumer commits its offsets to Kafka (0: after every "
                    "fetch); always after the database commit, and at once when idle.",
    )
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    broker_probe_seconds: float = Field(
        default=5.0, gt=0,
        description="How often each service checks that Kafka answers (the "
                    "cyberclaims_broker_up gauge; readiness does not depend on it).",
    )
    database_pool_size: int = Field(
        default=20, ge=1,
        description="Connections each process keeps to its database (a fixed pool: a burst "
                    "waits for one rather than opening and closing extra connections).",
    )
    currency: str = "CNY"
    max_body_bytes: int = Field(
        default=MEBIBYTE, ge=1,
        description="Largest request body accepted (413 above it), whether announced by "
                    "Content-Length or streamed in chunks.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024,
        description="Largest request head (names and values of all headers) accepted (431).",
    )
    rate_limits: bool = Field(
        default=True,
        description="Answer 429 above the rates below; off only for tests and benchmarks that "
                    "send from one address faster than any client should.",
    )
    principal_write_rate: float = Field(
        default=20.0, gt=0, description="Writes per second one principal (token subject) may "
                                        "keep up.")
    principal_write_burst: int = Field(
        default=100, ge=1, description="Writes one principal may send at once.")
    address_write_rate: float = Field(
        default=100.0, gt=0, description="Writes per second one client address may keep up.")
    address_write_burst: int = Field(
        default=500, ge=1, description="Writes one client address may send at once.")
    failed_auth_rate: float = Field(
        default=1.0, gt=0, description="Requests without a valid token per second one client "
                                       "address may keep up.")
    failed_auth_burst: int = Field(
        default=30, ge=1, description="Requests without a valid token one client address may "
                                      "send at once.")
    rate_limit_keys: int = Field(
        default=100_000, ge=1, description="Principals and addresses whose rates each service "
                                           "remembers (least recently seen forgotten first).")

    @model_validator(mode="after")
    def _require_provider_keys(self) -> PlatformSettings:
        if self.env is not Environment.development and not self.jwks_url:
            raise ValueError(f"CYBERCLAIMS_JWKS_URL must be set outside development "
                             f"(CYBERCLAIMS_ENV={self.env.value})")
        if self.env is Environment.production and not self.jwks_url.startswith("https://"):
            raise ValueError("CYBERCLAIMS_JWKS_URL must be an https:// URL in production")
        return self

    def resolved_jwks_url(self) -> str:
        """The configured JWKS, or in development the local key's (`cyberclaims token`)."""
        return self.jwks_url or self.resolved_signing_key().with_name(LOCAL_JWKS).resolve().as_uri()

    def resolved_signing_key(self) -> Path:
        return Path(self.signing_key_file) if self.signing_key_file else LOCAL_SIGNING_KEY


class ServiceSettings(BaseSettings):
    """Per-service settings; subclasses set `env_prefix` (e.g. `INTAKE_`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int
    database_url: str = ""
    database_server: str = Field(
        default="", validation_alias="CYBERCLAIMS_DATABASE_SERVER",
        description="A PostgreSQL server (a URL without a database, e.g. "
                    "postgresql+asyncpg://postgres@127.0.0.1:5432) on which each service "
                    "without its own <NAME>_DATABASE_URL uses the database named for it; "
                    "empty: `make run`'s embedded PostgreSQL.",
    )
    embedded_postgres_port: int = Field(
        default=5433, validation_alias="CYBERCLAIMS_EMBEDDED_POSTGRES_PORT",
        description="Where `make run`'s embedded PostgreSQL listens (on 127.0.0.1).",
    )
    audience: str = Field(
        default="", description="The `aud` this service's tokens must name; empty: "
                                "`cyberclaims-<service>` (e.g. cyberclaims-payout).")
    kafka_fetch_max_wait_ms: int = Field(
        default=100, ge=1,
        description="The longest the service's consumer's fetch waits for data. Apache Kafka "
                    "answers as soon as data arrives; Tansu (the dev broker) later, about a "
                    "quarter of the wait on average. An idle consumer fetches once per wait, "
                    "and each fetch costs the service and the broker CPU. Triage, on the "
                    "dispatch path, waits 20 ms.",
    )
    consumer_linger_ms: int = Field(
        default=50, ge=0,
        description="How long the consumer lets a fetch short of a full batch wait for more "
                    "events before it applies them in one transaction: fewer transactions "
                    "(and less CPU per event) under a moderate load, at most this much later. "
                    "0: at once. Triage, on the dispatch path, does not wait.",
    )

    @property
    def uses_embedded_postgres(self) -> bool:
        """Whether the database is on `make run`'s embedded PostgreSQL (nothing configured)."""
        return not self.database_url and not self.database_server

    def resolved_database_url(self, service: str) -> str:
        """The configured URL, or the database named for `service` on the configured server
        or else on the embedded one."""
        if self.database_url:
            return self.database_url
        server = self.database_server or embedded_postgres_url(self.embedded_postgres_port)
        return f"{server.rstrip('/')}/{service}"


def embedded_postgres_url(port: int) -> str:
    """`make run`'s embedded PostgreSQL (cyberclaims/postgres.py): trust authentication, on
    loopback only."""
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}"
