"""The services' safety nets: timer passes that find what should have moved on and did not,
and move it. Each repair is one counter increment and one log line, so an operator sees that a
state machine had stopped moving (and which) even though it moves again."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from datetime import timedelta

from prometheus_client import Counter

from shared.polling import PollingLoop

log = logging.getLogger(__name__)

STUCK_REPAIRED = Counter("cyberclaims_stuck_repaired_total",
                         "Stuck state machines found and repaired by a safety net",
                         ["service", "kind"])


def record_repair(service: str, kind: str, what: str) -> None:
    STUCK_REPAIRED.labels(service, kind).inc()
    log.warning("%s safety net repaired a stuck %s: %s", service, kind, what)


class SafetyNet(ABC):
    """A service's safety net: `repair_stuck` every `interval_seconds`, at once again while a
    pass repairs a whole batch; what stayed still longer than `stuck_after_seconds` is stuck."""

    batch = 100

    def __init__(self, *, interval_seconds: float, stuck_after_seconds: float) -> None:
        self.stuck_after = timedelta(seconds=stuck_after_seconds)
        self._loop = PollingLoop("safety net", self.repair_stuck,
                                 interval_seconds=interval_seconds, again_at=self.batch)

    async def run(self) -> None:
        await self._loop.run()

    @abstractmethod
    async def repair_stuck(self) -> int:
        """One pass; returns how many it repaired."""
