"""1. Intake throughput: `POST /v1/incidents` (auth, validation, insert, outbox) against a bare
FastAPI app doing one asyncpg INSERT of a similar row; same machine, same load generator, same
run. Target: intake / baseline >= 0.7.

The two are measured in four interleaved rounds (intake then baseline, baseline then intake,
twice: each pair cancels a steady drift), not one long run each. This machine's speed drifts
by tens of per cent within minutes (the baseline alone served 1,060 and 1,535 req/s in two
runs three minutes apart), and a drift during one long run counted against whichever target
ran then. Each round's ratio is reported too, so the spread is visible.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from typing import Any, NamedTuple

from bench import charts
from bench.baseline import create_schema
from bench.common import Options, Outcome, Target, latency_summary_ms
from bench.loadgen import LoadPlan, LoadProcess, LoadResult, Sample, run_load
from bench.profile import finish_profile, start_profile
from bench.profile import profile_note as write_profile_note
from bench.system import (
    System,
    bench_database,
    cpu_ms_text,
    cpu_seconds,
    free_port,
    fresh_database,
    postgres_cpu_seconds,
    token_service,
)
from bench.workload import insureds, prepared_reports, register_policies

NAME = "intake_throughput"
TITLE = "Intake throughput vs bare FastAPI + asyncpg"
TARGET_RATIO = 0.7


def run(options: Options) -> Outcome:
    concurrency = options.size(32, 8)
    warmup = options.size(3.0, 1.0)
    rounds = options.size(4, 1)  # even: I B | B I pairs cancel a steady drift
    duration = options.size(7.5, 3.0)  # measured per target and round
    orgs = options.size(50, 5)
    run_id = uuid.uuid4().hex[:6]

    with System(["intake"]) as system:
        baseline_dsn = fresh_database(bench_database("baseline"))
        asyncio.run(create_schema(baseline_dsn))
        system.autovacuum.databases.append(baseline_dsn)
        port = free_port()
        system.ports["baseline"] = port
        system.urls["baseline"] = f"http://127.0.0.1:{port}"
        system.spawn("baseline", [sys.executable, "-m", "bench.baseline", "--port", str(port),
                                  "--dsn", baseline_dsn])
        system.wait_ready("baseline")

        tokens = token_service()
        insured = insureds(orgs, options.seed, run_id)
        register_policies(system.urls["intake"], insured, tokens, options.seed)
        reports = prepared_reports(insured, tokens, options.seed, count=options.size(2000, 200))

        segments: dict[str, list[Segment]] = {"intake": [], "baseline": []}
        profile_note = None
        for round_number in range(rounds):
            order = ("intake", "baseline") if round_number % 2 == 0 else ("baseline", "intake")
            for target in order:
                plan = LoadPlan(url=system.urls[target] + "/v1/incidents", reports=reports,
                                mode="closed", concurrency=concurrency, warmup=warmup,
                                duration=duration,
                                key_prefix=f"{run_id}-{target}-{round_number}")
                pid = system.pid(target)
                cpu_before = _cpu(system, pid)
                profiling = options.profile and target == "intake" and round_number == 0
                result, profile_error = asyncio.run(
                    _measure(plan, pid if profiling else None, options, warmup, duration))
                cpu_after = _cpu(system, pid)
                segments[target].append(Segment(result, {
                    name: cpu_after[name] - cpu_before[name] for name in cpu_before}))
                if profiling:
                    profile_note = write_profile_note(options, "intake", NAME, profile_error)

    intake = _figures(segments["intake"], warmup, duration)
    baseline = _figures(segments["baseline"], warmup, duration)
    ratio = (intake["requests_ok"] / baseline["requests_ok"] if baseline["requests_ok"] else None)
    per_round = [_round_ratio(i, b, warmup, duration)
                 for i, b in zip(segments["intake"], segments["baseline"], strict=True)]
    chart = _chart(options, segments, warmup, duration)
    notes = [
        f"closed loop, {concurrency} requests in flight; {rounds} interleaved round(s), each "
        f"target {warmup:g} s warm-up then {duration:g} s measured per round; unique "
        "Idempotency-Key per request",
        "ratio per round: " + ", ".join(str(r) for r in per_round),
    ]
    for label, figures in (("intake", intake), ("baseline", baseline)):
        if figures["cpu_ms_per_request"]:
            notes.append(f"{label}: CPU ms per request (warm-up included), "
                         f"{cpu_ms_text(figures['cpu_ms_per_request'])}")
        if figures["loadgen_cpu_fraction"] >= 0.9:
            notes.append(f"the load generator used {figures['loadgen_cpu_fraction']:.0%} of a core "
                         f"against {label}: that figure may be bounded by the generator")
        if figures["errors"]:
            notes.append(f"{label}: {figures['errors']} failed requests ({figures['statuses']})")
    if profile_note:
        notes.append(profile_note)
    return Outcome(
        figures={
            "intake_rps": intake["throughput_rps"],
            "baseline_rps": baseline["throughput_rps"],
            "ratio": round(ratio, 3) if ratio is not None else None,
            "ratio_per_round": per_round,
            "intake": intake,
            "baseline": baseline,
        },
        targets=[Target("intake/baseline throughput ratio",
                        round(ratio, 3) if ratio is not None else None, ">=", TARGET_RATIO)],
        parameters={"concurrency": concurrency, "rounds": rounds, "warmup_seconds": warmup,
                    "measured_seconds_per_round": duration, "orgs": orgs,
                    "distinct_bodies": len(reports)},
        notes=notes,
        chart=chart,
    )


class Segment(NamedTuple):
    """One target's load in one round, and the CPU used meanwhile by its server, PostgreSQL
    and the broker (intake's relay publishes each report; the baseline has no broker)."""

    result: LoadResult
    cpu_seconds: dict[str, float]


def _cpu(system: System, server_pid: int) -> dict[str, float]:
    return {"server": cpu_seconds(server_pid) or 0.0,
            "postgresql": postgres_cpu_seconds() or 0.0,
            "broker": cpu_seconds(system.pid("broker")) or 0.0}


async def _measure(plan: LoadPlan, profile_pid: int | None, options: Options, warmup: float,
                   duration: float) -> tuple[LoadResult, str | None]:
    if profile_pid is None:
        return await run_load(plan), None
    process = LoadProcess(plan)
    try:
        await process.started()
        await asyncio.sleep(warmup)
        profiler = start_profile(profile_pid, duration, options.results_dir / "intake_profile.collapsed")
        result = await process.result()
        error = await asyncio.to_thread(finish_profile, profiler)
        return result, error
    finally:
        process.kill()


def _measured(result: LoadResult, warmup: float, duration: float) -> list[Sample]:
    """The samples of the measured window (after the warm-up)."""
    window_start = result.started + warmup
    return [s for s in result.samples if window_start <= s[2] < window_start + duration]


def _ok(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s[3] in (200, 201)]


def _figures(segments: list[Segment], warmup: float, duration: float) -> dict[str, Any]:
    measured = [s for segment in segments for s in _measured(segment.result, warmup, duration)]
    ok = _ok(measured)
    statuses = Counter(str(s[3]) for s in measured)
    wall = sum(segment.result.finished - segment.result.started for segment in segments)
    served = sum(len(_ok(segment.result.samples)) for segment in segments)  # warm-up included
    return {
        "throughput_rps": round(len(ok) / (duration * len(segments)), 1),
        "requests_measured": len(measured),
        "requests_ok": len(ok),
        "errors": len(measured) - len(ok),
        "statuses": dict(statuses),
        "latency": latency_summary_ms([s[2] - s[1] for s in ok]),
        "loadgen_cpu_fraction": round(max((seg.result.cpu_fraction for seg in segments),
                                          default=0.0), 2),  # the busiest round
        "server_cpu_cores": round(sum(seg.cpu_seconds["server"] for seg in segments) / wall, 2)
        if wall else 0.0,
        "cpu_ms_per_request": {
            name: round(1000 * sum(seg.cpu_seconds[name] for seg in segments) / served, 3)
            for name in segments[0].cpu_seconds} if served else None,
    }


def _round_ratio(intake: Segment, baseline: Segment, warmup: float, duration: float
                 ) -> float | None:
    served = len(_ok(_measured(baseline.result, warmup, duration)))
    return round(len(_ok(_measured(intake.result, warmup, duration))) / served, 3) if served else None


def _chart(options: Options, segments: dict[str, list[Segment]], warmup: float,
           duration: float) -> str:
    fig, (left, right) = charts.figure(2)
    first = min(seg.result.started for each in segments.values() for seg in each)
    for label, each in segments.items():
        times = [s[2] for seg in each for s in _ok(_measured(seg.result, warmup, duration))]
        busy = [(second, count) for second, count in zip(*charts.per_second(times, first),
                                                           strict=True) if count]
        left.scatter([b[0] for b in busy], [b[1] for b in busy], s=6, label=label)
    left.set_xlabel("seconds since start (interleaved rounds; measured windows only)")
    left.set_ylabel("responses 201 per second")
    left.legend()
    names = ["p50", "p95", "p99"]
    for offset, (label, each) in enumerate(segments.items()):
        figures = _figures(each, warmup, duration)["latency"]
        values = [figures[f"{n}_ms"] or 0 for n in names]
        right.bar([i + offset * 0.4 for i in range(3)], values, width=0.4, label=label)
    right.set_xticks([i + 0.2 for i in range(3)], names)
    right.set_ylabel("response time (ms)")
    right.legend()
    suffix = " (quick run)" if options.quick else ""
    started = time.strftime("%Y-%m-%d", time.gmtime(first))
    return charts.save(fig, options.results_dir, NAME, f"{TITLE}{suffix}, {started}")
