"""`FastPathRoute`: a well-formed request skips FastAPI's dependency solving, and every other
request gets exactly the answer FastAPI's own route gives."""

from __future__ import annotations

from typing import Annotated, Any

import fastapi.routing
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import KeySet, Principal, Role, TokenVerifier, audience_of, require
from shared.problems import install_problem_handlers
from shared.routing import FastPathRoute
from shared.settings import PlatformSettings
from tests.support.service import TEST_ISSUER, provider_jwks_url, provider_signer

Key = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=8)]
Reporter = Annotated[Principal, require(Role.policyholder)]


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, Field(min_length=1, max_length=20)]
    hosts: Annotated[int, Field(ge=0)] = 0


async def report(body: Report, key: Key, caller: Reporter, request: Request) -> Response:
    return Response(f'{{"title":"{body.title}","hosts":{body.hosts},"key":"{key}",'
                    f'"org":"{caller.org_id}","path":"{request.url.path}"}}',
                    201, media_type="application/json")


TOKENS = TokenVerifier(PlatformSettings(jwks_url=provider_jwks_url(), jwt_issuer=TEST_ISSUER),
                       audience=audience_of("intake"),
                       keys=KeySet(provider_jwks_url(), refresh_seconds=60))


@pytest.fixture
def client() -> httpx.AsyncClient:
    """The same endpoint twice: on FastAPI's own route and on the fast path."""
    router = APIRouter()
    router.add_api_route("/standard", report, methods=["POST"], status_code=201)
    router.add_api_route("/fast", report, methods=["POST"], status_code=201,
                         route_class_override=FastPathRoute)
    app = FastAPI()
    app.state.tokens = TOKENS
    install_problem_handlers(app)
    app.router.routes.extend(router.routes)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def bearer(role: Role = Role.policyholder) -> str:
    return "Bearer " + provider_signer().issue(role=role, sub="it", org_id="org-a")


JSON = "application/json"
GOOD = b'{"title": "files encrypted", "hosts": 3}'
REQUESTS: dict[str, tuple[bytes, dict[str, str]]] = {
    "well formed": (GOOD, {"Authorization": bearer(), "Idempotency-Key": "k1",
                           "Content-Type": JSON}),
    "a default left out": (b'{"title": "x"}', {"Authorization": bearer(),
                                               "Idempotency-Key": "k1", "Content-Type": JSON}),
    "JSON with a charset": (GOOD, {"Authorization": bearer(), "Idempotency-Key": "k1",
                                   "Content-Type": "application/json; charset=utf-8"}),
    "not JSON": (GOOD, {"Authorization": bearer(), "Idempotency-Key": "k1",
                        "Content-Type": "text/plain"}),
    "no content type": (GOOD, {"Authorization": bearer(), "Idempotency-Key": "k1"}),
    "broken JSON": (b'{"title": ', {"Authorization": bearer(), "Idempotency-Key": "k1",
                                   "Content-Type": JSON}),
    "empty body": (b"", {"Authorization": bearer(), "Idempotency-Key": "k1",
                         "Content-Type": JSON}),
    "a field too long": (b'{"title": "' + b"x" * 21 + b'"}', {
        "Authorization": bearer(), "Idempotency-Key": "k1", "Content-Type": JSON}),
    "an unknown field": (b'{"title": "x", "ransom": 1}', {
        "Authorization": bearer(), "Idempotency-Key": "k1", "Content-Type": JSON}),
    "a wrong type": (b'{"title": "x", "hosts": "many"}', {
        "Authorization": bearer(), "Idempotency-Key": "k1", "Content-Type": JSON}),
    "a JSON list": (b"[1, 2]", {"Authorization": bearer(), "Idempotency-Key": "k1",
                                "Content-Type": JSON}),
    "no Idempotency-Key": (GOOD, {"Authorization": bearer(), "Content-Type": JSON}),
    "an empty Idempotency-Key": (GOOD, {"Authorization": bearer(), "Idempotency-Key": "",
                                        "Content-Type": JSON}),
    "a long Idempotency-Key": (GOOD, {"Authorization": bearer(), "Idempotency-Key": "k" * 9,
                                      "Content-Type": JSON}),
    "no token": (GOOD, {"Idempotency-Key": "k1", "Content-Type": JSON}),
    "a forged token": (GOOD, {"Authorization": bearer()[:-3] + "AAA", "Idempotency-Key": "k1",
                              "Content-Type": JSON}),
    "another role": (GOOD, {"Authorization": bearer(Role.vendor), "Idempotency-Key": "k1",
                            "Content-Type": JSON}),
    "no token and a bad body": (b"{}", {"Idempotency-Key": "k1", "Content-Type": JSON}),
    "no token and broken JSON": (b'{"title": ', {"Idempotency-Key": "k1",
                                                 "Content-Type": JSON}),
    "another role and a missing header": (GOOD, {"Authorization": bearer(Role.vendor),
                                                 "Content-Type": JSON}),
}


def answer(response: httpx.Response) -> tuple[int, Any]:
    body = response.json()
    if isinstance(body, dict):
        body.pop("instance", None)  # the request's own path
        body.pop("path", None)
    return response.status_code, body


@pytest.mark.parametrize("case", list(REQUESTS))
async def test_the_fast_path_answers_every_request_as_fastapi_does(
        client: httpx.AsyncClient, case: str) -> None:
    content, headers = REQUESTS[case]
    standard = await client.post("/standard", content=content, headers=headers)
    fast = await client.post("/fast", content=content, headers=headers)
    assert answer(fast) == answer(standard)


async def test_only_a_request_that_is_not_well_formed_is_solved_by_fastapi(
        client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    solved = []
    solve_dependencies = fastapi.routing.solve_dependencies

    async def counting(**kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await solve_dependencies(**kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    content, headers = REQUESTS["well formed"]
    assert (await client.post("/fast", content=content, headers=headers)).status_code == 201
    assert solved == []
    content, headers = REQUESTS["a wrong type"]
    assert (await client.post("/fast", content=content, headers=headers)).status_code == 422
    assert solved == ["/fast"]


async def status_when_the_client_went_away(app: Any, path: str) -> list[int]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app({"type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
               "query_string": b"", "root_path": "", "scheme": "http", "server": ("test", 80),
               "client": ("127.0.0.1", 1), "http_version": "1.1",
               "headers": [(b"content-type", JSON.encode()), (b"authorization", bearer().encode()),
                           (b"idempotency-key", b"k1")]}, receive, send)
    return [m["status"] for m in messages if m["type"] == "http.response.start"]


async def test_a_client_that_went_away_is_answered_as_fastapi_answers_it(
        client: httpx.AsyncClient) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    assert (await status_when_the_client_went_away(app, "/fast")
            == await status_when_the_client_went_away(app, "/standard"))


def sync_check(request: Request) -> str:
    return "admitted"


async def with_sync_dependency(body: Report,
                               admitted: Annotated[str, Depends(sync_check)]) -> Response:
    return Response(status_code=204)


async def with_query(body: Report, limit: Annotated[int, Query()] = 1) -> Response:
    return Response(status_code=204)


async def not_a_response(body: Report) -> dict[str, str]:
    return {}


@pytest.mark.parametrize("endpoint", [with_query, not_a_response, with_sync_dependency])
def test_an_endpoint_the_fast_path_cannot_solve_is_refused_at_start_up(endpoint: Any) -> None:
    router = APIRouter()
    with pytest.raises(TypeError, match="fast-path"):
        router.add_api_route("/x", endpoint, methods=["POST"], route_class_override=FastPathRoute)
