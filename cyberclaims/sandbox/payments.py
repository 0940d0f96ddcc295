"""The sandbox payment provider: a stand-in bank for development and tests, like a payment
company's test mode.

`POST /v1/payments` with an `Idempotency-Key` header and `{amount, currency, reference}` makes
a payment once per key: the same key answers with the same payment (200) and never pays twice;
the same key with another body is refused (422). `GET /v1/payments` lists what was paid and
`GET /control/requests` every request received. `POST /control/faults` queues faults for the
next requests: `fail` answers 500 without paying, `timeout` pays and then hangs past the
caller's timeout (until it hangs up, or `delay_seconds`), `slow` pays and answers after
`delay_seconds`. State lives in the app instance: `create_app()` starts empty, or, given a
`ledger` file, with the payments written there before (one JSON line each), as a real provider
keeps its ledger across a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_HANG_SECONDS = 60.0


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Annotated[Decimal, Field(gt=0, max_digits=16, decimal_places=2)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    reference: Annotated[str, Field(min_length=1, max_length=200)]


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["fail", "timeout", "slow"]
    count: Annotated[int, Field(ge=1, le=1000)] = 1
    delay_seconds: Annotated[float, Field(ge=0, le=600)] | None = None


@dataclass(frozen=True)
class Fault:
    mode: str
    delay_seconds: float


@dataclass
class ProviderState:
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)


async def _hang(request: Request, seconds: float) -> None:
    """Wait `seconds`, or until the caller hangs up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)


def create_app(ledger: Path | None = None) -> FastAPI:
    app = FastAPI(title="cyberclaims sandbox payment provider",
                  description="A stand-in bank for development and tests.")
    state = ProviderState()
    if ledger is not None and ledger.exists():
        for line in ledger.read_text().splitlines():
            payment = json.loads(line)
            state.payments[payment["idempotency_key"]] = payment

    @app.post("/v1/payments")
    async def create_payment(body: PaymentIn, request: Request,
                             key: Annotated[str | None, Header(alias="Idempotency-Key")] = None
                             ) -> JSONResponse:
        fault = state.faults.popleft() if state.faults else None
        log: dict[str, Any] = {"idempotency_key": key, "fault": fault.mode if fault else None,
               "amount": str(body.amount), "reference": body.reference,
               "at": datetime.now(UTC).isoformat()}
        state.requests.append(log)
        if not key:
            log["status"] = 400
            return JSONResponse({"error": "the Idempotency-Key header is required"}, status_code=400)
        if fault is not None and fault.mode == "fail":
            log["status"] = 500
            return JSONResponse({"error": "sandbox fault: internal error"}, status_code=500)
        fingerprint = body.model_dump(mode="json")
        payment = state.payments.get(key)
        if payment is not None and payment["request"] != fingerprint:
            log["status"] = 422
            return JSONResponse({"error": "Idempotency-Key was used with another request"},
                                status_code=422)
        status = 200
        if payment is None:
            status = 201
            payment = {"id": f"pay_{uuid.uuid4().hex}", "idempotency_key": key, "status": "succeeded",
                       "amount": str(body.amount), "currency": body.currency,
                       "reference": body.reference, "created_at": datetime.now(UTC).isoformat(),
                       "request": fingerprint}
            state.payments[key] = payment
            if ledger is not None:
                with ledger.open("a") as out:
                    out.write(json.dumps(payment) + "\n")
        if fault is not None and fault.mode == "timeout":
            await _hang(request, fault.delay_seconds)
        elif fault is not None and fault.mode == "slow":
            await asyncio.sleep(fault.delay_seconds)
        log["status"] = status
        return JSONResponse(_public(payment), status_code=status,
                            headers={"Idempotent-Replayed": "true"} if status == 200 else None)

    @app.get("/v1/payments")
    async def list_payments() -> dict[str, Any]:
        return {"items": [_public(p) for p in state.payments.values()]}

    @app.post("/control/faults", status_code=202)
    async def queue_faults(body: FaultIn) -> dict[str, Any]:
        default = DEFAULT_HANG_SECONDS if body.mode == "timeout" else 1.0
        delay = body.delay_seconds if body.delay_seconds is not None else default
        state.faults.extend(Fault(body.mode, delay) for _ in range(body.count))
        return {"queued": [f.mode for f in state.faults]}

    @app.delete("/control/faults", status_code=204)
    async def clear_faults() -> None:
        state.faults.clear()

    @app.get("/control/requests")
    async def list_requests() -> dict[str, Any]:
        return {"items": state.requests}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _public(payment: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in payment.items() if name != "request"}


def serve(host: str, port: int, ledger: Path | None = None) -> None:
    uvicorn.run(create_app(ledger), host=host, port=port, log_level="warning",
                timeout_graceful_shutdown=2)
