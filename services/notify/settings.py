from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    """`NOTIFY_*` variables: where mail goes, who the teams are, how deliveries are retried."""

    model_config = SettingsConfigDict(env_prefix="NOTIFY_", env_file=".env", extra="ignore")

    port: int = 8004
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    smtp_connections: int = Field(default=4, ge=1,
                                  description="SMTP connections kept open and used at once")
    sender: str = "cyberclaims <notify@insurer.example>"
    adjusters_email: str | None = "adjusters@insurer.example"
    operators_email: str | None = "operators@insurer.example"
    webhook_timeout_seconds: float = Field(default=10.0, gt=0,
                                           description="per connect, read and write")
    delivery_deadline_seconds: float = Field(
        default=30.0, gt=0,
        description="a whole try (webhook or email), however slowly the other side answers")
    webhook_connections_per_host: int = Field(
        default=4, ge=1, description="webhook tries sent to one host at once")
    sends_in_flight: int = Field(default=200, ge=1,
                                 description="tries (webhook and email) sent at once in all")
    webhook_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated hosts and CIDRs a webhook may call although they are not "
                    "public (local receivers in development and tests)")
    max_subscriptions_per_owner: int = Field(default=20, ge=1,
                                             description="active webhook subscriptions")
    max_attempts: int = Field(default=8, ge=1, description="tries before a delivery is dead")
    backoff_base_seconds: float = Field(default=30.0, gt=0)
    backoff_cap_seconds: float = Field(default=3600.0, gt=0)
    send_lease_seconds: float = Field(
        default=60.0, gt=0,
        description="a claimed delivery is retried after this long if its sender vanished; "
                    "above the delivery deadline",
    )
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    worker_batch_size: int = Field(default=50, ge=1)
    reminder_lead_seconds: int = Field(default=3600, ge=0,
                                       description="remind this long before a regulatory deadline")
    reminder_poll_seconds: float = Field(default=15.0, gt=0)

    @field_validator("webhook_allowlist", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(entry.strip() for entry in value.split(",") if entry.strip())
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_try(self) -> NotifySettings:
        if self.send_lease_seconds <= self.delivery_deadline_seconds:
            raise ValueError("NOTIFY_SEND_LEASE_SECONDS must exceed "
                             "NOTIFY_DELIVERY_DEADLINE_SECONDS, or a slow try is sent twice")
        return self
