"""Settings fail fast: outside development tokens are verified only against a configured
identity provider's JWKS, in production an https:// one."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings
from services.payout.settings import PayoutSettings
from services.triage.settings import TriageSettings
from shared.settings import (
    DATA_DIR,
    Environment,
    PlatformSettings,
    ServiceSettings,
)

PROVIDER = "https://idp.example/.well-known/jwks.json"


@pytest.mark.parametrize("env", [Environment.production, Environment.test])
def test_outside_development_a_jwks_url_is_required(env: Environment) -> None:
    with pytest.raises(ValidationError, match="CYBERCLAIMS_JWKS_URL"):
        PlatformSettings(env=env, jwks_url="")


@pytest.mark.parametrize("url", ["http://idp.example/jwks", "file:///tmp/jwks.json"])
def test_production_takes_the_providers_keys_over_https_only(url: str) -> None:
    with pytest.raises(ValidationError, match="https"):
        PlatformSettings(env=Environment.production, jwks_url=url)
    assert PlatformSettings(env=Environment.production, jwks_url=PROVIDER).jwks_url == PROVIDER
    assert PlatformSettings(env=Environment.test, jwks_url=url).resolved_jwks_url() == url


def test_production_from_the_environment_fails_at_start_up(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("CYBERCLAIMS_ENV", "production")
    monkeypatch.delenv("CYBERCLAIMS_JWKS_URL", raising=False)
    with pytest.raises(ValidationError):
        PlatformSettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("CYBERCLAIMS_JWKS_URL", PROVIDER)
    assert PlatformSettings(_env_file=None).jwks_url == PROVIDER  # type: ignore[call-arg]


def test_development_reads_the_local_keys_jwks() -> None:
    settings = PlatformSettings(env=Environment.development)
    assert settings.resolved_jwks_url() == (DATA_DIR / "jwks.json").resolve().as_uri()
    moved = PlatformSettings(env=Environment.development, signing_key_file="keys/key.pem")
    assert moved.resolved_jwks_url() == Path("keys/jwks.json").resolve().as_uri()


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


@pytest.mark.parametrize(("settings_class", "default_ms"), [
    (IntakeSettings, 50), (TriageSettings, 0), (PayoutSettings, 50), (NotifySettings, 50),
])
def test_only_triage_applies_a_short_fetch_at_once(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[ServiceSettings], default_ms: int,
) -> None:
    """The others wait 50 ms for more events to apply in the same transaction; a report's way
    to its vendors does not wait."""
    prefix = settings_class.model_config.get("env_prefix", "")
    monkeypatch.delenv(f"{prefix}CONSUMER_LINGER_MS", raising=False)
    assert settings_class(_env_file=None).consumer_linger_ms == default_ms  # type: ignore[call-arg]
