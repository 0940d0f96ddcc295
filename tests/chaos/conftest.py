from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.driver import Driver
from tests.chaos.system import ChaosSystem, chaos_system


@pytest.fixture(scope="module")
def system() -> Iterator[ChaosSystem]:
    with tempfile.TemporaryDirectory(prefix="cyberclaims-chaos-") as workdir, \
            chaos_system(Path(workdir)) as running:
        yield running


@pytest.fixture(scope="module")
def panel_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
async def driver(system: ChaosSystem, panel_id: str) -> AsyncIterator[Driver]:
    player = Driver(system.urls, system.receiver.url, panel_id)
    await player.register_panel()
    yield player
    await player.close()


FIGURES = Path(".data/chaos-figures.json")


@pytest.fixture(scope="module")
def figures() -> Iterator[dict[str, dict[str, Any]]]:
    """Each scenario's figures, written to .data/chaos-figures.json at the end
    (docs/reliability.md quotes a run)."""
    collected: dict[str, dict[str, Any]] = {}
    yield collected
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(collected, indent=1) + "\n")
