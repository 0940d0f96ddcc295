from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.risk.rules import RiskRules
from shared.controls import Control
from shared.settings import ServiceSettings

DEFAULT_WEIGHTS: dict[Control, int] = {
    Control.mfa_remote_access: 15,
    Control.offline_backups_tested: 15,
    Control.mfa_email: 10,
    Control.edr_on_endpoints: 10,
    Control.critical_patches_within_14_days: 10,
    Control.no_exposed_rdp_or_smb: 10,
    Control.privileged_access_separated: 10,
    Control.email_authentication_dmarc: 5,
    Control.central_logging_90_days: 5,
    Control.incident_response_plan_tested: 5,
    Control.security_awareness_training: 5,
}


class RiskSettings(ServiceSettings):
    """`RISK_*` variables: the risk rulebook's weights, thresholds and due dates (docs/risk.md)
    and the reminder timer's pace."""

    model_config = SettingsConfigDict(env_prefix="RISK_", env_file=".env", extra="ignore")

    port: int = 8005
    control_weights: dict[Control, int] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    critical_cvss: float = Field(default=9.0, ge=0, le=10)
    high_cvss: float = Field(default=7.0, ge=0, le=10)
    critical_finding_penalty: int = Field(default=10, ge=0)
    high_finding_penalty: int = Field(default=5, ge=0)
    tier_a_from: int = Field(default=85, ge=0, le=100)
    tier_b_from: int = Field(default=70, ge=0, le=100)
    tier_c_from: int = Field(default=50, ge=0, le=100)
    modifier_a_percent: int = -15
    modifier_b_percent: int = 0
    modifier_c_percent: int = 20
    modifier_d_percent: int = 50
    critical_due_days: float = Field(default=7, gt=0)
    high_due_days: float = Field(default=30, gt=0)
    other_due_days: float = Field(default=90, gt=0)
    exposure_due_hours: float = Field(default=72, gt=0)
    reminder_lead_days: float = Field(default=3, ge=0)
    timer_poll_seconds: float = Field(default=15.0, gt=0)

    def rules(self) -> RiskRules:
        return RiskRules(
            weights=dict(self.control_weights),
            critical_cvss=self.critical_cvss, high_cvss=self.high_cvss,
            critical_penalty=self.critical_finding_penalty,
            high_penalty=self.high_finding_penalty,
            tier_floors=(self.tier_a_from, self.tier_b_from, self.tier_c_from),
            modifiers=(self.modifier_a_percent, self.modifier_b_percent,
                       self.modifier_c_percent, self.modifier_d_percent),
            critical_due=timedelta(days=self.critical_due_days),
            high_due=timedelta(days=self.high_due_days),
            other_due=timedelta(days=self.other_due_days),
            exposure_due=timedelta(hours=self.exposure_due_hours),
            reminder_lead=timedelta(days=self.reminder_lead_days),
        )
