"""Typed settings shared by every service; each service subclasses with its own env prefix.

Settings fail fast: outside development the development secret, and any short or low-entropy
JWT secret, is refused, so a misconfigured pod crashes at start-up instead of accepting forged
tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "cyberclaims-dev-secret-change-me-0123456789"  # noqa: S105 - the refused default
MIN_SECRET_LENGTH = 32
MIN_SECRET_ENTROPY_BITS = 90
MEBIBYTE = 1024 * 1024
DATA_DIR = Path(".data")


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
    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "cyberclaims"
    jwt_audience: str = "cyberclaims-api"
    jwt_ttl_seconds: int = Field(default=3600, gt=0)
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
    def _refuse_weak_secrets(self) -> PlatformSettings:
        if self.env is not Environment.development:
            if self.jwt_secret == DEV_JWT_SECRET:
                raise ValueError(f"CYBERCLAIMS_JWT_SECRET must be set outside development "
                                 f"(CYBERCLAIMS_ENV={self.env.value})")
            if len(self.jwt_secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"CYBERCLAIMS_JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters"
                )
            if entropy_bits(self.jwt_secret) < MIN_SECRET_ENTROPY_BITS:
                raise ValueError(
                    f"CYBERCLAIMS_JWT_SECRET is too predictable: at least "
                    f"{MIN_SECRET_ENTROPY_BITS} bits of entropy needed (e.g. 32 random bytes, "
                    f"base64-encoded)"
                )
        return self


def entropy_bits(secret: str) -> float:
    """Shannon entropy of the secret's characters times its length: an estimate that catches
    repetition ("a" * 32: 0 bits) and small alphabets, not a proof of randomness."""
    counts = Counter(secret)
    per_character = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_character * len(secret)


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
    kafka_fetch_max_wait_ms: int = Field(
        default=100, ge=1,
        description="The longest the service's consumer's fetch waits for data. Apache Kafka "
                    "answers as soon as data arrives; Tansu (the dev broker) later, about a "
                    "quarter of the wait on average. An idle consumer fetches once per wait, "
                    "and each fetch costs the service and the broker CPU. Triage, on the "
                    "dispatch path, waits 20 ms.",
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
