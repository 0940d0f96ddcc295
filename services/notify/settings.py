from pydantic import Field
from pydantic_settings import SettingsConfigDict

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
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, description="tries before a delivery is dead")
    backoff_base_seconds: float = Field(default=30.0, gt=0)
    backoff_cap_seconds: float = Field(default=3600.0, gt=0)
    send_lease_seconds: float = Field(
        default=60.0, gt=0,
        description="a claimed delivery is retried after this long if its sender vanished; "
                    "keep it above both send timeouts",
    )
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    worker_batch_size: int = Field(default=50, ge=1)
    reminder_lead_seconds: int = Field(default=3600, ge=0,
                                       description="remind this long before a regulatory deadline")
    reminder_poll_seconds: float = Field(default=15.0, gt=0)
