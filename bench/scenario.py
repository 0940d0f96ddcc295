"""The whole system set up for an end-to-end benchmark: every built service, a vendor panel with
room for every job, insured SMEs with policies, and a warm-up that proves the pipeline flows."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import httpx

from bench.common import Skipped
from bench.loadgen import LoadPlan, run_load
from bench.system import ALL_SERVICES, System, sandbox_built, service_built, token_service
from bench.watch import Watcher
from bench.workload import (
    JOB_TYPES,
    Insured,
    insureds,
    prepared_reports,
    register_policies,
)
from shared.auth import Role
from shared.signing import TokenSigner
from shared.topics import CLAIMS, INCIDENTS, RESPONSE

VENDOR_CAPACITY = 10_000  # the API's maximum


@dataclass
class Scenario:
    system: System
    tokens: TokenSigner
    insured: list[Insured]
    vendors: list[str]
    run_id: str


def require_services(*names: str) -> None:
    missing = [name for name in names if not service_built(name)]
    if missing:
        raise Skipped(f"service not built: {', '.join(missing)}")


def full_system(payments: bool = False, *, equal_weights: bool = False,
                replicas: dict[str, int] | None = None) -> System:
    """Every service that exists in the tree (plus the sandbox payment provider if asked);
    `equal_weights` and `replicas` as in `System`."""
    services = [name for name in ALL_SERVICES if service_built(name)]
    if payments and not sandbox_built("payments"):
        raise Skipped("the sandbox payment provider (cyberclaims.sandbox.payments) is not built")
    return System(services, payments=payments, smtp=True, equal_weights=equal_weights,
                  replicas=replicas)


def register_vendors(triage_url: str, tokens: TokenSigner, seed: int, run_id: str, count: int
                     ) -> list[str]:
    """A panel that never runs out of capacity: every capability, every region."""
    rng = random.Random(seed + 3)
    headers = {"Authorization": f"Bearer {tokens.issue(role=Role.operator, sub='bench-ops')}"}
    vendors = []
    with httpx.Client(base_url=triage_url, headers=headers, timeout=30) as client:
        for i in range(count):
            vendor_id = f"vendor-{run_id}-{i:03d}"
            response = client.post("/v1/vendors", json={
                "vendor_id": vendor_id, "name": f"Bench Security {i}", "capabilities": JOB_TYPES,
                "regions": ["*"], "capacity": VENDOR_CAPACITY,
                "rating": round(rng.uniform(3.0, 5.0), 1), "active": True,
            })
            if response.status_code != 201:
                raise RuntimeError(f"vendor {vendor_id}: {response.status_code} {response.text[:300]}")
            vendors.append(vendor_id)
    return vendors


def prepare(system: System, options_seed: int, *, orgs: int, vendors: int,
            retention: str = "1000.00") -> Scenario:
    run_id = uuid.uuid4().hex[:6]
    tokens = token_service()
    vendor_ids = register_vendors(system.urls["triage"], tokens, options_seed, run_id, vendors)
    insured = insureds(orgs, options_seed, run_id)
    register_policies(system.urls["intake"], insured, tokens, options_seed, retention=retention)
    return Scenario(system=system, tokens=tokens, insured=insured, vendors=vendor_ids,
                    run_id=run_id)


def watcher(system: System) -> Watcher:
    return Watcher(system.bootstrap, [INCIDENTS.name, RESPONSE.name, CLAIMS.name])


async def warm_up(scenario: Scenario, watch: Watcher, seed: int, count: int = 20,
                  timeout: float = 90.0, insured: list[Insured] | None = None,
                  until: str = "all_placed_at") -> None:
    """Send a few reports and wait until each is fully dispatched (or `until`): policies have
    reached triage, every consumer has joined its group, every connection pool is open."""
    reports = prepared_reports(insured or scenario.insured, scenario.tokens, seed + 100, count)
    result = await run_load(LoadPlan(url=scenario.system.urls["intake"] + "/v1/incidents",
                                     reports=reports, mode="closed", concurrency=4, count=count,
                                     key_prefix=f"{scenario.run_id}-warmup"))
    accepted = [s[4] for s in result.accepted()]
    if len(accepted) != count:
        raise RuntimeError(f"warm-up: only {len(accepted)} of {count} reports accepted "
                           f"({result.errors}, statuses {sorted({s[3] for s in result.samples})})")
    missing = await watch.wait_until(accepted, until, timeout)
    if missing:
        crashed = scenario.system.crashed()
        raise RuntimeError(f"warm-up: {missing} of {count} incidents not {until.removesuffix('_at')} after "
                           f"{timeout:.0f}s" + (f"; {crashed}" if crashed else ""))
