"""What the attack suite shares: the live system's environment, actors whose tokens the system
accepts, local webhook targets (a fast one and one that trickles), claim builders that go
through the public APIs only, and the figures (tried / refused per category) of a run."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from cyberclaims.client import Actor, Api, wait_for
from cyberclaims.demo import claim_in, dispatched_jobs
from shared.auth import Role
from shared.settings import PlatformSettings
from tests.e2e.system import System
from tests.e2e.test_claims import insure, report, vendor

# Webhook targets of the suite listen on these loopback addresses, and only they are allowed
# for webhooks; 127.0.0.1 (where the services, broker and PostgreSQL listen) stays refused.
# The trickling target has a host of its own: notify bounds concurrent sends per host.
RECEIVER_HOST = "127.0.0.2"
SLOW_HOST = "127.0.0.3"

# notify's development allow-list (hosts and CIDRs), named as on the notify branch.
WEBHOOK_ALLOW_ENV = {"NOTIFY_WEBHOOK_ALLOWLIST": f"{RECEIVER_HOST},{SLOW_HOST}"}

# The bursts of the three limits (shared/settings.py); their rates stay the defaults.
RATE_LIMIT_SETTINGS = ("CYBERCLAIMS_FAILED_AUTH_BURST", "CYBERCLAIMS_PRINCIPAL_WRITE_BURST",
                       "CYBERCLAIMS_ADDRESS_WRITE_BURST")

SYSTEM_ENV = {
    "TRIAGE_TIMER_POLL_SECONDS": "0.2",
    "NOTIFY_WORKER_POLL_SECONDS": "0.2",
    "NOTIFY_BACKOFF_BASE_SECONDS": "0.5",
    "PAYOUT_PAYMENT_POLL_SECONDS": "0.2",
    **WEBHOOK_ALLOW_ENV,
    **dict.fromkeys(RATE_LIMIT_SETTINGS, "1000000"),
}

BIG_AUTHORITY = "100000000"


def platform_settings(system: System) -> PlatformSettings:
    """The token settings the running system verifies with (its env)."""
    return PlatformSettings(jwks_url=system.env["CYBERCLAIMS_JWKS_URL"],
                            jwt_issuer=system.env["CYBERCLAIMS_JWT_ISSUER"])


def role_actor(api: Api, role: str) -> Actor:
    """A token of a role the client has no helper for (the roles other services add)."""
    token = api.tokens.issue(role=Role(role), sub=f"{role}-{suffix()}")
    return Actor(api, {"Authorization": f"Bearer {token}"}, role)


def suffix() -> str:
    return uuid.uuid4().hex[:8]


# --- figures ------------------------------------------------------------------------------------

@dataclass
class Figures:
    """Attempts per category and how many the system refused as it should."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    path: Path | None = None

    def record(self, category: str, refused: bool) -> None:
        entry = self.counts.setdefault(category, {"tried": 0, "refused": 0})
        entry["tried"] += 1
        entry["refused"] += int(refused)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.counts, indent=2, sort_keys=True))

    def lines(self) -> list[str]:
        return [f"{category:<40} tried {entry['tried']:>6}  refused {entry['refused']:>6}"
                for category, entry in sorted(self.counts.items())]


# --- webhook targets ----------------------------------------------------------------------------

@dataclass
class Arrival:
    path: str
    at: float
    body: bytes


class Receiver:
    """A subscriber's endpoint on RECEIVER_HOST that answers at once and notes arrivals."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        arrivals = self.arrivals

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                arrivals.append(Arrival(self.path, time.monotonic(), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((RECEIVER_HOST, 0), Handler)
        self.url = f"http://{RECEIVER_HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class TricklingReceiver:
    """A hostile subscriber: reads the request, then answers one byte every `interval` seconds
    and never finishes (until the suite is done with it)."""

    def __init__(self, interval: float = 4.0) -> None:
        self.interval = interval
        self.stopped = threading.Event()
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind((SLOW_HOST, 0))
        self.listener.listen(64)
        self.url = f"http://{SLOW_HOST}:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while not self.stopped.wait(self.interval):
                    connection.sendall(b"x")
            except OSError:
                return

    def __enter__(self) -> TricklingReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.listener.close()


# --- claims through the public APIs -------------------------------------------------------------

RANSOMWARE_INVOICES = {
    "forensics": ("incident_response", "180000.00"),
    "ransomware_negotiation": ("cyber_extortion", "850000.00"),
    "data_recovery": ("data_restoration", "220000.00"),
}


def completion_report(losses: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    return {"root_cause": "Phished VPN credentials", "attack_vector": "vpn",
            "attribution": "criminal",
            "contained_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "verified_losses": losses, **fields}


def incident_claim(adjuster: Actor, incident_id: str) -> dict[str, Any]:
    """The incident's claim, or {} while payout has not heard of the incident yet."""
    claim: dict[str, Any] = adjuster.call("payout", "GET", f"/v1/incidents/{incident_id}/claim",
                                          expect=(200, 404))
    return claim if "losses" in claim else {}


def verify_pending_losses(adjuster: Actor, incident_id: str) -> dict[str, Any]:
    """Verify every unverified loss (vendor items above the vendor-verification threshold
    need an adjuster once that rule is in) and return the claim."""
    claim: dict[str, Any] = adjuster.get("payout", f"/v1/incidents/{incident_id}/claim")
    for loss in claim["losses"]:
        if loss["state"] == "unverified":
            adjuster.post("payout", f"/v1/claims/{claim['id']}/losses/{loss['id']}/verify",
                          {"note": "Checked against the invoices"})
    return claim


def million_claim(api: Api) -> dict[str, Any]:
    """A ransomware claim pending approval with payable 1,200,000 (1,250,000 of vendor-verified
    losses less the 50,000 retention): the claim of finding 1."""
    holder, number = insure(api, "CN-HB")
    vendor(api, "CN-HB", list(RANSOMWARE_INVOICES))
    incident_id = report(holder, number, "ransomware")
    for vendor_id, job in dispatched_jobs(api, incident_id, expected=3):
        panel = api.vendor(vendor_id)
        panel.post("triage", f"/v1/jobs/{job['id']}/accept")
        section, amount = RANSOMWARE_INVOICES[job["job_type"]]
        panel.post("triage", f"/v1/jobs/{job['id']}/complete", completion_report(
            [{"section": section, "amount": amount, "description": job["job_type"]}]))
    checker = api.adjuster(f"checker-{suffix()}", BIG_AUTHORITY)
    wait_for("the vendors' losses on the claim", lambda: incident_claim(checker, incident_id),
             until=lambda claim: len(claim.get("losses", ())) == 3
             and claim["response_completed"])
    verify_pending_losses(checker, incident_id)
    claim = claim_in(checker, incident_id, {"pending_approval"})
    assert Decimal(claim["payable"]) == Decimal("1200000.00"), claim
    return claim


@dataclass
class Tenant:
    """A policyholder with a policy and one reported incident (a P4 malware report)."""

    holder: Actor
    org_id: str
    policy_number: str
    incident_id: str


def tenant(api: Api, region: str) -> Tenant:
    holder, number = insure(api, region)
    incident_id = report(holder, number, "malware")
    return Tenant(holder, holder.name.split()[-1], number, incident_id)


NO_ANSWER = 0  # the connection broke before a status line: as bad as a 5xx


def status_of(api: Api, method: str, url: str, **request: Any) -> int:
    """The status an attack got, or NO_ANSWER when the service dropped the connection twice
    (once may be a kept-alive connection the server closed after its previous answer)."""
    for _ in range(2):
        try:
            return api.http.request(method, url, **request).status_code
        except httpx.TransportError:
            continue
    return NO_ANSWER
