"""The baseline for intake throughput: a bare FastAPI app doing one asyncpg INSERT of a row
shaped like intake's `incidents` row. No auth, no validation model, no outbox, no ORM.

Served exactly like a service (uvicorn, one worker, no access log), in its own process:
`python -m bench.baseline --port 8099 --dsn postgresql://postgres@127.0.0.1:5432/db`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import uvicorn
from fastapi import Body, FastAPI, Request, Response
from fastapi.responses import JSONResponse

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id uuid PRIMARY KEY,
    org_id varchar(128) NOT NULL,
    policy_number varchar(64) NOT NULL,
    idempotency_key varchar(255) NOT NULL,
    request_hash varchar(64) NOT NULL,
    category varchar(40) NOT NULL,
    title varchar(300) NOT NULL,
    description text NOT NULL,
    occurred_at timestamptz NOT NULL,
    discovered_at timestamptz NOT NULL,
    reported_at timestamptz NOT NULL,
    contact json NOT NULL,
    systems_down boolean NOT NULL,
    outage_started_at timestamptz,
    affected_hosts bigint,
    records_exposed bigint,
    data_types json NOT NULL,
    ransom_demanded bigint,
    funds_transferred bigint,
    status varchar(40) NOT NULL,
    priority varchar(4),
    regulatory_deadline timestamptz,
    regulator_reported_at timestamptz,
    regulator_reference varchar(200)
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_incidents_org_idempotency_key
    ON incidents (org_id, idempotency_key);
CREATE INDEX IF NOT EXISTS ix_incidents_org_reported ON incidents (org_id, reported_at);
CREATE INDEX IF NOT EXISTS ix_incidents_policy_number ON incidents (policy_number);
"""

INSERT = """
INSERT INTO incidents (id, org_id, policy_number, idempotency_key, request_hash, category, title,
    description, occurred_at, discovered_at, reported_at, contact, systems_down,
    outage_started_at, affected_hosts, records_exposed, data_types, ransom_demanded,
    funds_transferred, status)
VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
    'reported')
"""


async def create_schema(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCHEMA)
    finally:
        await connection.close()


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _cents(value: Any) -> int | None:
    return round(float(value) * 100) if value is not None else None


def create_app(dsn: str, pool_size: int = 10) -> FastAPI:
    """Ten pooled connections, as in every run of this benchmark so far. The services' pools
    hold 20 (and intake writes reports through at most two of them), but 20 make this app
    about 8 % slower on a 2-core machine (more server processes competing), which would
    flatter the ratio."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/incidents", status_code=201)
    async def report(request: Request, body: dict[str, Any] = Body(...)) -> Response:
        incident_id = uuid.uuid4()
        pool: asyncpg.Pool = request.app.state.pool
        await pool.execute(
            INSERT, incident_id, "baseline",
            body["policy_number"], request.headers.get("idempotency-key", ""), body["category"],
            body["title"], body["description"], _when(body["occurred_at"]),
            _when(body["discovered_at"]), datetime.now(UTC), json.dumps(body["contact"]),
            bool(body.get("systems_down")), _when(body.get("outage_started_at")),
            body.get("affected_hosts"), body.get("records_exposed"),
            json.dumps(body.get("data_types") or []), _cents(body.get("ransom_demanded")),
            _cents(body.get("funds_transferred")),
        )
        return JSONResponse({"id": str(incident_id), "status": "reported"}, status_code=201,
                            headers={"Location": f"/v1/incidents/{incident_id}"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.dsn), host="127.0.0.1", port=args.port, log_config=None,
                access_log=False)


if __name__ == "__main__":
    main()
