"""Problem details for failures that are not the caller's fault but are not bugs either."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.problems import PROBLEM_JSON, install_problem_handlers


async def test_an_exhausted_connection_pool_is_a_503_to_retry_not_a_500() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/things")
    async def busy() -> None:
        raise PoolTimeout("QueuePool limit of size 10 overflow 10 reached")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/v1/things")

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "1"
    assert response.json()["instance"] == "/v1/things"
