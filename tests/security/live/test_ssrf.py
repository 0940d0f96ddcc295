"""Finding 5: webhook URLs that point notify at itself, its neighbours or the cloud's metadata
are refused with 422 when subscribing; the suite's own receiver (the one allow-listed host) is
accepted; subscriptions per owner are capped."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from cyberclaims.client import Api
from tests.e2e.system import System
from tests.e2e.test_claims import insure
from tests.security.support import RECEIVER_HOST, Figures, Receiver, status_of, suffix

pytestmark = pytest.mark.slow

# More subscriptions than one owner may have (NOTIFY_MAX_SUBSCRIPTIONS_PER_OWNER, 20 on the
# notify branch; the test only needs the cap to be below this).
SUBSCRIPTION_ATTEMPTS = 120


def ssrf_targets(system: System) -> list[str]:
    payout_port = urlsplit(system.urls["payout"]).port
    broker = system.bootstrap
    smtp_port = system.env["NOTIFY_SMTP_PORT"]
    return [
        f"http://127.0.0.1:{payout_port}/v1/claims",
        f"http://localhost:{payout_port}/v1/claims",
        f"http://0.0.0.0:{payout_port}/",
        f"http://[::1]:{payout_port}/",
        f"http://[::ffff:127.0.0.1]:{payout_port}/",
        f"http://2130706433:{payout_port}/",
        f"http://127.1:{payout_port}/",
        f"http://0x7f000001:{payout_port}/",
        f"http://017700000001:{payout_port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        f"http://{broker}/",
        "http://127.0.0.1:5432/",
        f"http://127.0.0.1:{smtp_port}/",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://255.255.255.255/hook",
        f"http://user:pass@{RECEIVER_HOST}:9/hook",
        f"http://token@{RECEIVER_HOST}:9/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1:25/",
    ]


def test_finding_05_ssrf_targets_are_refused_at_subscribe(system: System, api: Api,
                                                          figures: Figures) -> None:
    holder, _ = insure(api, "CN-JL")
    accepted = {}
    for url in ssrf_targets(system):
        status = status_of(api, "POST", api.urls["notify"] + "/v1/subscriptions",
                           headers=holder.headers, json={"url": url, "secret": "s" * 32})
        figures.record("SSRF webhook targets", status == 422)
        if status != 422:
            accepted[url] = status
    assert not accepted, f"{len(accepted)} SSRF targets not refused with 422: {accepted}"


def test_the_allow_listed_receiver_is_accepted(api: Api) -> None:
    holder, _ = insure(api, "CN-JL")
    with Receiver() as receiver:
        holder.post("notify", "/v1/subscriptions", {"url": f"{receiver.url}/ok",
                                                    "secret": "s" * 32})


def test_finding_05_subscriptions_per_owner_are_capped(api: Api, figures: Figures) -> None:
    holder, _ = insure(api, "CN-JL")
    statuses = []
    for _ in range(SUBSCRIPTION_ATTEMPTS):
        status = status_of(api, "POST", api.urls["notify"] + "/v1/subscriptions",
                           headers=holder.headers,
                           json={"url": f"http://{RECEIVER_HOST}:9/{suffix()}", "secret": "s" * 32})
        statuses.append(status)
        if status != 201:
            break
    figures.record("subscription cap", statuses[-1] in (409, 422))
    assert statuses[-1] in (409, 422), (
        f"{statuses.count(201)} subscriptions for one owner and no cap "
        f"(last answer {statuses[-1]})")
