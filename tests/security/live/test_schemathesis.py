"""schemathesis against each service's live /openapi.json, with a token of every role: zero
server errors and zero status-code, response-schema or content-type mismatches (issue 23's
acceptance). Examples are bounded (generation only, no shrinking) so the six services take
a few minutes on two cores; the test prints a short summary of what it found.

A role the authorization matrix refuses an operation (tests/security/live/test_authorization.py,
403) gets a few examples, not the full count: its token is turned away by the operation's one
authorization dependency before any parameter or body is read, so more of its cases exercise
nothing more (and the matrix itself checks the 403)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cyberclaims.client import Api
from cyberclaims.registry import SERVICES
from shared.auth import Role
from tests.security.live.test_authorization import ROUTES
from tests.security.support import BIG_AUTHORITY, Figures, role_actor

pytestmark = pytest.mark.slow

# Per operation and role: schema-valid cases, then schema-invalid ones (which must be 4xx).
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 8}
REFUSED_EXAMPLES = {GenerationMode.POSITIVE: 2, GenerationMode.NEGATIVE: 2}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          content_type_conformance]


def role_headers(api: Api) -> dict[str, dict[str, str]]:
    """A token of every role (the roles other services add get a bare token)."""
    actors = {"policyholder": api.policyholder("org-fuzz"), "vendor": api.vendor("v-fuzz"),
              "adjuster": api.adjuster("adj-fuzz", BIG_AUTHORITY), "operator": api.operator()}
    return {role.value: (actors.get(role.value) or role_actor(api, role.value)).headers
            for role in Role}


@dataclass
class Findings:
    calls: int = 0
    failed_calls: int = 0
    titles: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def note(self, failure: Failure, status: int, where: str) -> None:
        kind = f"{failure.title} ({status})"
        self.titles[kind] += 1
        self.examples.setdefault(kind, where)


def examples(service: str, operation: schemathesis.APIOperation, role: str
             ) -> dict[GenerationMode, int]:
    """The full count where the matrix lets `role` past authorization, a few where it is
    refused (403); an operation without a row in the matrix gets the full count."""
    rules = ROUTES.get((service, operation.method.upper(), operation.path))
    refused = rules is not None and rules[role][0] == 403
    return REFUSED_EXAMPLES if refused else EXAMPLES


def fuzz(operation: schemathesis.APIOperation, base_url: str, role: str,
         headers: dict[str, str], mode: GenerationMode, count: int, findings: Findings) -> None:
    @hypothesis.settings(max_examples=count, phases=[Phase.explicit, Phase.generate],
                         deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck), print_blob=False)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        findings.calls += 1
        response = case.call(base_url=base_url, headers=headers, timeout=15)
        status = response.status_code
        where = f"{case.method} {case.path} as {role}, {mode.value}"
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            findings.failed_calls += 1
            for failure in group.exceptions:
                findings.note(failure, status, where)
        except Failure as failure:
            findings.failed_calls += 1
            findings.note(failure, status, where)

    run()


@pytest.mark.parametrize("service", [entry.name for entry in SERVICES])
def test_schemathesis_finds_nothing(api: Api, figures: Figures, service: str) -> None:
    base_url = api.urls[service]
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    findings = Findings()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(f"{service}'s OpenAPI has an operation schemathesis cannot read: "
                        f"{result.err()}")
        operation = result.ok()
        for role, headers in role_headers(api).items():
            for mode, count in examples(service, operation, role).items():
                fuzz(operation, base_url, role, headers, mode, count, findings)
    found = sum(findings.titles.values())
    figures.counts[f"schemathesis {service} (calls / calls without a finding)"] = {
        "tried": findings.calls, "refused": findings.calls - findings.failed_calls}
    summary = "\n".join(f"{count:>5} x {title}  (e.g. {findings.examples[title]})"
                        for title, count in findings.titles.most_common())
    print(f"\nschemathesis {service}: {findings.calls} calls, {found} findings\n{summary}")
    assert not found, f"schemathesis on {service}: {found} findings\n{summary}"
