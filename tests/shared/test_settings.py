"""Settings fail fast: outside development the development secret, and any short or
predictable JWT secret, is refused."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings
from services.payout.settings import PayoutSettings
from services.triage.settings import TriageSettings
from shared.settings import (
    DEV_JWT_SECRET,
    MIN_SECRET_ENTROPY_BITS,
    MIN_SECRET_LENGTH,
    Environment,
    PlatformSettings,
    ServiceSettings,
    entropy_bits,
)

STRONG = "Q0X8WwN4WU1jsn8Ch51rlFZxUGFK4kDI"  # 32 random characters
WEAK = ["a" * MIN_SECRET_LENGTH, "ab" * MIN_SECRET_LENGTH, "abcd" * (MIN_SECRET_LENGTH // 4),
        "0" * 64]


@pytest.mark.parametrize("env", [Environment.production, Environment.test])
@pytest.mark.parametrize("secret", [DEV_JWT_SECRET, "short-secret", STRONG[:-1], *WEAK])
def test_outside_development_a_default_short_or_predictable_secret_is_refused(
        env: Environment, secret: str) -> None:
    with pytest.raises(ValidationError, match="CYBERCLAIMS_JWT_SECRET"):
        PlatformSettings(env=env, jwt_secret=secret)


def test_production_accepts_a_long_random_secret() -> None:
    settings = PlatformSettings(env="production", jwt_secret=STRONG)  # type: ignore[arg-type]
    assert settings.env is Environment.production
    for _ in range(1000):  # the estimate never refuses what the docs recommend
        PlatformSettings(env=Environment.production, jwt_secret=secrets.token_urlsafe(32))
        PlatformSettings(env=Environment.production, jwt_secret=secrets.token_hex(16))


def test_entropy_estimate() -> None:
    assert entropy_bits("a" * 32) == 0
    assert entropy_bits("ab" * 16) == 32
    assert entropy_bits(STRONG) > MIN_SECRET_ENTROPY_BITS


def test_production_from_the_environment_fails_at_start_up(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("CYBERCLAIMS_ENV", "production")
    monkeypatch.delenv("CYBERCLAIMS_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError):
        PlatformSettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("CYBERCLAIMS_JWT_SECRET", STRONG)
    assert PlatformSettings(_env_file=None).jwt_secret == STRONG  # type: ignore[call-arg]


def test_development_accepts_the_default_secret() -> None:
    env = Environment.development
    assert PlatformSettings(env=env, jwt_secret=DEV_JWT_SECRET).jwt_secret == DEV_JWT_SECRET
    assert PlatformSettings(env=env, jwt_secret="short").jwt_secret == "short"


def test_other_settings_are_checked_too() -> None:
    with pytest.raises(ValidationError):
        PlatformSettings(jwt_ttl_seconds=0)
    with pytest.raises(ValidationError):
        PlatformSettings(consumer_max_attempts=0)


def test_service_settings_read_their_prefix_and_fall_back_to_the_embedded_postgres(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("INTAKE_DATABASE_URL", "CYBERCLAIMS_DATABASE_SERVER",
                     "CYBERCLAIMS_EMBEDDED_POSTGRES_PORT"):
        monkeypatch.delenv(variable, raising=False)
    settings = IntakeSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.port == 8001
    assert settings.uses_embedded_postgres
    assert settings.resolved_database_url("intake") == (
        "postgresql+asyncpg://postgres@127.0.0.1:5433/intake")
    monkeypatch.setenv("CYBERCLAIMS_EMBEDDED_POSTGRES_PORT", "6543")
    settings = IntakeSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.resolved_database_url("intake") == (
        "postgresql+asyncpg://postgres@127.0.0.1:6543/intake")
    monkeypatch.setenv("CYBERCLAIMS_DATABASE_SERVER", "postgresql+asyncpg://postgres@db:5432/")
    settings = IntakeSettings(_env_file=None)  # type: ignore[call-arg]
    assert not settings.uses_embedded_postgres
    assert settings.resolved_database_url("intake") == "postgresql+asyncpg://postgres@db:5432/intake"
    monkeypatch.setenv("INTAKE_DATABASE_URL", "postgresql+asyncpg://db/intake")
    monkeypatch.setenv("INTAKE_PORT", "9001")
    settings = IntakeSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.resolved_database_url("intake") == "postgresql+asyncpg://db/intake"
    assert settings.port == 9001


@pytest.mark.parametrize(("settings_class", "prefix", "default_ms"), [
    (IntakeSettings, "INTAKE_", 100), (TriageSettings, "TRIAGE_", 20),
    (PayoutSettings, "PAYOUT_", 100), (NotifySettings, "NOTIFY_", 100),
])
def test_each_consumer_has_its_own_fetch_wait(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[ServiceSettings], prefix: str,
    default_ms: int,
) -> None:
    """Triage is on the way from a report to its vendors; the others' readers do not notice
    tens of milliseconds, and an idle consumer costs a fetch per wait."""
    monkeypatch.delenv(f"{prefix}KAFKA_FETCH_MAX_WAIT_MS", raising=False)
    assert settings_class(_env_file=None).kafka_fetch_max_wait_ms == default_ms  # type: ignore[call-arg]
    monkeypatch.setenv(f"{prefix}KAFKA_FETCH_MAX_WAIT_MS", "7")
    assert settings_class(_env_file=None).kafka_fetch_max_wait_ms == 7  # type: ignore[call-arg]
    monkeypatch.setenv(f"{prefix}KAFKA_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ValidationError):
        settings_class(_env_file=None)  # type: ignore[call-arg]
