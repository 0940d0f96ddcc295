"""3. Burst: a mass ransomware campaign hits many insured SMEs at once. 10,000 reports as fast as
intake accepts them; the time until every one is triaged and every job of it placed on Kafka
(dispatched, or unassigned), none lost; sustained end-to-end incidents per second.
Target: at least 200 incidents per second on a 2-core machine. Insights, a read model nothing
waits on, is left out of "at rest": its consumer lag is measured apart, from the moment the
other services are at rest until it is back to 0 (target: within 10 s, issue 26).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench import charts
from bench.common import Options, Outcome, Target, latency_summary_ms
from bench.loadgen import LoadPlan, LoadResult, run_load
from bench.scenario import full_system, prepare, require_services, warm_up, watcher
from bench.system import (
    AT_REST_TIMEOUT_SECONDS,
    RssSampler,
    catch_up,
    cpu_ms_each,
    cpu_ms_text,
    machine_cpu_used,
    until_caught_up,
)
from bench.watch import Watcher, dead_letter_count
from bench.workload import prepared_reports
from services.insights import handlers as insights_handlers

NAME = "burst"
TITLE = "Burst: mass ransomware campaign"
TARGET_RATE = 200.0
INSIGHTS = "insights"
INSIGHTS_LAG_TARGET_SECONDS = 10.0
TIME_LIMIT = 540.0
"""From the first report until every incident is placed and the services are at rest, at most:
with the set-up, the whole benchmark stays under 10 minutes."""


def run(options: Options) -> Outcome:
    require_services("intake", "triage")
    count = options.size(10_000, 200)
    with full_system() as system:
        scenario = prepare(system, options.seed, orgs=options.size(1000, 20), vendors=20)
        return asyncio.run(_measure(options, scenario, count))


async def _measure(options: Options, scenario: Any, count: int) -> Outcome:
    system = scenario.system
    concurrency = options.size(64, 16)
    cores = os.cpu_count() or 1
    reports = prepared_reports(scenario.insured, scenario.tokens, options.seed, count,
                               category="ransomware")
    watch = watcher(system)
    await watch.start()
    try:
        await warm_up(scenario, watch, options.seed)
        rss = RssSampler(system)
        rss.start()
        cpu_before = system.machine_cpu()
        begun = time.monotonic()
        result = await run_load(LoadPlan(url=system.urls["intake"] + "/v1/incidents",
                                         reports=reports, mode="closed", count=count,
                                         concurrency=concurrency,
                                         key_prefix=f"{scenario.run_id}-burst"))
        accepted = {s[4]: s for s in result.accepted()}
        deadline = begun + options.size(TIME_LIMIT, 120.0)
        lost = await watch.wait_until(accepted, "all_placed_at",
                                      max(10.0, deadline - time.monotonic()))
        cpu_used = machine_cpu_used(cpu_before, system.machine_cpu(), system.services)
        await rss.stop()
        caught_up = await catch_up(system, cpu_before, timeout=min(
            AT_REST_TIMEOUT_SECONDS, deadline - time.monotonic()), excluding=(INSIGHTS,))
        insights_lag = await _insights_lag(system, caught_up.seconds)
        dead = await dead_letter_count(system.bootstrap)
    finally:
        await watch.stop()
    done = [watch.progress(i).all_placed_at for i in accepted]
    finished = [t for t in done if t is not None]
    start = result.started
    elapsed = (max(finished) - start) if finished else None
    rate = round(len(finished) / elapsed, 1) if elapsed else None
    last_accept = max((s[2] for s in accepted.values()), default=start)
    cpu_ms = cpu_ms_each(cpu_used, len(finished)) if finished else None
    rate_until_rest = (round(len(finished) / (elapsed + caught_up.seconds), 1)
                       if elapsed and caught_up.seconds is not None else None)
    figures = {
        "reports": count,
        "accepted": len(accepted),
        "rejected": count - len(accepted),
        "dispatched": len(finished),
        "not_dispatched_at_end": lost,
        "dead_letters": dead,
        "seconds_to_all_dispatched": round(elapsed, 2) if elapsed else None,
        "incidents_per_second": rate,
        "seconds_after_dispatch_until_at_rest": caught_up.seconds,
        "incidents_per_second_until_at_rest": rate_until_rest,
        "insights_seconds_to_zero_lag_after_others_at_rest": insights_lag,
        "intake_accept_rate_per_second": round(len(accepted) / (last_accept - start), 1)
        if last_accept > start else None,
        "accept_to_dispatched": latency_summary_ms(
            [watch.progress(i).all_placed_at - s[2] for i, s in accepted.items()  # type: ignore[operator]
             if watch.progress(i).all_placed_at is not None]),
        "cpu_ms_per_incident": cpu_ms,
        "machine_cpu_ms_per_incident_at_target": round(1000 * cores / TARGET_RATE, 2),
        "rss_kib_peak_under_load": rss.peak,
        "loadgen_cpu_fraction": round(result.cpu_fraction, 2),
    }
    notes = [f"{count} ransomware reports across {len(scenario.insured)} SMEs, closed loop with "
             f"{concurrency} in flight; done = triaged and every job dispatched or unassigned",
             "cpu_ms_per_incident: each process's CPU time from the first report until the "
             "last incident was placed, over the incidents placed; steadier across runs than "
             "the rate (notify and payout may still be catching up at the end). Besides the "
             "services: the broker, the stand-ins for outside systems, PostgreSQL (when it "
             "runs on this machine) and the measuring process (watcher and load generator)",
             f"machine_cpu_ms_per_incident_at_target: what this machine's {cores} cores give "
             f"each incident at {TARGET_RATE:.0f}/s, for every process together"]
    if cpu_ms:
        notes.append(f"CPU ms per incident: {cpu_ms_text(cpu_ms)}")
    if finished:
        notes.append("incidents_per_second_until_at_rest: every incident over the time until "
                     "the services were at rest (payout and notify caught up too), to 1 s; "
                     + caught_up.note(len(finished), "incident"))
    if INSIGHTS in system.services:
        notes.append("insights_seconds_to_zero_lag_after_others_at_rest: from when the other "
                     "services were at rest until insights' consumer group had committed every "
                     "message of the topics it reads (None: not within 60 s, or the others "
                     "never came to rest); the services' at-rest time leaves insights out")
    if lost:
        notes.append(f"{lost} accepted incident(s) were not dispatched within the time limit")
    if refused := result.not_accepted_note():
        notes.append(refused)
    targets = [Target("end-to-end incidents per second", rate, ">=", TARGET_RATE, "/s"),
               Target("incidents not dispatched when the run ended (lost or still queued)",
                      lost, "<=", 0)]
    if INSIGHTS in system.services:
        targets.append(Target("insights' lag back to 0 after the others are at rest",
                              insights_lag, "<=", INSIGHTS_LAG_TARGET_SECONDS, "s"))
    return Outcome(
        figures=figures,
        targets=targets,
        parameters={"reports": count, "concurrency": concurrency, "orgs": len(scenario.insured),
                    "vendors": len(scenario.vendors), "services": system.services},
        notes=notes, chart=_chart(options, result, watch, accepted))


async def _insights_lag(system: Any, others_at_rest: float | None) -> float | None:
    """Seconds from the others being at rest until insights' lag is 0 (None if they never
    came to rest, or insights not within 60 s, or insights is not in the system)."""
    if INSIGHTS not in system.services or others_at_rest is None:
        return None
    topics = sorted({event.topic.name for event in insights_handlers.handlers()})
    return await until_caught_up(system, INSIGHTS, topics, timeout=60.0)


def _chart(options: Options, result: LoadResult, watch: Watcher, accepted: dict[str, Any]) -> str:
    fig, axis = charts.figure(1, width=8)
    start = result.started
    series = {
        "accepted by intake": [s[2] for s in accepted.values()],
        "triaged": [p.triaged_at for i in accepted if (p := watch.progress(i)).triaged_at],
        "every job placed": [p.all_placed_at for i in accepted if (p := watch.progress(i)).all_placed_at],
    }
    for label, times in series.items():
        ordered = sorted(t - start for t in times if t is not None)
        axis.plot(ordered, range(1, len(ordered) + 1), label=label)
    axis.set_xlabel("seconds since the first report")
    axis.set_ylabel("incidents (cumulative)")
    axis.legend()
    suffix = " (quick run)" if options.quick else ""
    day = time.strftime("%Y-%m-%d", time.gmtime(start))
    return charts.save(fig, options.results_dir, NAME, f"{TITLE}{suffix}, {day}")
