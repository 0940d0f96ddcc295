"""What the services' safety nets repaired: one counter and one log line per repair, so an
operator sees that a state machine had stopped moving (and which) even though it moves again."""

from __future__ import annotations

import logging

from prometheus_client import Counter

log = logging.getLogger(__name__)

STUCK_REPAIRED = Counter("cyberclaims_stuck_repaired_total",
                         "Stuck state machines found and repaired by a safety net",
                         ["service", "kind"])


def record_repair(service: str, kind: str, what: str) -> None:
    STUCK_REPAIRED.labels(service, kind).inc()
    log.warning("%s safety net repaired a stuck %s: %s", service, kind, what)
