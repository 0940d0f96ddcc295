"""5. Insights: an experience query over 100,000 claims of a changing book. The insights
service (its own process, PostgreSQL, the broker) serves `GET /v1/insights/experience` over a
read model filled with a synthetic book (100,000 claims of 20,000 organisations, written
straight into its tables: this measures the query, not the consumer). Between two queries a
new claim is written as the consumer writes one (one transaction: the version row counted up,
the incident and claim stamped with it), so every measured query first catches up with a
change. Latency p95 of a mix of groupings, against two baselines measured in the same run on
the same database: the same queries with nothing changing between them, and a bare
`SELECT count(*)` of the claims table from the benchmark process. Target: p95 under 200 ms
with the writes interleaved (issue 26). The start-up load (the first answer aggregates the
whole book) and each grouping's first answer are reported apart (first_answer_ms).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from bench.common import Options, Outcome, Target, latency_summary_ms
from bench.scenario import require_services
from bench.system import System, token_service
from cyberclaims.simulate import CATEGORY_MIX, INDUSTRIES, REGIONS, VECTORS
from services.insights.service import quarter_seconds, size_band
from shared.auth import Role

NAME = "insights_query"
TITLE = "Insights: experience query over 100,000 claims"
GROUPINGS = ("industry", "industry,category", "size_band,period", "region,attack_vector",
             "category")
START = datetime(2024, 1, 1, tzinfo=UTC)


def run(options: Options) -> Outcome:
    require_services("insights")
    claims = options.size(100_000, 2_000)
    queries = options.size(200, 20)
    with System(["insights"]) as system:
        dsn = system.database_urls["insights"]
        asyncio.run(populate(dsn, claims, options.seed))
        return asyncio.run(_measure(system, dsn, claims, queries, options.seed))


async def populate(dsn: str, claims: int, seed: int) -> None:
    """A book written into the read model's tables (COPY), and the version row moved on."""
    rng = random.Random(seed)
    organisations = max(claims // 5, 10)
    policies, exposures = [], []
    for number in range(organisations):
        start = START + timedelta(days=rng.randint(0, 364))
        end = start + timedelta(days=730)
        band = size_band(rng.randint(1, 2000))
        policy_number = f"BENCH-{number}"
        policies.append((policy_number, f"bench-org-{number}", rng.choice(list(INDUSTRIES)),
                         rng.choice(REGIONS), band, "CNY", rng.randint(1_000_000, 10_000_000),
                         start, end, 1))
        exposures += [(policy_number, quarter, f"bench-org-{number}", seconds)
                      for quarter, seconds in quarter_seconds(start, end).items()]
    incidents, claim_rows = [], []
    categories = list(CATEGORY_MIX)
    for _ in range(claims):
        number = rng.randrange(organisations)
        policy = policies[number]
        category = rng.choices(categories, weights=list(CATEGORY_MIX.values()))[0]
        occurred = policy[7] + timedelta(seconds=rng.randint(0, 700 * 86400))
        reported = occurred + timedelta(hours=rng.randint(1, 48))
        incident_id, claim_id = uuid.uuid4(), uuid.uuid4()
        incidents.append((incident_id, policy[1], policy[0], category.value,
                          rng.choice(VECTORS[category]), occurred, reported,
                          reported + timedelta(minutes=30), reported + timedelta(days=3),
                          rng.choice([None, 3600 * rng.randint(1, 72)])))
        payable = rng.randint(1_000_000, 100_000_000)
        paid = rng.choice([0, payable, payable // 2])
        claim_rows.append((claim_id, incident_id, policy[1], policy[0], reported, payable, paid,
                           reported + timedelta(days=30) if paid else None, None))
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table("policies", records=policies, columns=[
            "policy_number", "org_id", "industry", "region", "size_band", "currency",
            "annual_premium", "period_start", "period_end", "version"])
        await connection.copy_records_to_table("exposures", records=exposures, columns=[
            "policy_number", "quarter", "org_id", "seconds"])
        await connection.copy_records_to_table("incidents", records=incidents, columns=[
            "incident_id", "org_id", "policy_number", "category", "attack_vector", "occurred_at",
            "reported_at", "first_dispatched_at", "contained_at", "outage_seconds"])
        await connection.copy_records_to_table("claims", records=claim_rows, columns=[
            "claim_id", "incident_id", "org_id", "policy_number", "opened_at", "reserve_basis",
            "paid", "first_paid_at", "closed_at"])
        await connection.execute("UPDATE read_model_version SET version = version + 1")
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def write_claim(connection: asyncpg.Connection, rng: random.Random,
                      organisations: int) -> None:
    """A new claim of an existing policy, written as the consumer writes one."""
    number = rng.randrange(organisations)
    category = rng.choice(list(CATEGORY_MIX))
    occurred = datetime.now(UTC) - timedelta(days=rng.randint(1, 300))
    reported = occurred + timedelta(hours=rng.randint(1, 48))
    incident_id = uuid.uuid4()
    async with connection.transaction():
        version = await connection.fetchval(
            "UPDATE read_model_version SET version = version + 1 RETURNING version")
        await connection.execute(
            "INSERT INTO incidents (incident_id, org_id, policy_number, category, attack_vector,"
            " occurred_at, reported_at, changed_in) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            incident_id, f"bench-org-{number}", f"BENCH-{number}", category.value,
            rng.choice(VECTORS[category]), occurred, reported, version)
        await connection.execute(
            "INSERT INTO claims (claim_id, incident_id, org_id, policy_number, opened_at,"
            " reserve_basis, paid, changed_in) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
            uuid.uuid4(), incident_id, f"bench-org-{number}", f"BENCH-{number}", reported,
            rng.randint(1_000_000, 100_000_000), version)


async def _measure(system: System, dsn: str, claims: int, queries: int, seed: int) -> Outcome:
    tokens = token_service()
    headers = {"Authorization": "Bearer " + tokens.issue(role=Role.actuary, sub="bench-actuary")}
    rng = random.Random(seed + 1)
    organisations = max(claims // 5, 10)
    connection = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(base_url=system.urls["insights"], timeout=120) as client:

            async def query(index: int) -> float:
                began = time.perf_counter()
                response = await client.get("/v1/insights/experience", headers=headers,
                                            params={"group_by": GROUPINGS[index % len(GROUPINGS)]})
                response.raise_for_status()
                return time.perf_counter() - began

            cold = {grouping: round(await query(index) * 1000, 1)  # aggregated, not yet kept
                    for index, grouping in enumerate(GROUPINGS)}
            steady = [await query(index) for index in range(queries)]
            changing = []
            for index in range(queries):
                await write_claim(connection, rng, organisations)
                changing.append(await query(index))
        baseline = []
        for _ in range(queries):
            began = time.perf_counter()
            await connection.fetchval("SELECT count(*) FROM claims")
            baseline.append(time.perf_counter() - began)
    finally:
        await connection.close()
    measured = latency_summary_ms(changing)
    unchanged, bare = latency_summary_ms(steady), latency_summary_ms(baseline)

    def ratio(other: dict[str, float | None]) -> float | None:
        if measured["p95_ms"] and other["p95_ms"]:
            return round(measured["p95_ms"] / other["p95_ms"], 2)
        return None

    return Outcome(
        figures={"claims": claims, "queries": queries, "first_answer_ms": cold,
                 "query_with_writes": measured, "query_unchanged": unchanged,
                 "baseline_count": bare, "p95_ratio_to_unchanged": ratio(unchanged),
                 "p95_ratio_to_count": ratio(bare)},
        targets=[Target("experience query p95, a new claim before each query",
                        measured["p95_ms"], "<=", 200.0, "ms")],
        parameters={"groupings": list(GROUPINGS), "organisations": organisations},
        notes=["the first query after start-up aggregates the whole read model in memory, "
               "and each grouping's first answer aggregates it by that grouping "
               "(first_answer_ms, the first grouping's including the load); afterwards each "
               "query reads the rows changed since the last (by their change stamp) and "
               "updates the aggregates",
               "query_with_writes: a new claim (one transaction, as the consumer writes it) "
               "before each query; query_unchanged: the same queries with no writes between",
               "baseline: SELECT count(*) FROM claims, from the benchmark process, same database"],
    )
