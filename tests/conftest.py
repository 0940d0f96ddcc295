"""Session-wide real infrastructure: one Tansu broker, and a fresh PostgreSQL database per
service (migrated once). Tests keep apart by using unique ids, not by mocking anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

from shared.migrations import migrate
from shared.settings import PlatformSettings
from tests.support.infra import (
    drop_databases,
    fresh_database,
    tansu_broker,
    test_database_name,
)
from tests.support.service import Tokens, test_platform

# The suites that start a whole system of processes (broker, every service, stand-ins), or
# `make run`'s stack (its supervisor, its embedded PostgreSQL).
WHOLE_SYSTEM_SUITES = ("tests/chaos/", "tests/e2e/", "tests/security/live/",
                       "tests/security/ratelimit/", "tests/reliability/test_dev_supervisor.py",
                       "tests/reliability/test_dev_postgres.py")


class SuiteScheduling(LoadScopeScheduling):
    """How `make test`'s two workers (`-n 2`) share the suite: each module goes whole to one
    worker, so its fixtures start once, and the whole-system suites all go to the same worker,
    one after the other: two whole systems at once on two cores would starve each other's
    consumers past the deadlines the suites wait on."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return "whole-system" if module.startswith(WHOLE_SYSTEM_SUITES) else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> SuiteScheduling:
    return SuiteScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def intake_safety_net_held_back() -> Iterator[None]:
    """Most suites run intake with no triage, so the session's intake database fills with
    incidents nobody triages; ten minutes in, intake's safety net (services/intake/safety_net)
    would send every one of them again into the later suites' broker. Its own test sets the
    threshold it needs; the processes of the e2e and chaos suites inherit this one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INTAKE_STUCK_AFTER_SECONDS", str(30 * 24 * 3600))
        yield


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def scratch_database() -> Iterator[Callable[[str], str]]:
    """`scratch_database(name)` -> URL of a new, empty database `name`. All of them are dropped
    together when the session ends: a DROP DATABASE waits for a checkpoint, and concurrent
    ones share it, where one per test cost seconds each on a busy machine."""
    created: list[str] = []

    def create(name: str) -> str:
        created.append(name)
        return fresh_database(name)

    yield create
    drop_databases(*created)


@pytest.fixture(scope="session")
def service_database(scratch_database: Callable[[str], str]) -> Callable[[str], str]:
    """`service_database("intake")` -> URL of that service's test database (migrated once)."""
    created: dict[str, str] = {}

    def get(service: str) -> str:
        if service not in created:
            created[service] = scratch_database(test_database_name(service))
            migrate(service, created[service])
        return created[service]

    return get


@pytest.fixture
def platform(broker: str) -> PlatformSettings:
    return test_platform(broker)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()
