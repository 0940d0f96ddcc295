"""Who is told what (rulebook section 11), as data.

Each event type maps to routes: who receives it (an audience, resolved to a recipient address
from the event's data), over which channels, with which template. docs/notifications.md shows
this table (`routing_table_markdown`; a test keeps the two equal).

Recipient addresses: `org:<org_id>` (a policyholder), `vendor:<vendor_id>`, `team:adjusters`,
`team:operators`. Channels: a webhook to every active subscription the recipient owns (that
wants the event type), an email where an address is known, and the in-app feed always.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.events import (
    Channel,
    ClaimApproved,
    ClaimClosedWithoutPayment,
    ClaimDenied,
    ClaimEventDeadLettered,
    ClaimPendingApproval,
    ExposureAlerted,
    IncidentReported,
    IncidentResponseCompleted,
    IncidentTriaged,
    JobDispatched,
    JobExpired,
    JobUnassigned,
    LateLossRejected,
    PaymentFailed,
    PaymentSucceeded,
    RemediationDueSoon,
    RemediationEscalated,
    RemediationOverdue,
    ResponseEventDeadLettered,
)

REGULATORY_REMINDER = "cyberclaims.notify.regulatory_reminder.v1"
"""Notify's own notification type for the reminder (it is not an event on Kafka)."""

ADJUSTERS = "team:adjusters"
OPERATORS = "team:operators"
TEAMS = (ADJUSTERS, OPERATORS)

ALL_CHANNELS = (Channel.webhook, Channel.email, Channel.in_app)


class Audience(StrEnum):
    policyholder = "policyholder"
    vendor = "vendor"
    adjusters = "adjusters"
    operators = "operators"

    def address(self, data: Mapping[str, Any]) -> str:
        """The recipient address this audience names for an event's data."""
        if self is Audience.policyholder:
            return f"org:{data['org_id']}"
        if self is Audience.vendor:
            return f"vendor:{data['vendor_id']}"
        return ADJUSTERS if self is Audience.adjusters else OPERATORS


@dataclass(frozen=True)
class Route:
    audience: Audience
    template: str
    channels: tuple[Channel, ...] = ALL_CHANNELS


@dataclass(frozen=True)
class Rule:
    description: str
    routes: tuple[Route, ...]


ROUTES: Mapping[str, Rule] = {
    IncidentReported.event_type: Rule("incident reported", (
        Route(Audience.policyholder, "incident_received"),
    )),
    IncidentTriaged.event_type: Rule("incident triaged", (
        Route(Audience.policyholder, "incident_triaged"),
    )),
    JobDispatched.event_type: Rule("job dispatched", (
        # vendors have no address in notify: their webhook and their feed
        Route(Audience.vendor, "job_dispatched", (Channel.webhook, Channel.in_app)),
    )),
    JobExpired.event_type: Rule("job expired", (
        Route(Audience.operators, "job_expired"),
    )),
    JobUnassigned.event_type: Rule("job unassigned", (
        Route(Audience.operators, "job_unassigned"),
    )),
    IncidentResponseCompleted.event_type: Rule("response completed", (
        Route(Audience.policyholder, "response_completed"),
        Route(Audience.adjusters, "response_completed"),
    )),
    ClaimPendingApproval.event_type: Rule("claim pending approval", (
        Route(Audience.adjusters, "claim_pending_approval"),
    )),
    ClaimApproved.event_type: Rule("claim approved", (
        Route(Audience.policyholder, "claim_approved"),
    )),
    ClaimDenied.event_type: Rule("claim denied", (
        Route(Audience.policyholder, "claim_denied"),
    )),
    ClaimClosedWithoutPayment.event_type: Rule("claim closed without payment", (
        Route(Audience.policyholder, "claim_closed_without_payment"),
    )),
    LateLossRejected.event_type: Rule("loss submitted after the claim's decision, rejected", (
        Route(Audience.policyholder, "late_loss_rejected"),
    )),
    PaymentSucceeded.event_type: Rule("payment made", (
        Route(Audience.policyholder, "payment_succeeded"),
    )),
    PaymentFailed.event_type: Rule("payment failed", (
        Route(Audience.policyholder, "payment_failed"),
        Route(Audience.operators, "payment_failed_alert"),
    )),
    ClaimEventDeadLettered.event_type: Rule("event about a claim dead-lettered", (
        Route(Audience.operators, "event_dead_lettered_alert"),
    )),
    ResponseEventDeadLettered.event_type: Rule("event about a response job dead-lettered", (
        Route(Audience.operators, "event_dead_lettered_alert"),
    )),
    REGULATORY_REMINDER: Rule("regulatory deadline in 1 hour and not yet confirmed", (
        Route(Audience.policyholder, "regulatory_reminder"),
    )),
    # risk: before the incident (docs/risk.md); these concern a policy, not an incident
    ExposureAlerted.event_type: Rule("exposure alert (fix within 72 hours)", (
        Route(Audience.policyholder, "exposure_alert"),
    )),
    RemediationDueSoon.event_type: Rule("remediation item due in 3 days", (
        Route(Audience.policyholder, "remediation_due_soon"),
    )),
    RemediationOverdue.event_type: Rule("remediation item overdue", (
        Route(Audience.policyholder, "remediation_overdue"),
    )),
    RemediationEscalated.event_type: Rule("overdue remediation on a tier D policy", (
        Route(Audience.operators, "remediation_escalated"),
    )),
}

ROUTED_TYPES = frozenset(ROUTES)
TEMPLATES = sorted({route.template for rule in ROUTES.values() for route in rule.routes})


def routing_table_markdown() -> str:
    """The routing table as the Markdown table docs/notifications.md shows."""
    lines = ["| event | type | recipient | channels | template |", "|---|---|---|---|---|"]
    for event_type, rule in ROUTES.items():
        for route in rule.routes:
            channels = ", ".join(channel.value for channel in route.channels)
            lines.append(f"| {rule.description} | `{event_type}` | {route.audience.value} | "
                         f"{channels} | `{route.template}` |")
    return "\n".join(lines)
