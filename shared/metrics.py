"""Metrics more than one service counts under one name (defined once: Prometheus refuses a
second registration)."""

from __future__ import annotations

from prometheus_client import Counter

STUCK_REPAIRED = Counter(
    "cyberclaims_stuck_repaired_total",
    "State machines a safety-net timer found stopped and set moving again",
    ["service", "kind"])
