from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PayoutSettings(ServiceSettings):
    """`PAYOUT_*` variables: the payment provider, the retry policy and the approval rules."""

    model_config = SettingsConfigDict(env_prefix="PAYOUT_", env_file=".env", extra="ignore")

    port: int = 8003
    payment_provider_url: str = "http://127.0.0.1:8010"
    payment_timeout_seconds: float = Field(default=10.0, gt=0)
    payment_lease_seconds: float = Field(
        default=30.0, gt=0,
        description="How long a payment attempt in flight is left alone before it is tried again "
                    "(after a crash). Longer than the timeout, so two tries never overlap.",
    )
    payment_max_attempts: int = Field(default=5, ge=1)
    payment_retry_base_seconds: float = Field(default=2.0, gt=0)
    payment_retry_max_seconds: float = Field(default=600.0, gt=0)
    payment_poll_seconds: float = Field(default=1.0, gt=0)
    payment_batch_size: int = Field(default=10, ge=1)
    auto_approval_limit: Decimal = Decimal("50000")
    two_approver_threshold: Decimal = Decimal("1000000")
    vendor_verification_limit: Decimal = Field(
        default=Decimal("50000"), ge=0,
        description="The loss items of the vendors' completion reports count as verified while "
                    "together they are within this amount; above it, each arrives unverified "
                    "and an adjuster verifies it.",
    )
    safety_net_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often the safety net looks for stuck claims and payments.",
    )
    stuck_after_seconds: float = Field(
        default=300.0, gt=0,
        description="How long a claim ready to assess, or a payment due, may stay untouched "
                    "before the safety net repairs it.",
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_try(self) -> PayoutSettings:
        if self.payment_lease_seconds <= self.payment_timeout_seconds:
            raise ValueError("PAYOUT_PAYMENT_LEASE_SECONDS must exceed "
                             "PAYOUT_PAYMENT_TIMEOUT_SECONDS, or two tries of a payment overlap")
        return self
