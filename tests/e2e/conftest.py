from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from cyberclaims.client import Api
from tests.e2e.system import System, running_system
from tests.support.service import provider_signer

E2E_ENV = {
    "TRIAGE_SLA_P4_MINUTES": "0.1",  # a P4 job expires after 6 s: the expiry story waits for it
    "TRIAGE_TIMER_POLL_SECONDS": "0.2",
    "NOTIFY_WORKER_POLL_SECONDS": "0.2",
    "NOTIFY_BACKOFF_BASE_SECONDS": "0.5",
    "PAYOUT_PAYMENT_POLL_SECONDS": "0.2",
    "INSIGHTS_MIN_ORGANISATIONS": "2",  # the simulated book of tests/e2e/test_insights.py is small
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test shows the system's last output (its warnings and errors): a report that
    never reached the vendor says where it stopped."""
    report = yield
    system = getattr(item, "funcargs", {}).get("system")
    if report.failed and isinstance(system, System):
        report.sections.append(("the system's last output", system.logs()))
    return report


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(Path(tmp_path_factory.mktemp("e2e")), extra_env=E2E_ENV) as running:
        yield running


def api_for(system: System) -> Api:
    return Api(system.urls, provider_signer())


@pytest.fixture
def api(system: System) -> Iterator[Api]:
    client = api_for(system)
    yield client
    client.close()
