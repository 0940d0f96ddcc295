"""What the burst benchmark calls "at rest", the processes a replicated system runs, and the
doc's table of figures beside their baselines (no services started: cheap)."""

from __future__ import annotations

from pathlib import Path

from bench.docs import render, render_profiles
from bench.rest import Backlog, RestTimes, consumed_topics
from bench.system import ALL_SERVICES, System
from shared.topics import CLAIMS, INCIDENTS, POLICIES, RESPONSE


def test_each_service_is_watched_on_the_topics_its_handlers_read() -> None:
    topics = {name: consumed_topics(name) for name in ALL_SERVICES}

    assert INCIDENTS.name in topics["triage"] and POLICIES.name in topics["triage"]
    assert RESPONSE.name in topics["payout"]
    assert {CLAIMS.name, INCIDENTS.name, RESPONSE.name} <= set(topics["insights"])
    assert all(topics.values())


def test_a_service_is_at_rest_only_with_no_lag_and_no_pending_outbox_row() -> None:
    assert Backlog(lag=0, pending_outbox=0).at_rest
    assert not Backlog(lag=1, pending_outbox=0).at_rest
    assert not Backlog(lag=0, pending_outbox=3).at_rest


def test_the_system_is_at_rest_when_its_last_service_is() -> None:
    times = RestTimes(seconds={"intake": 1.0, "notify": 7.5, "insights": 9.0})

    assert times.all_at_rest
    assert times.latest(["intake", "notify"]) == 7.5
    assert RestTimes(seconds={"intake": 1.0, "notify": None}).latest(["intake", "notify"]) is None


def test_replicas_run_as_processes_of_their_own_on_ports_of_their_own() -> None:
    system = System(["intake", "triage", "notify"], replicas={"triage": 2, "notify": 2})
    try:
        assert system.instance_names() == ["intake", "triage", "triage-2", "notify", "notify-2"]
        assert system.ports["triage"] != system.ports["triage-2"]
    finally:
        system.stop()


def test_the_doc_shows_each_figure_beside_its_same_run_baseline() -> None:
    burst = {"benchmark": "burst", "status": "ok", "run_at": "2026-12-06T05:00:00",
             "machine": {"load_average": [3.5, 3.0, 2.0]}, "targets": [],
             "figures": {"as_deployed": {"burst_1": {
                 "incidents_per_second_until_at_rest": 90.0,
                 "incidents_per_second_dispatched": 180.0,
                 "read_models_seconds_after_others": {"insights": 2.0, "risk": -1.0}}},
                 "equal_weights": {"burst_1": {"incidents_per_second_until_at_rest": 99.0}}}}

    table = render([burst])

    assert "| 90.0 (x0.50) | 180.0 (dispatched/s, same burst) |" in table
    assert "| 99.0 (x1.10) | 90.0 (as deployed) |" in table
    assert "load 3.5" in table


def test_profiles_are_summarised_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "profile_payout.txt").write_text(
        "py-spy profile of payout under lifecycle (full run; command: python -m bench)\n\n"
        "120 samples, 40% in the event loop (waiting, or descheduled)\n\n"
        "Self time (leaf frame):\n  30.0%  write (asyncio/selector_events.py)\n\n"
        "Self time by package (leaf frame's directory):\n  40.0%  asyncio\n")

    summary = render_profiles(tmp_path)

    assert summary.startswith("- **payout** (120 samples, 40% in the event loop (waiting, or descheduled);")
    assert "30.0% write (asyncio/selector_events.py)" in summary and "40.0% asyncio" in summary
