"""6. Notify's cost: the CPU notify spends per incident, everything delivered, against the bare
cost of the same sends.

Notify runs alone as a process (on PostgreSQL and Tansu, as the other benchmarks start services),
with the SMTP sink `make run` and the tests use (in this process, as the tests run it), and a
webhook subscription for every recipient (each policyholder and vendor) pointing at an HTTP
receiver in this process. It is fed the events
it consumes of N incidents, as a ransomware burst produces them (`bench/burst.py`):
`IncidentReported`, then `IncidentTriaged` and three `JobDispatched` (one per job, each to a
vendor). Per the routing table (docs/notifications.md) that is, per incident, five webhooks (the
policyholder twice, each vendor once), two mails (the policyholder) and five in-app items, each
with its `NotificationDelivered`. The reports go first, and the rest once notify has consumed
them, as in the system: a triage follows its report, so its mail has an address.

Measured: notify's process CPU (user + system, /proc) from the first event until every webhook
and mail has arrived and every delivery and outbox row is done, per incident; its resident
memory (peak, and at the end); and the same less its idle polling (its CPU at rest, measured
just before, over the run's time). In the same run the baseline: one asyncio process (`python -m
bench.notify_cost`, told what to send on stdin) sending the same number of bare HTTP POSTs (bodies of the
same sizes, same receiver, httpx with keep-alive, as notify) and SMTP sends (messages of the same
sizes, same sink, aiosmtplib over as many kept-open connections as notify), its CPU per
incident. Target (issue 27): notify's CPU per incident at most 2 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import httpx
import uvicorn

from bench.common import Options, Outcome, Target
from bench.profile import finish_profile, profile_note, start_profile
from bench.rest import RestProbe
from bench.scenario import require_services
from bench.system import (
    RssSampler,
    System,
    cpu_seconds,
    free_port,
    token_service,
)
from bench.workload import Insured, insureds, report_body
from cyberclaims.sandbox import smtp
from services.notify.settings import NotifySettings
from services.notify.signing import DELIVERY_HEADER
from shared.auth import Role
from shared.events import (
    Contact,
    Envelope,
    Event,
    IncidentReported,
    IncidentTriaged,
    JobDispatched,
    JobType,
    OpenedJob,
    Priority,
    RegulatoryGrade,
)
from shared.kafka import KafkaPublisher, OutgoingMessage

NAME = "notify_cost"
TITLE = "Notify's CPU per incident, everything delivered, vs bare sends"
TARGET_CPU_MS = 2.0
JOBS = (JobType.forensics, JobType.ransomware_negotiation, JobType.data_recovery)
"""A ransomware report's jobs (triage's rules): one `JobDispatched` each."""
INCIDENTS_PER_ORG = 10  # the burst's: 10,000 reports across 1,000 SMEs
VENDORS = 20
DELIVERY_HEADER_BYTES = DELIVERY_HEADER.lower().encode()
TIME_LIMIT = 900.0
IDLE_SECONDS = 5.0
BASELINE_CONCURRENCY = 4
"""Sends in flight in the baseline: notify's lanes allow 4 webhooks to one host
(`webhook_connections_per_host`) and 4 SMTP connections (`smtp_connections`)."""


def run(options: Options) -> Outcome:
    require_services("notify")
    count = options.size(500, 50)
    run_id = uuid.uuid4().hex[:6]
    return asyncio.run(_run(options, count, run_id))


# --- the webhook receiver ------------------------------------------------------------------------


@dataclass
class Receiver:
    """Answers 200 to every POST; counts the distinct deliveries (by their header) and keeps the
    body sizes, for the baseline."""

    port: int
    deliveries: set[str] = field(default_factory=set)
    body_sizes: list[int] = field(default_factory=list)
    posts: int = 0
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.posts += 1
        for name, value in scope["headers"]:
            if name == DELIVERY_HEADER_BYTES:
                self.deliveries.add(value.decode())
                self.body_sizes.append(len(body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def start(self) -> None:
        self.server = uvicorn.Server(uvicorn.Config(
            self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
            access_log=False, timeout_graceful_shutdown=2))
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 - uvicorn only sets a flag
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task


# --- the events ----------------------------------------------------------------------------------


def _message(event: Event, now: datetime) -> OutgoingMessage:
    envelope = Envelope.wrap(event, source="bench/notify_cost", time=now)
    return OutgoingMessage(topic=event.topic.name, key=event.partition_key().encode(),
                           value=envelope.to_kafka_value(), headers=envelope.to_kafka_headers())


def incident_events(insured: list[Insured], vendors: list[str], count: int, seed: int
                    ) -> tuple[list[OutgoingMessage], list[OutgoingMessage]]:
    """The reports, and the triages and dispatches that follow them, of `count` incidents."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    reports, responses = [], []
    for i in range(count):
        one = insured[i % len(insured)]
        body = report_body(one, rng, "ransomware")
        incident_id = uuid.uuid4()
        reports.append(_message(IncidentReported(
            incident_id=incident_id, org_id=one.org_id, policy_number=one.policy_number,
            category=body["category"], title=body["title"], description=body["description"],
            occurred_at=body["occurred_at"], discovered_at=body["discovered_at"], reported_at=now,
            contact=Contact(**body["contact"]), systems_down=body["systems_down"],
            outage_started_at=None, affected_hosts=body["affected_hosts"], records_exposed=None,
            data_types=[], ransom_demanded=body["ransom_demanded"], funds_transferred=None,
        ), now))
        jobs = [OpenedJob(job_id=uuid.uuid4(), job_type=job_type) for job_type in JOBS]
        responses.append(_message(IncidentTriaged(
            incident_id=incident_id, org_id=one.org_id, policy_number=one.policy_number,
            priority=Priority.P2, regulatory_grade=RegulatoryGrade.serious,
            regulatory_deadline=now + timedelta(hours=24), jobs=jobs, triaged_at=now,
        ), now))
        for job in jobs:
            responses.append(_message(JobDispatched(
                incident_id=incident_id, org_id=one.org_id, job_id=job.job_id,
                job_type=job.job_type, at=now, vendor_id=rng.choice(vendors),
                priority=Priority.P2, accept_by=now + timedelta(minutes=30), attempt=1,
            ), now))
    return reports, responses


async def _publish(bootstrap: str, messages: list[OutgoingMessage]) -> None:
    publisher = KafkaPublisher(bootstrap, client_id="bench-notify-cost", idempotent=False)
    await publisher.start()
    try:
        for start in range(0, len(messages), 500):
            for sent in await publisher.send_many(messages[start:start + 500]):
                await sent
    finally:
        await publisher.stop()


# --- the service run -----------------------------------------------------------------------------


def _subscribe(system: System, receiver: Receiver, owners: list[str]) -> None:
    """A webhook subscription for every owner, made by an operator through notify's API."""
    tokens = token_service()
    headers = {"Authorization": f"Bearer {tokens.issue(role=Role.operator, sub='bench-ops')}"}
    with httpx.Client(base_url=system.urls["notify"], headers=headers, timeout=30) as client:
        for owner in owners:
            response = client.post("/v1/subscriptions", json={
                "owner": owner, "url": receiver.url,
                "secret": "bench-notify-cost-secret-0123456789"})
            if response.status_code != 201:
                raise RuntimeError(f"subscription of {owner}: {response.status_code} "
                                   f"{response.text[:300]}")


def _mail_sizes(maildir: Path) -> list[int]:
    return [path.stat().st_size for path in maildir.glob("*.eml")]


async def _unfinished(dsn: str) -> int:
    """Deliveries not yet delivered and outbox rows not yet sent, in notify's database."""
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(
            "SELECT (SELECT count(*) FROM deliveries WHERE state <> 'delivered')"
            " + (SELECT count(*) FROM outbox WHERE state <> 'sent')"))
    finally:
        await connection.close()


async def _until_delivered(system: System, receiver: Receiver, maildir: Path, webhooks: int,
                           mails: int, deadline: float) -> bool:
    """Wait until every webhook and mail arrived and notify has nothing left to do."""
    while time.monotonic() < deadline:
        if (len(receiver.deliveries) >= webhooks and len(_mail_sizes(maildir)) >= mails
                and await _unfinished(system.database_urls["notify"]) == 0):
            return True
        if crashed := system.crashed():
            raise RuntimeError(crashed)
        await asyncio.sleep(0.2)
    return False


async def _until_at_rest(system: System) -> float | None:
    """Seconds until notify has consumed every report (its consumer group's lag 0, its outbox
    flushed); None if not within the time limit."""
    probe = RestProbe(system)
    await probe.start()
    try:
        times = await probe.until_at_rest(time.time(), TIME_LIMIT)
    finally:
        await probe.stop()
    return times.seconds["notify"]


async def _idle_cpu_seconds(pid: int) -> float:
    """Notify's CPU seconds per second at rest (every loop polling, nothing to do)."""
    before = cpu_seconds(pid) or 0.0
    await asyncio.sleep(IDLE_SECONDS)
    return ((cpu_seconds(pid) or 0.0) - before) / IDLE_SECONDS


async def _run(options: Options, count: int, run_id: str) -> Outcome:
    receiver = Receiver(free_port())
    await receiver.start()
    settings = NotifySettings()
    smtp_port = free_port()
    system = System(["notify"], extra_env={"NOTIFY_WEBHOOK_ALLOWLIST": "127.0.0.1",
                                           "NOTIFY_SMTP_PORT": str(smtp_port)})
    # The sink runs in this process, as in the tests (a thread of its own): a niced process of
    # its own took over 30 s to start on the busy machine.
    maildir = system.workdir / "mail"
    sink = smtp.start("127.0.0.1", smtp_port, maildir, echo=False)
    try:
        await asyncio.to_thread(system.start)
        insured = insureds(max(1, count // INCIDENTS_PER_ORG), options.seed, run_id)
        vendors = [f"vendor-{run_id}-{i:03d}" for i in range(VENDORS)]
        await asyncio.to_thread(_subscribe, system, receiver,
                                [f"org:{one.org_id}" for one in insured]
                                + [f"vendor:{vendor}" for vendor in vendors])
        reports, responses = incident_events(insured, vendors, count, options.seed)
        webhooks = count * (2 + len(JOBS))  # the policyholder's two, one per vendor's job
        mails = count * 2
        pid = system.pid("notify")
        rss = RssSampler(system)
        rss.start()
        profiler = (start_profile(pid, TIME_LIMIT, options.results_dir / "notify_profile.collapsed")
                    if options.profile else None)
        idle_cpu_seconds = await _idle_cpu_seconds(pid)
        begun = time.monotonic()
        cpu_before = cpu_seconds(pid)
        await _publish(system.bootstrap, reports)
        consumed = await _until_at_rest(system)
        await _publish(system.bootstrap, responses)
        done = await _until_delivered(system, receiver, maildir, webhooks, mails,
                                      begun + TIME_LIMIT)
        cpu_after = cpu_seconds(pid)
        elapsed = time.monotonic() - begun
        rss_at_end = system.rss()["notify"]
        await rss.stop()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy stops sampling and writes its file
        profile_error = (await asyncio.to_thread(finish_profile, profiler)
                         if options.profile else None)
        delivered_webhooks = len(receiver.deliveries)
        webhook_sizes = list(receiver.body_sizes)
        mail_sizes = _mail_sizes(maildir)
        baseline = await _baseline(receiver, smtp_port, webhook_sizes, mail_sizes)
    finally:
        await asyncio.to_thread(system.stop)
        await receiver.stop()
        sink.stop()
    if cpu_before is None or cpu_after is None:
        raise RuntimeError("notify exited during the run")
    service_ms = 1000 * (cpu_after - cpu_before) / count
    net_ms = 1000 * (cpu_after - cpu_before - idle_cpu_seconds * elapsed) / count
    baseline_ms = 1000 * baseline["cpu_seconds"] / count
    figures = {
        "incidents": count,
        "events": len(reports) + len(responses),
        "webhooks_expected": webhooks,
        "webhooks_delivered": delivered_webhooks,
        "mails_expected": mails,
        "mails_delivered": len(mail_sizes),
        "all_delivered": done,
        "reports_consumed_seconds": consumed,
        "seconds_until_all_delivered": round(elapsed, 1),
        "notify_cpu_ms_per_incident": round(service_ms, 2),
        "notify_idle_cpu_percent": round(100 * idle_cpu_seconds, 2),
        "notify_cpu_ms_per_incident_net_of_idle": round(net_ms, 2),
        "baseline_cpu_ms_per_incident": round(baseline_ms, 2),
        "ratio_notify_to_baseline": round(service_ms / baseline_ms, 2) if baseline_ms else None,
        "ratio_net_of_idle_to_baseline": round(net_ms / baseline_ms, 2) if baseline_ms else None,
        "baseline_seconds": round(baseline["seconds"], 2),
        "webhook_body_bytes_mean": round(sum(webhook_sizes) / len(webhook_sizes))
        if webhook_sizes else None,
        "mail_bytes_mean": round(sum(mail_sizes) / len(mail_sizes)) if mail_sizes else None,
        "notify_rss_kib_peak": rss.peak.get("notify"),
        "notify_rss_kib_at_end": rss_at_end,
    }
    notes = [
        f"{count} incidents ({len(insured)} SMEs, {VENDORS} vendors), each an IncidentReported, "
        f"an IncidentTriaged and {len(JOBS)} JobDispatched: {2 + len(JOBS)} webhooks, 2 mails "
        f"and {2 + len(JOBS)} in-app items per incident, each with its NotificationDelivered",
        "notify_cpu_ms_per_incident: notify's process CPU (user + system) from the first event "
        "published until every webhook and mail had arrived and no delivery or outbox row was "
        "left, over the incidents (its idle polling in that time included); "
        f"notify_idle_cpu_percent: its CPU at rest over {IDLE_SECONDS:g} s before the "
        "first event (polling loops, consumer fetches), a share of a core; "
        "..._net_of_idle: the same less that idle rate over the run's time (on a busy machine "
        "the run takes longer, and its idle polling adds up)",
        f"baseline: one asyncio process, {len(webhook_sizes)} bare POSTs (httpx, keep-alive) of "
        f"the same bodies' sizes to the same receiver and {len(mail_sizes)} SMTP sends "
        f"(aiosmtplib, {BASELINE_CONCURRENCY} kept-open connections) of the same messages' "
        f"sizes to the same sink, {BASELINE_CONCURRENCY} of each in flight; its CPU from its "
        "first send to its last",
        f"notify's settings as deployed (defaults: {settings.webhook_connections_per_host} "
        f"webhooks per host, {settings.smtp_connections} SMTP connections), but the "
        "allow-list names 127.0.0.1 (the receiver)",
    ]
    if not done:
        notes.append("not everything was delivered within the time limit")
    if options.profile:
        notes.append(profile_note(options, "notify", NAME, profile_error))
    return Outcome(
        figures=figures,
        targets=[Target("notify's CPU per incident, everything delivered", round(service_ms, 2),
                        "<=", TARGET_CPU_MS, "ms"),
                 Target("webhooks and mails not delivered",
                        webhooks - delivered_webhooks + mails - len(mail_sizes), "<=", 0)],
        parameters={"incidents": count, "orgs": len(insured), "vendors": VENDORS,
                    "jobs_per_incident": len(JOBS)},
        notes=notes)


# --- the baseline --------------------------------------------------------------------------------


async def _baseline(receiver: Receiver, smtp_port: int, webhook_sizes: list[int],
                    mail_sizes: list[int]) -> dict[str, float]:
    """Run the baseline in its own process, once notify is done, and read its figures."""
    spec = {"url": receiver.url, "smtp_port": smtp_port, "webhook_sizes": webhook_sizes,
            "mail_sizes": mail_sizes}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.notify_cost", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    output, _ = await process.communicate(json.dumps(spec).encode())
    if process.returncode != 0:
        raise RuntimeError(f"the baseline failed (exit {process.returncode})")
    figures: dict[str, float] = json.loads(output)
    return figures


def _mail_bytes(size: int, number: int) -> bytes:
    """A message of `size` bytes: a few headers and a body of base64-like lines."""
    head = (f"From: bench@insurer.example\r\nTo: it@org.example.com\r\n"
            f"Subject: baseline {number}\r\nMessage-ID: <{number}@bench>\r\n\r\n").encode()
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
    body = (line * (max(0, size - len(head)) // len(line) + 1))[:max(0, size - len(head))]
    return head + body


async def bare_sends(url: str, smtp_port: int, webhook_sizes: list[int],
                     mail_sizes: list[int]) -> dict[str, float]:
    """The baseline's work: every POST and every mail, `BASELINE_CONCURRENCY` of each in flight;
    CPU and wall time of the sending alone (bodies built first)."""
    bodies = [json.dumps({"pad": "x" * max(0, size - 10)}).encode() for size in webhook_sizes]
    messages = [_mail_bytes(size, i) for i, size in enumerate(mail_sizes)]
    async with httpx.AsyncClient(timeout=30) as client:
        connections = [aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, timeout=30)
                       for _ in range(BASELINE_CONCURRENCY)]
        for connection in connections:
            await connection.connect()

        async def post(part: list[bytes]) -> None:
            for body in part:
                response = await client.post(url, content=body, headers={
                    "Content-Type": "application/json"})
                response.raise_for_status()

        async def mail(connection: aiosmtplib.SMTP, part: list[bytes]) -> None:
            for message in part:
                await connection.sendmail("bench@insurer.example", ["it@org.example.com"],
                                          message)

        times, started = os.times(), time.monotonic()
        await asyncio.gather(
            *(post(bodies[i::BASELINE_CONCURRENCY]) for i in range(BASELINE_CONCURRENCY)),
            *(mail(connection, messages[i::BASELINE_CONCURRENCY])
              for i, connection in enumerate(connections)))
        after, seconds = os.times(), time.monotonic() - started
        for connection in connections:
            await connection.quit()
    return {"cpu_seconds": (after.user + after.system) - (times.user + times.system),
            "seconds": seconds}


def main() -> None:
    """The baseline process: what to send is read as JSON from stdin, its figures written to
    stdout."""
    spec = json.load(sys.stdin)
    print(json.dumps(asyncio.run(bare_sends(spec["url"], spec["smtp_port"],
                                            spec["webhook_sizes"], spec["mail_sizes"]))))


if __name__ == "__main__":
    main()
