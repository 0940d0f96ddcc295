"""Finding 11: failed authentication and writes are rate limited per client address and per
principal, answering 429 with Retry-After. This module runs its own system with low limits
(the `live` package's system keeps the defaults, so its tests never meet a 429)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cyberclaims.client import Api
from tests.e2e.system import System, running_system
from tests.security.support import (
    RATE_LIMIT_SETTINGS,
    RECEIVER_HOST,
    SYSTEM_ENV,
    Figures,
    tenant,
)
from tests.support.service import provider_signer

pytestmark = pytest.mark.slow

ATTEMPTS = 300
FORGER_ADDRESS = "127.0.0.9"
# Low enough that ATTEMPTS requests must meet every limit however slowly a busy machine serves
# them: a burst of 20, then one a second (the default rates, 20 and 100 writes a second, are
# never met by sequential requests that each take over 50 ms).
LOW_LIMITS = {**dict.fromkeys(RATE_LIMIT_SETTINGS, "20"), "CYBERCLAIMS_RATE_LIMITS": "true",
              "CYBERCLAIMS_PRINCIPAL_WRITE_RATE": "1", "CYBERCLAIMS_ADDRESS_WRITE_RATE": "1"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(Path(tmp_path_factory.mktemp("ratelimit")),
                        extra_env={**SYSTEM_ENV, **LOW_LIMITS}) as running:
        yield running


@pytest.fixture(scope="module")
def api(limited: System) -> Iterator[Api]:
    client = Api(limited.urls, provider_signer())
    yield client
    client.close()


def first_429(responses: Iterator[httpx.Response]) -> httpx.Response | None:
    for response in responses:
        if response.status_code == 429:
            return response
    return None


@pytest.mark.parametrize("service", ["intake", "triage", "payout", "notify"])
def test_finding_11_forged_tokens_meet_429_with_retry_after(api: Api, figures: Figures,
                                                           service: str) -> None:
    path = {"intake": "/v1/incidents", "triage": "/v1/jobs", "payout": "/v1/claims",
            "notify": "/v1/notifications"}[service]
    # From an address of its own: the failed-authentication limit refuses every request of
    # an address that used up its burst, and the other tests write from 127.0.0.1.
    with httpx.Client(transport=httpx.HTTPTransport(local_address=FORGER_ADDRESS)) as forger:
        forged = (forger.get(api.urls[service] + path,
                             headers={"Authorization": f"Bearer forged.{attempt}.token"})
                  for attempt in range(ATTEMPTS))
        limited = first_429(forged)
    figures.record("rate limit: forged tokens", limited is not None)
    assert limited is not None, f"{ATTEMPTS} forged tokens on {service} and never a 429"
    assert int(limited.headers["Retry-After"]) > 0


def test_finding_11_writes_of_one_principal_meet_429_with_retry_after(api: Api,
                                                                     figures: Figures) -> None:
    owner = tenant(api, "CN-YN")
    writes = (api.http.post(api.urls["intake"] + f"/v1/incidents/{owner.incident_id}/losses",
                            headers=owner.holder.headers,
                            json={"section": "incident_response", "amount": "1.00",
                                  "description": f"write {attempt}"})
              for attempt in range(ATTEMPTS))
    limited = first_429(writes)
    figures.record("rate limit: writes of one principal", limited is not None)
    assert limited is not None, f"{ATTEMPTS} writes by one policyholder and never a 429"
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.headers["content-type"].startswith("application/problem+json")


def test_finding_11_writes_from_one_address_meet_429_with_retry_after(api: Api,
                                                                     figures: Figures) -> None:
    """Many principals, one client address: a new token per write must not escape the limit."""
    writes = (api.http.post(api.urls["notify"] + "/v1/subscriptions",
                            headers=api.policyholder(f"org-burst-{attempt}").headers,
                            json={"url": f"http://{RECEIVER_HOST}:9/{attempt}", "secret": "s" * 32})
              for attempt in range(ATTEMPTS))
    limited = first_429(writes)
    figures.record("rate limit: writes of one address", limited is not None)
    assert limited is not None, f"{ATTEMPTS} writes by as many principals and never a 429"
    assert int(limited.headers["Retry-After"]) > 0
