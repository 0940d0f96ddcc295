"""`python -m bench [NAME ...] [--quick] [--profile] [--seed N] [--results-dir DIR]`: run
benchmarks, write bench/results/<name>.json and .png, and refresh the results table in
docs/performance.md (with `--results-dir`: write there, and leave the doc alone).

Benchmarks report figures against targets; they never fail the build for being slow. The exit
status is non-zero only if a benchmark could not run (crashed), not if a target was missed.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

from bench.common import RESULTS_DIR, Options, Skipped, machine, print_result, write_result
from bench.docs import update_performance_doc
from bench.system import ALL_SERVICES, autovacuum_description, cpu_weights_description, service_built

BENCHMARKS = ["intake_throughput", "dispatch_latency", "burst", "lifecycle", "insights_query",
              "notify_cost"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, a few seconds of load each (smoke check; figures "
                             "are labelled as quick runs)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the intake process with py-spy during intake_throughput")
    parser.add_argument("--seed", type=int, default=Options.seed, help="seed of every workload")
    parser.add_argument("--burst-size", type=int, metavar="N",
                        help="reports in each burst of the burst benchmark (default 4,000; "
                             "200 with --quick)")
    parser.add_argument("--results-dir", type=Path, metavar="DIR",
                        help="write the results to DIR instead of bench/results and leave "
                             "docs/performance.md as it is (the tests' smoke run uses this)")
    args = parser.parse_args(argv)
    # A SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so every benchmark stops the services it
    # started (they run in their own sessions and would otherwise outlive it, skewing the next run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    options = Options(quick=args.quick, seed=args.seed, profile=args.profile,
                      command=command.strip(), results_dir=args.results_dir or RESULTS_DIR,
                      burst_size=args.burst_size)
    crashed = False
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        print(f"-- {module.TITLE}{' (quick)' if options.quick else ''} ...", flush=True)
        started = time.time()
        # The load average says how busy the machine was before the run.
        at_start = {**machine(), "postgresql": autovacuum_description(),
                    "cpu_weights": cpu_weights_description(
                        [name for name in ALL_SERVICES if service_built(name)])}
        try:
            outcome = module.run(options)
        except Skipped as exc:
            result = write_result(options, name, module.TITLE, status="skipped", started=started,
                                  reason=str(exc), machine_at_start=at_start)
        except Exception as exc:
            crashed = True
            traceback.print_exc()
            result = write_result(options, name, module.TITLE, status="failed", started=started,
                                  reason=f"{type(exc).__name__}: {str(exc)[:500]}",
                                  machine_at_start=at_start)
        else:
            result = write_result(options, name, module.TITLE, status="ok", started=started,
                                  outcome=outcome, machine_at_start=at_start)
        print_result(result)
    if args.results_dir is None:
        path = update_performance_doc(options.results_dir)
        print(f"results in {options.results_dir}; table refreshed in {path}")
    else:
        print(f"results in {options.results_dir}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
