"""One live system (every service its own process on PostgreSQL and Tansu) for the whole
`live` package: findings, authorization matrix, JWT, SSRF, bodies and schemathesis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cyberclaims.client import Api
from tests.e2e.system import System, running_system
from tests.security.support import SYSTEM_ENV
from tests.support.service import provider_signer


@pytest.fixture(scope="package")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(Path(tmp_path_factory.mktemp("security")), extra_env=SYSTEM_ENV) as running:
        yield running


@pytest.fixture(scope="package")
def api(system: System) -> Iterator[Api]:
    client = Api(system.urls, provider_signer())
    yield client
    client.close()
