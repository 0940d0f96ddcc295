"""1. Intake throughput: `POST /v1/incidents` (auth, validation, insert, outbox) against a bare
FastAPI app doing one asyncpg INSERT of a similar row; same machine, same load generator, same
run, one after the other. Target: intake / baseline >= 0.7.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

from bench import charts
from bench.baseline import create_schema
from bench.common import Options, Outcome, Target, latency_summary_ms
from bench.loadgen import LoadPlan, LoadProcess, LoadResult, run_load
from bench.profile import finish_profile, start_profile, summarise
from bench.system import JWT_SECRET, System, cpu_seconds, free_port, fresh_database
from bench.workload import insureds, prepared_reports, register_policies, token_service

NAME = "intake_throughput"
TITLE = "Intake throughput vs bare FastAPI + asyncpg"
TARGET_RATIO = 0.7


def run(options: Options) -> Outcome:
    concurrency = options.size(32, 8)
    warmup = options.size(5.0, 1.0)
    duration = options.size(30.0, 3.0)
    orgs = options.size(50, 5)
    run_id = uuid.uuid4().hex[:6]

    with System(["intake"]) as system:
        baseline_dsn = fresh_database("cyberclaims_bench_baseline")
        asyncio.run(create_schema(baseline_dsn))
        port = free_port()
        system.ports["baseline"] = port
        system.urls["baseline"] = f"http://127.0.0.1:{port}"
        system.spawn("baseline", [sys.executable, "-m", "bench.baseline", "--port", str(port),
                                  "--dsn", baseline_dsn])
        system.wait_ready("baseline")

        tokens = token_service(JWT_SECRET)
        insured = insureds(orgs, options.seed, run_id)
        register_policies(system.urls["intake"], insured, tokens, options.seed)
        reports = prepared_reports(insured, tokens, options.seed, count=options.size(2000, 200))

        runs: dict[str, dict[str, Any]] = {}
        profile_note = None
        for target in ("intake", "baseline"):
            plan = LoadPlan(url=system.urls[target] + "/v1/incidents", reports=reports,
                            mode="closed", concurrency=concurrency, warmup=warmup,
                            duration=duration, key_prefix=f"{run_id}-{target}")
            pid = system.pid(target)
            cpu_before = cpu_seconds(pid) or 0.0
            profiling = options.profile and target == "intake"
            result, profile_error = asyncio.run(
                _measure(plan, pid if profiling else None, options, warmup, duration))
            cpu_used = (cpu_seconds(pid) or 0.0) - cpu_before
            runs[target] = _figures(result, warmup, duration)
            runs[target]["server_cpu_cores"] = round(cpu_used / (result.finished - result.started), 2)
            runs[target]["_result"] = result
            if profiling:
                profile_note = _write_profile(options, profile_error)

    intake, baseline = runs["intake"], runs["baseline"]
    ratio = (intake["throughput_rps"] / baseline["throughput_rps"]
             if baseline["throughput_rps"] else None)
    chart = _chart(options, intake.pop("_result"), baseline.pop("_result"), warmup, duration)
    notes = [
        f"closed loop, {concurrency} requests in flight, {warmup:.0f} s warm-up then "
        f"{duration:.0f} s measured, each target in turn; unique Idempotency-Key per request",
    ]
    for label, figures in runs.items():
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
            "intake": intake,
            "baseline": baseline,
        },
        targets=[Target("intake/baseline throughput ratio", round(ratio, 3) if ratio else None,
                        ">=", TARGET_RATIO)],
        parameters={"concurrency": concurrency, "warmup_seconds": warmup,
                    "measured_seconds": duration, "orgs": orgs, "distinct_bodies": len(reports)},
        notes=notes,
        chart=chart,
    )


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


def _write_profile(options: Options, error: str | None) -> str:
    collapsed = options.results_dir / "intake_profile.collapsed"
    if error or not collapsed.exists():
        return f"profiling failed: {error}"
    summary = options.results_dir / "intake_profile.txt"
    label = "quick run" if options.quick else "full run"
    summary.write_text(f"py-spy profile of intake under {NAME} ({label}; "
                       f"command: {options.command})\n\n" + summarise(collapsed))
    return f"profile of intake written to {summary.relative_to(options.results_dir.parent.parent)}"


def _figures(result: LoadResult, warmup: float, duration: float) -> dict[str, Any]:
    window_start = result.started + warmup
    window_end = window_start + duration
    measured = [s for s in result.samples if window_start <= s[2] < window_end]
    ok = [s for s in measured if s[3] in (200, 201)]
    statuses: dict[str, int] = {}
    for s in measured:
        statuses[str(s[3])] = statuses.get(str(s[3]), 0) + 1
    return {
        "throughput_rps": round(len(ok) / duration, 1),
        "requests_measured": len(measured),
        "errors": len(measured) - len(ok),
        "statuses": statuses,
        "latency": latency_summary_ms([s[2] - s[1] for s in ok]),
        "loadgen_cpu_fraction": round(result.cpu_fraction, 2),
    }


def _chart(options: Options, intake: LoadResult, baseline: LoadResult, warmup: float,
           duration: float) -> str:
    fig, (left, right) = charts.figure(2)
    for label, result in (("intake", intake), ("baseline", baseline)):
        seconds, counts = charts.per_second([s[2] for s in result.accepted()], result.started)
        left.plot(seconds, counts, label=label)
    left.axvspan(warmup, warmup + duration, alpha=0.1, color="grey", label="measured")
    left.set_xlabel("seconds since start")
    left.set_ylabel("responses 201 per second")
    left.legend()
    names = ["p50", "p95", "p99"]
    for offset, (label, result) in enumerate((("intake", intake), ("baseline", baseline))):
        figures = _figures(result, warmup, duration)["latency"]
        values = [figures[f"{n}_ms"] or 0 for n in names]
        right.bar([i + offset * 0.4 for i in range(3)], values, width=0.4, label=label)
    right.set_xticks([i + 0.2 for i in range(3)], names)
    right.set_ylabel("response time (ms)")
    right.legend()
    suffix = " (quick run)" if options.quick else ""
    started = time.strftime("%Y-%m-%d", time.gmtime(intake.started))
    return charts.save(fig, options.results_dir, NAME, f"{TITLE}{suffix}, {started}")
