"""The attack suite's figures: every test records what it tried and what was refused; the
totals go to `security-figures.json` in pytest's base temp dir and to the terminal summary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.support import Figures

FIGURES = pytest.StashKey[Figures]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Figures]:
    recorded = request.config.stash.setdefault(FIGURES, Figures())
    yield recorded
    recorded.path = tmp_path_factory.getbasetemp() / "security-figures.json"
    recorded.write(recorded.path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    recorded = config.stash.get(FIGURES, None)
    if recorded is None or not recorded.counts:
        return
    terminalreporter.section("attack suite figures (tried / refused)")
    for line in recorded.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"written to {recorded.path}")
