"""What must hold after any fault, once the system is at rest: read from the services'
databases, the payment provider, the webhook receiver and the broker itself."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

from shared.kafka import partition_ends, read_from_beginning, retry_until_connected
from shared.topics import CATALOG
from tests.chaos.driver import EXPECTED_JOBS, Lifecycle
from tests.chaos.system import SERVICE_NAMES, ChaosSystem

ONCE_ON_TIMELINE = {"incident.triaged", "response.completed", "claim.approved", "claim.denied",
                    "claim.closed_without_payment", "payment.succeeded"}


@dataclass
class Verdict:
    """A scenario's figures (docs/reliability.md) and every broken promise found."""

    lifecycles: int = 0
    done: int = 0
    stuck: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"lifecycles": self.lifecycles, "done": self.done, "lost": len(self.lost),
                "duplicated": len(self.duplicated), "stuck": len(self.stuck)}

    def failures(self) -> list[str]:
        return [*(f"stuck: {s}" for s in self.stuck), *(f"lost: {s}" for s in self.lost),
                *(f"duplicated: {s}" for s in self.duplicated), *self.problems]


async def _rows(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def judge(system: ChaosSystem, lifecycles: list[Lifecycle]) -> Verdict:
    verdict = Verdict(lifecycles=len(lifecycles))
    databases = system.databases()
    incidents = [life.incident_id for life in lifecycles if life.incident_id]
    keys = [life.key for life in lifecycles]

    # Every report answered 201 is one incident, triaged once, with its playbook's jobs once.
    stored = await _rows(databases["intake"],
                         "SELECT idempotency_key, count(*) AS n FROM incidents "
                         "WHERE idempotency_key = ANY($1) GROUP BY idempotency_key", keys)
    per_key = {row["idempotency_key"]: row["n"] for row in stored}
    for life in lifecycles:
        found = per_key.get(life.key, 0)
        if found == 0:
            verdict.lost.append(f"report {life.key}")
        elif found > 1:
            verdict.duplicated.append(f"report {life.key} x{found}")
    timeline = await _rows(databases["intake"],
                           "SELECT incident_id::text AS incident, type, count(*) AS n FROM timeline "
                           "WHERE incident_id::text = ANY($1) GROUP BY 1, 2", incidents)
    triaged = {row["incident"] for row in timeline if row["type"] == "incident.triaged"}
    for row in timeline:
        if row["n"] > 1 and row["type"] in ONCE_ON_TIMELINE:
            verdict.duplicated.append(f"timeline {row['incident']} {row['type']} x{row['n']}")
    jobs = await _rows(databases["triage"],
                       "SELECT incident_id::text AS incident, job_type, count(*) AS n FROM jobs "
                       "WHERE incident_id::text = ANY($1) GROUP BY 1, 2", incidents)
    jobs_per_incident = Counter(row["incident"] for row in jobs)
    for row in jobs:
        if row["n"] > 1:
            verdict.duplicated.append(f"job {row['incident']} {row['job_type']} x{row['n']}")
    for life in lifecycles:
        if life.incident_id is None:
            continue
        if life.incident_id not in triaged:
            verdict.lost.append(f"triage of {life.incident_id}")
        if jobs_per_incident[life.incident_id] != EXPECTED_JOBS[life.kind]:
            verdict.problems.append(f"{life.incident_id} has {jobs_per_incident[life.incident_id]}"
                                    f" job types, expected {EXPECTED_JOBS[life.kind]}")

    # Every claim final; exactly one payment per approved claim, at the provider too.
    claims = await _rows(databases["payout"],
                         "SELECT c.incident_id::text AS incident, c.status, p.id::text AS payment, "
                         "p.state, p.amount FROM claims c LEFT JOIN payments p ON p.claim_id = c.id "
                         "WHERE c.incident_id::text = ANY($1)", incidents)
    by_incident = {row["incident"]: row for row in claims}
    for life in lifecycles:
        row = by_incident.get(life.incident_id or "")
        if row is None:
            verdict.stuck.append(f"{life.kind} {life.incident_id}: no claim")
        elif row["status"] not in ("paid", "closed_without_payment", "denied"):
            verdict.stuck.append(f"{life.kind} {life.incident_id}: claim {row['status']}; "
                                 f"last refusal seen: {life.last_refusal}")
        else:
            verdict.done += 1
    async with httpx.AsyncClient(timeout=10) as client:
        provider = (await client.get(system.urls["payments"] + "/v1/payments")).json()["items"]
    paid_at_provider = Counter(item["idempotency_key"] for item in provider)
    ours = {row["payment"]: row for row in claims if row["payment"]}
    for payment, row in ours.items():
        times = paid_at_provider.get(payment, 0)
        if row["state"] == "succeeded" and times != 1:
            verdict.problems.append(f"payment {payment} succeeded but the provider has {times}")
        if row["status"] == "paid" and row["state"] != "succeeded":
            verdict.problems.append(f"claim of {row['incident']} paid, payment {row['state']}")
    approved = [row for row in claims if row["status"] == "paid"]
    provider_ours = [key for key in paid_at_provider if key in ours]
    if len(provider_ours) != len(approved):
        verdict.problems.append(f"{len(provider_ours)} payments at the provider for "
                                f"{len(approved)} paid claims")

    # Notifications: one delivery per (event, recipient, channel); webhooks at least once.
    deliveries = await _rows(databases["notify"],
                             "SELECT source_event_id, recipient, channel, target, count(*) AS n "
                             "FROM deliveries GROUP BY 1, 2, 3, 4 HAVING count(*) > 1")
    verdict.duplicated += [f"delivery {row['source_event_id']} {row['recipient']} x{row['n']}"
                           for row in deliveries]
    undelivered = await _rows(databases["notify"],
                              "SELECT id::text AS id, state FROM deliveries "
                              "WHERE channel = 'webhook' AND state <> 'delivered'")
    verdict.problems += [f"webhook delivery {row['id']} {row['state']}" for row in undelivered]

    # The broker: no dead letter but the ones a scenario planted, no consumer behind.
    dead = await read_from_beginning(system.bootstrap, [t.dead_letter for t in CATALOG])
    unexpected = [r for r in dead if header(r.headers, "ce_id") not in system.planted_dead_letters]
    verdict.problems += [f"dead letter {r.topic}:{r.partition}:{r.offset} "
                         f"{header(r.headers, 'ce_type')}: {header(r.headers, 'dlq_error')[:200]}"
                         for r in unexpected]
    verdict.problems += [f"consumer group {group} is {lag} behind"
                         for group, lag in (await consumer_lag(system.bootstrap)).items() if lag]
    return verdict


async def at_rest(system: ChaosSystem) -> bool:
    """Nothing left to do: no outbox row pending, no webhook waiting, no consumer behind."""
    for url in system.databases().values():
        pending = await _rows(url, "SELECT count(*) AS n FROM outbox WHERE state = 'pending'")
        if pending[0]["n"]:
            return False
    waiting = await _rows(system.databases()["notify"],
                          "SELECT count(*) AS n FROM deliveries WHERE state <> 'delivered' "
                          "AND state <> 'dead'")
    if waiting[0]["n"]:
        return False
    return not any((await consumer_lag(system.bootstrap)).values())


def header(headers: Any, name: str) -> str:
    for key, value in headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return ""


async def consumer_lag(bootstrap: str) -> dict[str, int]:
    """Messages each service's consumer group has not committed yet, over every topic."""
    ends = await partition_ends(bootstrap, [topic.name for topic in CATALOG])
    lag: dict[str, int] = {}
    for service in SERVICE_NAMES:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"cyberclaims-{service}",
                                    enable_auto_commit=False)
        await retry_until_connected(consumer.start, what="lag reader")
        try:
            behind = 0
            for tp in ends:
                committed = await consumer.committed(tp)
                if committed is not None:
                    behind += max(0, ends[tp] - committed)
            lag[service] = behind
        finally:
            await consumer.stop()
    return lag
