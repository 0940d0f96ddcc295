"""Who may read the loss experience (actuaries, regulators, operators: aggregates only), and
bad queries answered with a problem naming the parameter."""

from __future__ import annotations

import pytest

from shared.auth import Role
from tests.insights.conftest import World
from tests.support.service import running

PATHS = ("/v1/insights/experience", "/v1/insights/experience.csv",
         "/v1/insights/experience.parquet", "/v1/insights/triangles", "/v1/insights/report")


async def test_only_actuaries_regulators_and_operators_read_insights(world: World) -> None:
    async with running(world.app(), wait_for_consumer=False) as client:
        for path in PATHS:
            assert (await client.get(path)).status_code == 401
            for role in (Role.policyholder, Role.vendor, Role.adjuster):
                response = await client.get(path, headers=world.bearer(role))
                assert response.status_code == 403, (path, role)
            for role in (Role.actuary, Role.regulator, Role.operator):
                response = await client.get(path, headers=world.bearer(role))
                assert response.status_code == 200, (path, role, response.text)


@pytest.mark.parametrize(("params", "field"), [
    ({"group_by": "org_id"}, "group_by"),
    ({"group_by": "industry,industry"}, "group_by"),
    ({"period": "2026-Q3"}, "period"),
    ({"period": "2026Q5"}, "period"),
    ({"industry": "a\x00b"}, "industry"),
    ({"basis": "reported"}, "basis"),
])
async def test_bad_parameters_are_named(world: World, params: dict[str, str], field: str) -> None:
    path = "/v1/insights/triangles" if "basis" in params else "/v1/insights/experience"
    async with running(world.app(), wait_for_consumer=False) as client:
        response = await client.get(path, params=params, headers=world.bearer(Role.actuary))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.text
