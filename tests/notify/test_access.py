"""Who sees what: a vendor never sees another's notifications or endpoints; roles; bad input."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from tests.notify.conftest import Receiver, dispatched, emit, subscribe, unique, wait_until
from tests.support.service import Tokens, running

SECRET = "0123456789abcdef-secret"


async def test_a_vendor_never_sees_another_vendors_notifications_or_subscriptions(
    make_notify: Callable[..., FastAPI], receivers: Callable[..., Awaitable[Receiver]],
    broker: str, tokens: Tokens,
) -> None:
    a, b = unique("vendor"), unique("vendor")
    as_a, as_b = tokens.vendor(a), tokens.vendor(b)
    hook_a, hook_b = await receivers(), await receivers()
    async with running(make_notify()) as notify:
        sub_a = await subscribe(notify, as_a, hook_a.url, SECRET)
        sub_b = await subscribe(notify, as_b, hook_b.url, SECRET)
        await emit(broker, dispatched(a))

        async def a_feed() -> list[dict[str, Any]]:
            response = await notify.get("/v1/notifications", headers=as_a)
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        [item] = await wait_until(a_feed)
        await wait_until(lambda: hook_a.successes)

        b_feed = await notify.get("/v1/notifications", headers=as_b)
        assert b_feed.status_code == 200 and b_feed.json()["items"] == []
        peek = await notify.get("/v1/notifications", params={"recipient": f"vendor:{a}"},
                                headers=as_b)
        assert peek.status_code == 403
        assert (await notify.post(f"/v1/notifications/{item['id']}/read",
                                  headers=as_b)).status_code == 404
        listing = await notify.get("/v1/subscriptions", headers=as_b)
        assert [s["id"] for s in listing.json()["items"]] == [sub_b["id"]]
        assert all("secret" not in s for s in listing.json()["items"])
        for method in ("GET", "DELETE"):
            response = await notify.request(method, f"/v1/subscriptions/{sub_a['id']}",
                                            headers=as_b)
            assert response.status_code == 404, method

        read = await notify.post(f"/v1/notifications/{item['id']}/read", headers=as_a)
        assert read.status_code == 200 and read.json()["read_at"] is not None
        unread = await notify.get("/v1/notifications", params={"unread": "true"}, headers=as_a)
        assert unread.json()["total"] == 0 and unread.json()["unread"] == 0
        as_operator = await notify.get("/v1/notifications", params={"recipient": f"vendor:{a}"},
                                       headers=tokens.operator())
        assert [i["id"] for i in as_operator.json()["items"]] == [item["id"]]

        assert (await notify.delete(f"/v1/subscriptions/{sub_a['id']}",
                                    headers=as_a)).status_code == 204
        assert (await notify.get(f"/v1/subscriptions/{sub_a['id']}",
                                 headers=as_a)).status_code == 404

    assert item["kind"] == "job_dispatched" and item["recipient"] == f"vendor:{a}"
    assert len(hook_a.successes) == 1 and hook_b.requests == []


async def test_roles_and_validation_of_subscriptions(
    make_notify: Callable[..., FastAPI], tokens: Tokens
) -> None:
    vendor, org = unique("vendor"), unique("org")
    url = "https://localhost/cyberclaims"  # allow-listed: loopback
    async with running(make_notify(run_workers=False), wait_for_consumer=False) as notify:
        assert (await notify.get("/v1/subscriptions")).status_code == 401
        assert (await notify.get("/v1/notifications")).status_code == 401
        assert (await notify.post("/v1/subscriptions", json={"url": url, "secret": SECRET},
                                  headers=tokens.adjuster())).status_code == 403
        assert (await notify.get("/v1/deliveries", headers=tokens.vendor(vendor))).status_code == 403
        assert (await notify.get("/v1/notifications",
                                 headers=tokens.adjuster())).status_code == 200

        async def rejected(body: dict[str, Any], field: str,
                           headers: dict[str, str] | None = None) -> None:
            response = await notify.post("/v1/subscriptions", json=body,
                                         headers=headers or tokens.vendor(vendor))
            assert response.status_code == 422, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert field in [e["field"] for e in response.json()["errors"]], response.text

        await rejected({"url": url, "secret": "short"}, "secret")
        await rejected({"url": "ftp://localhost/x", "secret": SECRET}, "url")
        await rejected({"url": url, "secret": SECRET, "event_types": ["nope"]}, "event_types")
        await rejected({"url": url, "secret": SECRET, "colour": "red"}, "colour")
        await rejected({"url": url, "secret": SECRET, "owner": "vendor:someone-else"}, "owner")
        await rejected({"url": url, "secret": SECRET}, "owner", tokens.operator())

        mine = await subscribe(notify, tokens.policyholder(org), url, SECRET,
                               event_types=["cyberclaims.claim.approved.v1"])
        assert mine["owner"] == f"org:{org}"
        duplicate = await notify.post("/v1/subscriptions", json={"url": url, "secret": SECRET},
                                      headers=tokens.policyholder(org))
        assert duplicate.status_code == 409
        for_vendor = await subscribe(notify, tokens.operator(), url, SECRET,
                                     owner=f"vendor:{vendor}")
        listed = await notify.get("/v1/subscriptions", headers=tokens.vendor(vendor))
        assert [s["id"] for s in listed.json()["items"]] == [for_vendor["id"]]
        by_owner = await notify.get("/v1/subscriptions", params={"owner": f"org:{org}"},
                                    headers=tokens.operator())
        assert [s["id"] for s in by_owner.json()["items"]] == [mine["id"]]
        assert (await notify.get(f"/v1/subscriptions/{uuid.uuid4()}",
                                 headers=tokens.operator())).status_code == 404
