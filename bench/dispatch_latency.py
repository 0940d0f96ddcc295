"""2. Latency from report accepted (intake's 201 reaches the reporter) to its first response job
dispatched on Kafka (JobDispatched on the response topic), at a steady open-loop rate with every
service running. Targets: p50 <= 50 ms, p99 <= 250 ms. Also reported: until every job of the
incident is placed (dispatched, or unassigned for want of a vendor).

The triage hop (IncidentReported on Kafka to JobDispatched on Kafka), which holds nearly all of
the latency under load, is split with the timestamps the services wrote themselves: intake's
outbox (`sent_at`: when the relay pass that published the report marked it sent, after Kafka
acknowledged every row of that pass), triage's inbox (when its consumer claimed the report, at
the start of the transaction that applied its fetch) and triage's outbox (when the first job
was staged, and when its relay pass marked it sent). So the parts are: waiting for triage's
consumer (queueing; a little understated, as `sent_at` comes at the end of a relay pass), the
transaction until the job is staged, and the rest of the fetch, the commit and the relay.

Each process's CPU per report over the steady run (every service, the broker, PostgreSQL, the
stand-ins and the measuring process) and the cores busy on average say whether the machine was
full: a run on a full machine measures queueing.

After the target's rate, a few lower steady rates run for a shorter time each, each started
with the services back at rest: the highest rate up to which every one of them met both targets
in this run says roughly what this machine carries within them (one 20 s window per rate, so
it can move a step between runs).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncpg

from bench import charts
from bench.common import Options, Outcome, Target, latency_summary_ms
from bench.loadgen import LoadPlan, LoadResult, run_load
from bench.scenario import full_system, prepare, require_services, warm_up, watcher
from bench.system import (
    RssSampler,
    catch_up,
    cpu_ms_each,
    cpu_ms_text,
    machine_cpu_used,
    until_at_rest,
)
from bench.watch import Watcher, dead_letter_count
from bench.workload import PreparedReport, prepared_reports
from shared.events import IncidentReported, JobDispatched

NAME = "dispatch_latency"
TITLE = "Report accepted to job dispatched (latency)"
P50_TARGET_MS = 50
P99_TARGET_MS = 250
LOWER_RATES = (10.0, 20.0, 30.0, 40.0)
LOWER_RATE_SECONDS = 20.0
ON_SCHEDULE_SECONDS = 0.1
"""An open loop whose requests all left within this of their schedule kept its rate."""


def run(options: Options) -> Outcome:
    require_services("intake", "triage")
    rate = options.size(50.0, 10.0)
    duration = options.size(60.0, 5.0)
    with full_system() as system:
        scenario = prepare(system, options.seed, orgs=options.size(500, 20), vendors=20)
        return asyncio.run(_measure(options, scenario, rate, duration))


async def _measure(options: Options, scenario: Any, rate: float, duration: float) -> Outcome:
    system = scenario.system
    watch = watcher(system)
    await watch.start()
    try:
        await warm_up(scenario, watch, options.seed)
        count = int(rate * duration)
        reports = prepared_reports(scenario.insured, scenario.tokens, options.seed, count)
        rss = RssSampler(system)
        at_rest = system.rss()
        rss.start()
        cpu_before, began = system.machine_cpu(), time.monotonic()
        result = await _open_loop(scenario, reports, rate, "steady")
        accepted = {s[4]: s for s in result.accepted()}
        missing = await watch.wait_until(accepted, "first_dispatch_at", options.size(60, 30))
        missing_all = await watch.wait_until(accepted, "all_placed_at", 10)
        cpu_used = machine_cpu_used(cpu_before, system.machine_cpu(), system.services)
        cores_busy = cpu_used["whole machine"] / (time.monotonic() - began)
        await rss.stop()
        caught_up = await catch_up(system, cpu_before)
        triage_parts = await _triage_hop_parts(system.database_urls, set(accepted))
        lower_rates = [await _lower_rate(options, scenario, watch, options.seed + 200 + number,
                                         lower, f"lower{number}")
                       for number, lower in enumerate(options.size(LOWER_RATES, (5.0,)))]
        dead = await dead_letter_count(system.bootstrap)
    finally:
        await watch.stop()
    first = _latencies(watch, accepted, "first_dispatch_at")
    every = _latencies(watch, accepted, "all_placed_at")
    summary = latency_summary_ms(first)
    # Where the time goes, hop by hop (each arrival as the watcher saw it).
    relay_hop = _latencies(watch, accepted, "reported_at")
    triage_hop = [p.first_dispatch_at - p.reported_at for i in accepted
                  if (p := watch.progress(i)).reported_at is not None
                  and p.first_dispatch_at is not None]
    notes = [f"open loop: {rate:g} reports/s for {duration:g} s ({len(reports)} reports), "
             "latency measured from the HTTP 201 to the JobDispatched record arriving at a "
             "watcher reading the response topic"]
    if (behind := result.seconds_behind_schedule) > ON_SCHEDULE_SECONDS:
        notes.append(f"the generator fell behind its schedule by up to {behind:.2f} s")
    if all(part["count"] for part in triage_parts.values()):
        notes.append("triage hop, p50 of each part (from the services' timestamps): "
                     + ", ".join(f"{name.removeprefix('triage_hop_').replace('_', ' ')} "
                                 f"{part['p50_ms']} ms" for name, part in triage_parts.items()))
    cpu_ms = cpu_ms_each(cpu_used, len(accepted)) if accepted else None
    if cpu_ms:
        notes.append(f"CPU ms per report at {rate:g}/s, from the first report until every job "
                     f"was placed: {cpu_ms_text(cpu_ms)}; {cores_busy:.2f} of the machine's "
                     f"{os.cpu_count()} cores busy on average")
    if accepted:
        notes.append(caught_up.note(len(accepted), "report"))
    highest = _highest_within_targets(lower_rates)
    notes.append(_lower_rates_note(lower_rates, highest))
    if dead:
        notes.append(f"{dead} message(s) on dead-letter topics")
    if refused := result.not_accepted_note():
        notes.append(refused)
    figures = {
        "reports_sent": len(result.samples),
        "reports_accepted": len(accepted),
        "not_dispatched": missing,
        "not_all_jobs_placed": missing_all,
        "p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"],
        "first_job_dispatched": summary,
        "all_jobs_placed": latency_summary_ms(every),
        "hop_201_to_incident_reported_on_kafka": latency_summary_ms(relay_hop),
        "hop_incident_reported_to_job_dispatched": latency_summary_ms(triage_hop),
        **triage_parts,
        "lower_rates": lower_rates,
        "highest_lower_rate_meeting_targets": highest,
        "intake_response": latency_summary_ms([s[2] - s[1] for s in accepted.values()]),
        "cpu_ms_per_report": cpu_ms,
        "machine_cores_busy": round(cores_busy, 2),
        "seconds_until_at_rest_after_load": caught_up.seconds,
        "dead_letters": dead,
        "rss_kib_at_rest": at_rest,
        "rss_kib_peak_under_load": rss.peak,
        "loadgen_cpu_fraction": round(result.cpu_fraction, 2),
    }
    chart = _chart(options, result, watch, accepted)
    return Outcome(
        figures=figures,
        targets=[Target("p50 report to dispatch", summary["p50_ms"], "<=", P50_TARGET_MS, "ms"),
                 Target("p99 report to dispatch", summary["p99_ms"], "<=", P99_TARGET_MS, "ms")],
        parameters={"rate_per_second": rate, "duration_seconds": duration,
                    "orgs": len(scenario.insured), "vendors": len(scenario.vendors),
                    "services": system.services},
        notes=notes, chart=chart)


async def _open_loop(scenario: Any, reports: list[PreparedReport], rate: float, label: str
                     ) -> LoadResult:
    return await run_load(LoadPlan(url=scenario.system.urls["intake"] + "/v1/incidents",
                                   reports=reports, mode="open", rate=rate, count=len(reports),
                                   concurrency=200, key_prefix=f"{scenario.run_id}-{label}"))


def _latencies(watch: Watcher, accepted: dict[str, Any], attribute: str) -> list[float]:
    """Seconds from each accepted report's 201 to its `attribute` as the watcher saw it."""
    return [at - s[2] for i, s in accepted.items()
            if (at := getattr(watch.progress(i), attribute)) is not None]


async def _lower_rate(options: Options, scenario: Any, watch: Watcher, seed: int, rate: float,
                      label: str) -> dict[str, Any]:
    """One lower steady rate, started once the services are at rest (not behind notify's and
    payout's backlog of the rate before): its latency, and whether it met both targets."""
    seconds_to_rest = await until_at_rest(scenario.system)
    duration = options.size(LOWER_RATE_SECONDS, 3.0)
    reports = prepared_reports(scenario.insured, scenario.tokens, seed, int(rate * duration))
    result = await _open_loop(scenario, reports, rate, label)
    accepted = {s[4]: s for s in result.accepted()}
    missing = await watch.wait_until(accepted, "first_dispatch_at", options.size(60, 30))
    summary = latency_summary_ms(_latencies(watch, accepted, "first_dispatch_at"))
    behind = result.seconds_behind_schedule
    p50, p99 = summary["p50_ms"], summary["p99_ms"]
    meets = (seconds_to_rest is not None and behind <= ON_SCHEDULE_SECONDS and not missing
             and len(accepted) == len(reports) and p50 is not None and p50 <= P50_TARGET_MS
             and p99 is not None and p99 <= P99_TARGET_MS)
    return {"rate_per_second": rate, "seconds": duration, "reports": len(reports),
            "accepted": len(accepted), "not_dispatched": missing, "p50_ms": p50, "p99_ms": p99,
            "seconds_to_rest_before": seconds_to_rest, "generator_behind_s": round(behind, 3),
            "meets_targets": meets}


def _highest_within_targets(steps: list[dict[str, Any]]) -> float | None:
    """The highest rate up to which every step (in increasing rate) met both targets."""
    highest = None
    for step in steps:
        if not step["meets_targets"]:
            break
        highest = step["rate_per_second"]
    return highest


def _lower_rates_note(steps: list[dict[str, Any]], highest: float | None) -> str:
    def step_text(step: dict[str, Any]) -> str:
        text = f"{step['rate_per_second']:g}/s {step['p50_ms']} / {step['p99_ms']} ms"
        if step["seconds_to_rest_before"] is None:
            text += " (the services were not at rest before it)"
        if step["generator_behind_s"] > ON_SCHEDULE_SECONDS:
            text += f" (the generator fell {step['generator_behind_s']:.2f} s behind)"
        return text

    return (f"then lower rates, {steps[0]['seconds']:g} s each, each started with the services "
            "at rest (p50 / p99 report to dispatch): " + ", ".join(map(step_text, steps))
            + (f"; both targets met at every rate up to {highest:g}/s in this run"
               if highest is not None else "; both targets missed from the lowest rate on"))


async def _triage_hop_parts(database_urls: dict[str, str], incident_ids: set[str]
                            ) -> dict[str, dict[str, float | None]]:
    """The triage hop of each incident in three parts, from the services' own timestamps."""
    intake = await asyncpg.connect(database_urls["intake"])
    triage = await asyncpg.connect(database_urls["triage"])
    try:
        reported = {row["incident_id"]: row for row in await intake.fetch(
            "SELECT event_id, envelope->'data'->>'incident_id' AS incident_id, sent_at "
            "FROM outbox WHERE event_type = $1 AND sent_at IS NOT NULL "
            "AND envelope->'data'->>'incident_id' = ANY($2::text[])",
            IncidentReported.event_type, list(incident_ids))}
        claimed = {row["event_id"]: row["received_at"] for row in await triage.fetch(
            "SELECT event_id, received_at FROM inbox WHERE event_id = ANY($1::uuid[])",
            [row["event_id"] for row in reported.values()])}
        dispatched = {row["incident_id"]: row for row in await triage.fetch(
            "SELECT DISTINCT ON (incident_id) envelope->'data'->>'incident_id' AS incident_id, "
            "created_at, sent_at FROM outbox WHERE event_type = $1 "
            "AND envelope->'data'->>'incident_id' = ANY($2::text[]) "
            "ORDER BY incident_id, id", JobDispatched.event_type, list(incident_ids))}
    finally:
        await intake.close()
        await triage.close()
    waiting, handling, relaying = [], [], []
    for incident_id, report in reported.items():
        claimed_at = claimed.get(report["event_id"])
        job = dispatched.get(incident_id)
        if claimed_at is None or job is None or job["sent_at"] is None:
            continue
        waiting.append((claimed_at - report["sent_at"]).total_seconds())
        handling.append((job["created_at"] - claimed_at).total_seconds())
        relaying.append((job["sent_at"] - job["created_at"]).total_seconds())
    return {"triage_hop_waiting_for_its_consumer": latency_summary_ms(waiting),
            "triage_hop_in_its_transaction_until_staged": latency_summary_ms(handling),
            "triage_hop_rest_of_its_fetch_then_commit_and_relay": latency_summary_ms(relaying)}


def _chart(options: Options, result: LoadResult, watch: Watcher, accepted: dict[str, Any]) -> str:
    fig, (left, right) = charts.figure(2)
    xs, ys = [], []
    for incident_id, sample in accepted.items():
        dispatched = watch.progress(incident_id).first_dispatch_at
        if dispatched is not None:
            xs.append(sample[2] - result.started)
            ys.append((dispatched - sample[2]) * 1000)
    left.scatter(xs, ys, s=4)
    left.axhline(P50_TARGET_MS, color="green", linestyle="--", label="p50 target")
    left.axhline(P99_TARGET_MS, color="red", linestyle="--", label="p99 target")
    left.set_xlabel("seconds since start")
    left.set_ylabel("201 to JobDispatched (ms)")
    left.legend()
    right.hist(ys, bins=50)
    right.set_xlabel("latency (ms)")
    right.set_ylabel("reports")
    suffix = " (quick run)" if options.quick else ""
    day = time.strftime("%Y-%m-%d", time.gmtime(result.started))
    return charts.save(fig, options.results_dir, NAME, f"{TITLE}{suffix}, {day}")
