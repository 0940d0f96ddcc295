"""Every operation of every service documents its error responses with the problem schema,
and the problem schema describes what the services really send."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from cyberclaims.registry import ServiceEntry, available_services
from shared.problems import PROBLEM_JSON, ProblemDetails

SERVICES = available_services()
METHODS = {"get", "post", "put", "patch", "delete"}


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, operation)
            for path, item in app.openapi()["paths"].items()
            for method, operation in item.items() if method in METHODS]


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
def test_every_operation_documents_its_errors(entry: ServiceEntry) -> None:
    app = entry.create_app(run_workers=False)
    found = operations(app)
    assert found
    for method, path, operation in found:
        expected = {"431"}
        if operation.get("security"):
            expected |= {"401", "403", "429", "503"}
        if "{" in path:
            expected |= {"404", "422"}
        if operation.get("parameters"):
            expected.add("422")
        if "requestBody" in operation:
            expected |= {"413", "415", "422"}
        if method != "GET":
            expected.add("409")
        responses = operation["responses"]
        assert expected <= set(responses), (method, path, expected - set(responses))
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"] == {
                    PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (method, path, status)
        if "429" in responses:
            assert "Retry-After" in responses["429"]["headers"]


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
def test_every_authenticated_route_is_documented_as_such(entry: ServiceEntry) -> None:
    """Every `/v1` operation takes a bearer token (so its 401 and 429 are real)."""
    for method, path, operation in operations(entry.create_app(run_workers=False)):
        assert operation.get("security") == [{"HTTPBearer": []}], (method, path)


def test_the_problem_schema_is_in_the_components() -> None:
    schema = SERVICES[0].create_app(run_workers=False).openapi()
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"title", "status", "detail", "instance"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    ProblemDetails.model_validate({"type": "about:blank", "title": "Unprocessable content",
                                   "status": 422, "detail": "x: y", "instance": "/v1/x",
                                   "errors": [{"field": "x", "message": "y"}]})
