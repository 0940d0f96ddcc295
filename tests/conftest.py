"""Session-wide real infrastructure: one Tansu broker, and a fresh PostgreSQL database per
service (migrated once). Tests keep apart by using unique ids, not by mocking anything."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared.settings import PlatformSettings
from tests.support.infra import (
    drop_database,
    migrated_database,
    tansu_broker,
    test_database_name,
)
from tests.support.service import Tokens, test_platform


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def service_database() -> Iterator[Callable[[str], str]]:
    """`service_database("intake")` -> URL of that service's test database."""
    created: dict[str, str] = {}

    def get(service: str) -> str:
        if service not in created:
            created[service] = migrated_database(service)
        return created[service]

    yield get
    for service in created:
        drop_database(test_database_name(service))


@pytest.fixture
def platform(broker: str) -> PlatformSettings:
    return test_platform(broker)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()
