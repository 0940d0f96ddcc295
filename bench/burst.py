"""3. Burst: a mass ransomware campaign hits many insured SMEs at once. Reports as fast as intake
accepts them, with all six services running, until every service is at rest (`bench.rest`: each
consumer group's lag 0 and no pending outbox row, per service); none lost.

Three systems, one after the other on the same machine, each started afresh:
- as deployed: the services weighed by their Kubernetes CPU requests (payout and notify niced);
- equal weights: every service at niceness 0 (the first target's second reading, issue 27);
- replicas: equal weights, triage and notify with two processes each (one consumer group of
  each shares the topics' 6 partitions), against the equal-weights system's one replica.
The first two take two consecutive bursts each: the second's peak memory against the first's
is the leak check. Targets (issue 27): at least 200 incidents/s until every service is at rest
in both weightings, 0 lost, insights and risk back to lag 0 within 10 s of the others, each
service's second peak within 10 % of its first.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench import charts
from bench.common import Options, Outcome, Target, latency_summary_ms
from bench.loadgen import LoadPlan, run_load
from bench.rest import RestProbe
from bench.scenario import Scenario, full_system, prepare, require_services, warm_up, watcher
from bench.system import RssSampler, cpu_ms_each, cpu_percent_at_rest, machine_cpu_used
from bench.watch import Watcher, dead_letter_count
from bench.workload import prepared_reports

NAME = "burst"
TITLE = "Burst: mass ransomware campaign, every service to rest"
TARGET_RATE = 200.0
LAG_TARGET_SECONDS = 10.0
LEAK_TOLERANCE = 0.10
READ_MODELS = ("insights", "risk")
"""Services nothing on the claim's path waits for: their time to rest is measured after the
others'."""
REPLICATED = {"triage": 2, "notify": 2}
FULL_SIZE, QUICK_SIZE = 4000, 200
DISPATCH_RATE_FLOOR = 20.0
"""The slowest rate (incidents/s) a burst's time limit allows for, before it counts the rest as
lost: 4,000 reports get 200 s, plus the time to rest."""
REST_TIMEOUT_SECONDS = 240.0
AT_REST_SETTLE_SECONDS, AT_REST_SECONDS = (10, 2), (20, 3)
"""Full (quick): how long after start-up the CPU at rest is measured, and over how long."""


def run(options: Options) -> Outcome:
    require_services("intake", "triage")
    size = options.burst_size or options.size(FULL_SIZE, QUICK_SIZE)
    systems = {"as_deployed": ({}, 2), "equal_weights": ({"equal_weights": True}, 2),
               "replicas": ({"equal_weights": True, "replicas": REPLICATED}, 1)}
    measured: dict[str, dict[str, Any]] = {}
    for label, (how, bursts) in systems.items():
        print(f"   {label}: {bursts} burst(s) of {size}", flush=True)
        with full_system(**how) as system:  # type: ignore[arg-type]
            at_rest = cpu_percent_at_rest(system,
                                          settle_seconds=options.size(*AT_REST_SETTLE_SECONDS),
                                          seconds=options.size(*AT_REST_SECONDS)) \
                if label == "as_deployed" else None
            scenario = prepare(system, options.seed, orgs=options.size(500, 20), vendors=20)
            measured[label] = asyncio.run(_bursts(options, scenario, size, bursts))
            if at_rest is not None:
                measured[label]["cpu_percent_of_a_core_at_rest"] = at_rest
    return _outcome(options, size, measured)


async def _bursts(options: Options, scenario: Scenario, size: int, bursts: int
                  ) -> dict[str, Any]:
    system = scenario.system
    watch = watcher(system)
    probe = RestProbe(system)
    await watch.start()
    await probe.start()
    try:
        await warm_up(scenario, watch, options.seed)
        runs = []
        for index in range(bursts):
            runs.append(await _burst(options, scenario, watch, probe, size, index))
        dead = await dead_letter_count(system.bootstrap)
    finally:
        await probe.stop()
        await watch.stop()
    return {"bursts": runs, "dead_letters": dead, "services": system.services,
            "processes": system.instance_names(),
            "niceness": "equal (0)" if system.equal_weights else "as deployed"}


async def _burst(options: Options, scenario: Scenario, watch: Watcher, probe: RestProbe,
                 size: int, index: int) -> dict[str, Any]:
    system = scenario.system
    settled = await probe.until_at_rest(time.time(), REST_TIMEOUT_SECONDS)
    rss_at_rest_before = system.rss()
    rows_before = await probe.rows()
    reports = prepared_reports(scenario.insured, scenario.tokens, options.seed + index, size,
                               category="ransomware")
    rss = RssSampler(system)
    rss.start()
    cpu_before = system.machine_cpu()
    result = await run_load(LoadPlan(url=system.urls["intake"] + "/v1/incidents",
                                     reports=reports, mode="closed", count=size,
                                     concurrency=options.size(64, 16),
                                     key_prefix=f"{scenario.run_id}-burst{index}"))
    start = result.started
    accepted = {s[4]: s for s in result.accepted()}
    not_placed = await watch.wait_until(accepted, "all_placed_at",
                                        max(30.0, size / DISPATCH_RATE_FLOOR
                                            - (time.time() - start)))
    rest = await probe.until_at_rest(start, REST_TIMEOUT_SECONDS)
    cpu_used = machine_cpu_used(cpu_before, system.machine_cpu(), system.services)
    await rss.stop()
    rows_after = await probe.rows()
    placed = [t for i in accepted if (t := watch.progress(i).all_placed_at) is not None]
    last_placed = max(placed) - start if placed else None
    everyone = rest.latest(system.services)
    others = rest.latest([name for name in system.services if name not in READ_MODELS])
    return {
        "reports": size,
        "accepted": len(accepted),
        "dispatched": len(placed),
        "not_dispatched": not_placed,
        "lost": {name: len(accepted) - (rows_after[name] - rows_before[name])
                 for name in rows_after},
        "seconds_to_all_dispatched": round(last_placed, 2) if last_placed else None,
        "incidents_per_second_dispatched": round(len(placed) / last_placed, 1)
        if last_placed else None,
        "seconds_until_at_rest": everyone,
        "incidents_per_second_until_at_rest": round(len(placed) / everyone, 1)
        if everyone else None,
        "seconds_at_rest_after_first_report": rest.seconds,
        "read_models_seconds_after_others": {
            name: _after(rest.seconds[name], others) for name in READ_MODELS
            if name in rest.seconds},
        "backlog_at_end": {name: vars(b) for name, b in rest.backlog.items() if not b.at_rest},
        "accept_to_dispatched": latency_summary_ms(
            [t - s[2] for i, s in accepted.items()
             if (t := watch.progress(i).all_placed_at) is not None]),
        "cpu_ms_per_incident": cpu_ms_each(cpu_used, len(placed)) if placed else None,
        "rss_kib_at_rest_before": rss_at_rest_before,
        "rss_kib_peak": rss.peak,
        "rss_kib_at_rest_after": system.rss(),
        "at_rest_before_seconds": settled.latest(system.services),
        "loadgen_cpu_fraction": round(result.cpu_fraction, 2),
        "refused": result.not_accepted_note(),
        "_curves": _curves(watch, accepted, start),
    }


def _after(seconds: float | None, others: float | None) -> float | None:
    return round(seconds - others, 2) if seconds is not None and others is not None else None


def _curves(watch: Watcher, accepted: dict[str, Any], start: float) -> dict[str, list[float]]:
    return {
        "accepted by intake": sorted(s[2] - start for s in accepted.values()),
        "every job placed": sorted(t - start for i in accepted
                                   if (t := watch.progress(i).all_placed_at) is not None),
    }


def _leak(first: dict[str, Any], second: dict[str, Any]) -> dict[str, float]:
    """Each process's second peak over its first."""
    return {name: round(second["rss_kib_peak"][name] / peak, 3)
            for name, peak in first["rss_kib_peak"].items()
            if peak and second["rss_kib_peak"].get(name)}


def _outcome(options: Options, size: int, measured: dict[str, dict[str, Any]]) -> Outcome:
    figures: dict[str, Any] = {"reports_per_burst": size, "cpus": os.cpu_count()}
    targets: list[Target] = []
    curves = {}
    for label, system in measured.items():
        bursts = system["bursts"]
        for number, burst in enumerate(bursts, 1):
            curves[f"{label} #{number}"] = burst.pop("_curves")
        first = bursts[0]
        figures[label] = {**{k: v for k, v in system.items() if k != "bursts"},
                          **{f"burst_{n}": b for n, b in enumerate(bursts, 1)}}
        lost = sum(max(0, n) for b in bursts for n in b["lost"].values()) + sum(
            b["not_dispatched"] + b["reports"] - b["accepted"] for b in bursts)
        figures[label]["lost"] = lost
        if label == "replicas":
            continue
        figures[label]["leak_ratio"] = leak = _leak(first, bursts[1]) if len(bursts) > 1 else {}
        slowest = min((b["incidents_per_second_until_at_rest"] or 0.0) for b in bursts)
        targets.append(Target(f"{label}: incidents/s until every service is at rest "
                              "(slower burst)", slowest or None, ">=", TARGET_RATE, "/s"))
        targets.append(Target(f"{label}: incidents lost (count checks)", lost, "<=", 0))
        for name in READ_MODELS:
            after = [b["read_models_seconds_after_others"].get(name) for b in bursts]
            if name in system["services"]:
                targets.append(Target(f"{label}: {name} at rest after the others (worse burst)",
                                      None if None in after else max(a for a in after
                                                                     if a is not None),
                                      "<=", LAG_TARGET_SECONDS, "s"))
        if leak:
            targets.append(Target(f"{label}: second burst's peak RSS over the first's "
                                  "(highest process)", max(leak.values()), "<=",
                                  1 + LEAK_TOLERANCE))
    one, two = (measured.get(k, {}).get("bursts", [{}])[0].get("incidents_per_second_until_at_rest")
                for k in ("equal_weights", "replicas"))
    figures["replicas_rate_over_one_replica"] = round(two / one, 2) if one and two else None
    notes = [
        f"each burst: {size} ransomware reports across {options.size(500, 20)} SMEs, closed "
        f"loop with {options.size(64, 16)} in flight; 20 vendors with room for every job",
        "at rest: every service's consumer group has committed every message of the topics it "
        "reads and its outbox has no pending row (bench/rest.py), polled every 0.25 s; "
        "incidents_per_second_until_at_rest = incidents dispatched / seconds from the first "
        "report until the last service came to rest",
        "lost: per service, accepted reports minus the new rows of its per-incident table "
        "(intake, triage, notify, insights: incidents; payout: claims), plus reports not "
        "accepted or not dispatched; dead letters counted on every dead-letter topic",
        "read_models_seconds_after_others: when insights (and risk) came to rest, after the "
        "last of the other services did (negative: before them)",
        "leak_ratio: each process's peak RSS in the second burst over its peak in the first",
        "replicas_rate_over_one_replica: the replicas system's incidents/s until at rest over "
        "the equal-weights system's first burst (same weights, same machine, same run)",
        "cpu_ms_per_incident: each process's CPU from the first report until every service "
        "was at rest, over the incidents dispatched (a service's replicas summed)",
        "cpu_percent_of_a_core_at_rest (as deployed): each process's CPU over "
        f"{options.size(*AT_REST_SECONDS)} s with nothing to do, "
        f"{options.size(*AT_REST_SETTLE_SECONDS)} s after the "
        "services were ready and before any data was loaded (no watcher or rest probe running)",
    ]
    for label, system in measured.items():
        for number, burst in enumerate(system["bursts"], 1):
            if burst["refused"]:
                notes.append(f"{label} burst {number}: {burst['refused']}")
            if burst["backlog_at_end"]:
                notes.append(f"{label} burst {number}: not at rest when the benchmark stopped "
                             f"waiting: {burst['backlog_at_end']}")
    return Outcome(figures=figures, targets=targets,
                   parameters={"reports_per_burst": size, "concurrency": options.size(64, 16),
                               "orgs": options.size(500, 20), "vendors": 20,
                               "replicas": REPLICATED},
                   notes=notes, chart=_chart(options, curves))


def _chart(options: Options, curves: dict[str, dict[str, list[float]]]) -> str:
    fig, axis = charts.figure(1, width=8)
    for label, series in curves.items():
        placed = series["every job placed"]
        axis.plot(placed, range(1, len(placed) + 1), label=f"{label}: every job placed")
    axis.set_xlabel("seconds since the burst's first report")
    axis.set_ylabel("incidents (cumulative)")
    axis.legend(fontsize="small")
    suffix = " (quick run)" if options.quick else ""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return charts.save(fig, options.results_dir, NAME, f"{TITLE}{suffix}, {day}")
