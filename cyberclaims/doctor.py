"""`cyberclaims doctor`: the first thing an on-call engineer runs.

One report, read from where the truth is: consumer lag per group (the broker's committed offsets
against the partitions' ends), outbox rows waiting to be published and the oldest one's age per
service, dead letters per topic, and state machines that stopped moving (counted in each
service's own database). Read-only: it changes nothing anywhere.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import Executable, Integer, Select, bindparam, func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.payout.safety_net import unassessed_ready_claims
from shared import dlq
from shared.clock import Clock
from shared.db import UTCDateTime, create_engine
from shared.kafka import partition_ends, retry_until_connected
from shared.topics import CATALOG

StuckQuery = str | Callable[[Mapping[str, datetime]], Select[Any]]
"""SQL text, or a service's own query built from the moments (`stale` ...)."""

STUCK: Mapping[str, Mapping[str, StuckQuery]] = {
    "intake": {
        "incidents with no triage for over ten minutes":
            "SELECT count(*) FROM incidents WHERE status = 'reported' AND reported_at < :ten_ago",
    },
    "triage": {
        "jobs dispatched without an acceptance deadline":
            "SELECT count(*) FROM jobs WHERE status = 'dispatched' AND accept_by IS NULL",
        "jobs dispatched past their acceptance deadline":
            "SELECT count(*) FROM jobs WHERE status = 'dispatched' AND accept_by < :stale",
        "incidents awaiting their policy for over an hour":
            "SELECT count(*) FROM incidents WHERE status = 'awaiting_policy' "
            "AND reported_at < :hour_ago",
        "incidents frozen by a dead-lettered event":
            "SELECT count(DISTINCT incident_id) FROM dead_letters",
    },
    "payout": {
        # What payout's safety net assesses, from its own query: not a claim with a data issue,
        # nor one whose hourly loss awaits the outage figure (both wait for an adjuster).
        "claims ready to assess but unassessed":
            lambda moments: unassessed_ready_claims(moments["stale"]),
        "payments pending past their next attempt":
            "SELECT count(*) FROM payments WHERE state = 'pending' AND next_attempt_at < :stale",
        "payments failed (retry: cyberclaims payments retry CLAIM_ID)":
            "SELECT count(*) FROM payments WHERE state = 'failed'",
        "claims frozen by a dead-lettered event":
            "SELECT count(DISTINCT incident_id) FROM dead_letters",
    },
    "notify": {
        "deliveries pending past their next attempt":
            "SELECT count(*) FROM deliveries WHERE state = 'pending' AND next_attempt_at < :stale",
    },
}
"""Per service: what counts as stopped, as a query over its own tables (a count each). `:stale`
is a minute ago, `:ten_ago` ten minutes ago, `:hour_ago` an hour ago: younger rows are still
moving."""

STALE_SECONDS = 60


@dataclass
class ServiceHealth:
    outbox_pending: int | None = None
    oldest_pending_seconds: float | None = None
    stuck: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Report:
    lag: dict[str, dict[str, int]] = field(default_factory=dict)
    """group -> topic -> messages not yet consumed (committed offset to end)."""
    dead_letters: dict[str, int] = field(default_factory=dict)
    services: dict[str, ServiceHealth] = field(default_factory=dict)
    broker_error: str | None = None

    @property
    def healthy(self) -> bool:
        return (self.broker_error is None and not any(self.dead_letters.values())
                and all(s.error is None and not any(s.stuck.values())
                        for s in self.services.values()))

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "healthy": self.healthy}

    def render(self) -> str:
        lines = ["consumer lag (messages not yet consumed):"]
        if self.broker_error:
            lines.append(f"  broker unreachable: {self.broker_error}")
        for group, topics in self.lag.items():
            lines.append(f"  {group:<24} {sum(topics.values()):>7}  "
                         + ", ".join(f"{t}={n}" for t, n in topics.items() if n))
        lines.append("outbox (pending rows, oldest):")
        for name, health in self.services.items():
            if health.error:
                lines.append(f"  {name:<24} database unreachable: {health.error}")
                continue
            oldest = (f"{health.oldest_pending_seconds:.0f}s"
                      if health.oldest_pending_seconds is not None else "-")
            lines.append(f"  {name:<24} {health.outbox_pending:>7}  oldest {oldest}")
        lines.append("dead letters (cyberclaims dlq list):")
        lines += [f"  {topic:<32} {count:>5}" for topic, count in self.dead_letters.items()
                  if count] or ["  none"]
        lines.append("stuck state machines:")
        stuck = [f"  {name}: {what}: {count}" for name, health in self.services.items()
                 for what, count in health.stuck.items() if count]
        lines += stuck or ["  none"]
        lines.append("healthy" if self.healthy else "ATTENTION: see above")
        return "\n".join(lines)


async def collect(bootstrap: str, databases: Mapping[str, str], clock: Clock) -> Report:
    """The report for the services whose database URLs are given (name -> URL)."""
    report = Report()
    try:
        report.lag = await consumer_lag(bootstrap, [f"cyberclaims-{name}" for name in databases])
        letters = await dlq.read_all(bootstrap)
        report.dead_letters = dict(Counter(letter.record.topic for letter in letters))
    except Exception as exc:
        report.broker_error = f"{type(exc).__name__}: {exc}"
    healths = await asyncio.gather(*(service_health(name, url, clock.now())
                                     for name, url in databases.items()))
    report.services = dict(zip(databases, healths, strict=True))
    return report


async def consumer_lag(bootstrap: str, groups: list[str]) -> dict[str, dict[str, int]]:
    """Per group and topic, the messages between the group's committed offsets and the ends
    of the partitions it has committed on (read without joining the group)."""
    ends = await partition_ends(bootstrap, [topic.name for topic in CATALOG])
    lag: dict[str, dict[str, int]] = {}
    for group in groups:
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                  enable_auto_commit=False, client_id="cyberclaims-doctor")
        await retry_until_connected(reader.start, what="doctor", attempts=3)
        try:
            per_topic: Counter[str] = Counter()
            for tp in ends:
                committed = await reader.committed(tp)
                if committed is not None:
                    per_topic[tp.topic] += max(0, ends[tp] - committed)
        finally:
            await reader.stop()
        lag[group] = dict(sorted(per_topic.items()))
    return lag


async def service_health(name: str, url: str, now: datetime) -> ServiceHealth:
    engine = create_engine(url, pool_size=1)
    health = ServiceHealth()
    moments = {"stale": now - timedelta(seconds=STALE_SECONDS),
               "ten_ago": now - timedelta(minutes=10), "hour_ago": now - timedelta(hours=1)}
    try:
        async with engine.connect() as connection:
            pending, oldest = (await connection.execute(
                text("SELECT count(*) AS pending, min(created_at) AS oldest FROM outbox "
                     "WHERE state = 'pending'").columns(pending=Integer(), oldest=UTCDateTime())
            )).one()
            health.outbox_pending = pending
            if oldest is not None:
                health.oldest_pending_seconds = (now - oldest).total_seconds()
            for what, query in STUCK.get(name, {}).items():
                health.stuck[what] = await _count(connection, query, moments)
    except (OSError, DBAPIError) as exc:
        health.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        await engine.dispose()
    return health


async def _count(connection: AsyncConnection, query: StuckQuery,
                 moments: Mapping[str, datetime]) -> int:
    """One stuck-state count; a table the service has not got (yet) counts as none."""
    statement: Executable
    if isinstance(query, str):
        statement = text(query).bindparams(*(bindparam(key, value, type_=UTCDateTime())
                                             for key, value in moments.items()
                                             if f":{key}" in query))
    else:
        statement = select(func.count()).select_from(query(moments).subquery())
    try:
        async with connection.begin_nested():
            return int((await connection.execute(statement)).scalar_one())
    except (ProgrammingError, OperationalError):
        return 0
