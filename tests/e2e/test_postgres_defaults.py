"""The demo's story on the defaults `make run` uses: no database configured, so every service,
its migrations and its CLI find the embedded PostgreSQL; nothing but it is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from cyberclaims.client import wait_for
from cyberclaims.demo import run_demo
from tests.e2e.conftest import E2E_ENV, api_for
from tests.e2e.system import running_system

pytestmark = pytest.mark.slow


def test_the_demo_story_on_the_embedded_postgresql(tmp_path: Path) -> None:
    with running_system(tmp_path, backend="embedded", extra_env=E2E_ENV) as system:
        assert not any(variable.endswith("_DATABASE_URL") or variable == "CYBERCLAIMS_DATABASE_SERVER"
                       for variable in system.env)
        api = api_for(system)
        try:
            story = run_demo(api)
            # insights read it too, and hides it: one organisation is below k
            cells = wait_for("insights' cell of the demo's claim", lambda: api.operator().get(
                "insights", "/v1/insights/experience", group_by="category")["cells"])
            assert [(c["dimensions"], c["suppressed"]) for c in cells] == [
                ({"category": "ransomware"}, True)]
        finally:
            api.close()
    assert story.claim["status"] == "paid"
    assert story.incident["status"] == "paid"
