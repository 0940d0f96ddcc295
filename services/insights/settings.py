from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class InsightsSettings(ServiceSettings):
    """`INSIGHTS_*` variables: the port and the privacy threshold of every published cell."""

    model_config = SettingsConfigDict(env_prefix="INSIGHTS_", env_file=".env", extra="ignore")

    port: int = 8006
    min_organisations: int = Field(
        default=5, ge=2,
        description="k: a published cell covers at least this many distinct organisations")
