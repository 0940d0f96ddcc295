from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.triage.rules import ResponseTimes
from shared.events import Priority
from shared.settings import ServiceSettings


class TriageSettings(ServiceSettings):
    """`TRIAGE_*` variables: the rulebook's response times (section 5) and the timer's pace."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="ignore")

    port: int = 8002
    kafka_fetch_max_wait_ms: int = Field(default=20, ge=1)  # a report's way to its vendors
    consumer_linger_ms: int = Field(default=0, ge=0)  # the same
    sla_p1_minutes: float = Field(default=15, gt=0)
    sla_p2_minutes: float = Field(default=60, gt=0)
    sla_p3_minutes: float = Field(default=4 * 60, gt=0)
    sla_p4_minutes: float = Field(default=24 * 60, gt=0)
    regulatory_window_minutes: float = Field(default=4 * 60, gt=0)
    critical_infrastructure_window_minutes: float = Field(default=60, gt=0)
    assessment_acceptance_hours: float = Field(default=72, gt=0)
    timer_poll_seconds: float = Field(
        default=1.0, gt=0,
        description="How often the timer looks for expired acceptance deadlines and waiting jobs.",
    )

    def response_times(self) -> ResponseTimes:
        return ResponseTimes(
            sla={Priority.P1: timedelta(minutes=self.sla_p1_minutes),
                 Priority.P2: timedelta(minutes=self.sla_p2_minutes),
                 Priority.P3: timedelta(minutes=self.sla_p3_minutes),
                 Priority.P4: timedelta(minutes=self.sla_p4_minutes)},
            regulatory_window=timedelta(minutes=self.regulatory_window_minutes),
            critical_infrastructure_window=timedelta(
                minutes=self.critical_infrastructure_window_minutes),
            assessment_acceptance=timedelta(hours=self.assessment_acceptance_hours),
        )
