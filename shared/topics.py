"""The topic catalog: the one place that names topics, keys, partitions and retention.

Everything about an incident is keyed by incident id, so per-incident order holds within a
topic; everything about a policy's risk is keyed by policy number. Each topic has a dead-letter
companion `<name>.dlq` for poison messages. Partitions are at least the maximum replicas of
any consumer group (see deploy/k8s HPAs), so consumers scale.
"""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"
DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    producer: str
    partitions: int
    retention_ms: int
    description: str

    @property
    def dead_letter(self) -> str:
        return self.name + DLQ_SUFFIX


POLICIES = Topic(
    "cyberclaims.policies", "policy_number", "intake", 6, 30 * DAY_MS,
    "Policy registered and updated; every service keeps its own copy.",
)
INCIDENTS = Topic(
    "cyberclaims.incidents", "incident_id", "intake", 6, 30 * DAY_MS,
    "First notice of loss, losses submitted by policyholders, regulator reports.",
)
RESPONSE = Topic(
    "cyberclaims.response", "incident_id", "triage", 6, 30 * DAY_MS,
    "Triage results, response jobs and their life cycle, response completed.",
)
CLAIMS = Topic(
    "cyberclaims.claims", "incident_id", "payout", 6, 30 * DAY_MS,
    "Claims, assessments, approvals, decisions and payments.",
)
NOTIFICATIONS = Topic(
    "cyberclaims.notifications", "incident_id", "notify", 6, 7 * DAY_MS,
    "Notification delivered or dead, for audit.",
)
RISK = Topic(
    "cyberclaims.risk", "policy_number", "risk", 6, 30 * DAY_MS,
    "Risk assessments requested and assessed, exposure alerts, remediation items' life cycle.",
)

CATALOG: tuple[Topic, ...] = (POLICIES, INCIDENTS, RESPONSE, CLAIMS, NOTIFICATIONS, RISK)
DEAD_LETTER_RETENTION_MS = 30 * DAY_MS
DEAD_LETTER_PARTITIONS = 1


def all_topic_specs() -> list[tuple[str, int, int]]:
    """(name, partitions, retention_ms) of every topic including dead-letter topics."""
    specs = [(t.name, t.partitions, t.retention_ms) for t in CATALOG]
    specs += [(t.dead_letter, DEAD_LETTER_PARTITIONS, DEAD_LETTER_RETENTION_MS) for t in CATALOG]
    return specs


def topic_named(name: str) -> Topic:
    for topic in CATALOG:
        if name in (topic.name, topic.dead_letter):
            return topic
    raise KeyError(name)
