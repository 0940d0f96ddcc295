from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """`INTAKE_*` variables."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", env_file=".env", extra="ignore")

    port: int = 8001
    safety_net_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often the safety net looks for untriaged incidents.",
    )
    stuck_after_seconds: float = Field(
        default=600.0, gt=0,
        description="How long an incident may stay `reported` (no triage) before the safety net "
                    "sends its report's event again.",
    )
