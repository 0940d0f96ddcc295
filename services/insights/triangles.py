"""Loss development: paid and incurred triangles by accident quarter x development month,
and chain-ladder factors, ultimates, IBNR and the Mack standard error from `chainladder`.

Development month m of accident quarter q is valued at q's first day plus m months (the
latest diagonal at the valuation time). An accident quarter that the experience by period hides
(fewer than k organisations, or hidden to protect one that is) is left out entirely, not part
of any total: the triangle's latest diagonal is the period's paid or incurred total, so a row
shown where the period is hidden would undo the experience's complementary suppression."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import chainladder as cl
import numpy
import pandas as pd
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.insights.models import ClaimMovement, ClaimRecord, IncidentRecord
from services.insights.service import MovementKind, case_reserve, quarter_of, quarter_start
from shared.money import ZERO


class Basis(StrEnum):
    paid = "paid"
    incurred = "incurred"


@dataclass(frozen=True)
class ClaimHistory:
    org_id: str
    accident_quarter: str
    opened_at: datetime | None
    movements: tuple[tuple[datetime, str, Decimal], ...]  # (at, kind, amount) by time


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    return moment.replace(year=moment.year + index // 12, month=index % 12 + 1)


def value_at(history: ClaimHistory, cutoff: datetime, basis: Basis) -> Decimal:
    """A claim's paid (or incurred: paid plus case reserve) as of `cutoff` (exclusive)."""
    if history.opened_at is None or history.opened_at >= cutoff:
        return ZERO
    paid, reserve_basis, closed = ZERO, None, False
    for at, kind, amount in history.movements:
        if at >= cutoff:
            break
        if kind == MovementKind.paid:
            paid += amount
        elif kind == MovementKind.reserve:
            reserve_basis = amount
        else:
            closed = True
    if basis is Basis.paid:
        return paid
    return paid + case_reserve(reserve_basis, paid, closed)


async def load_histories(session: AsyncSession, source: str | None = None
                         ) -> list[ClaimHistory]:
    """Every claim's dated movements (of one source, if given: live or imported history)."""
    query = (select(ClaimRecord.claim_id, ClaimRecord.org_id, ClaimRecord.opened_at,
                    IncidentRecord.occurred_at)
             .join(IncidentRecord, IncidentRecord.incident_id == ClaimRecord.incident_id))
    moves = select(ClaimMovement.claim_id, ClaimMovement.at, ClaimMovement.kind,
                   ClaimMovement.amount)
    if source is not None:
        query = query.where(ClaimRecord.source == source)
        moves = moves.join(ClaimRecord, ClaimRecord.claim_id == ClaimMovement.claim_id) \
            .where(ClaimRecord.source == source)
    claims = await session.execute(query)
    movements: dict[uuid.UUID, list[tuple[datetime, str, Decimal]]] = defaultdict(list)
    for claim_id, at, kind, amount in (await session.execute(moves)):
        movements[claim_id].append((at, kind, amount))
    return [ClaimHistory(org_id=org_id, accident_quarter=quarter_of(occurred_at),
                         opened_at=opened_at,
                         # by time, then kind, then amount: of two reserves at one
                         # instant the larger is the basis, as on the claim's row
                         movements=tuple(sorted(movements.get(claim_id, ()))))
            for claim_id, org_id, opened_at, occurred_at in claims
            if occurred_at is not None]


def triangle_rows(histories: list[ClaimHistory], basis: Basis, valuation: datetime,
                  hidden_quarters: Collection[str]) -> tuple[dict[str, list[Decimal]], list[str]]:
    """Cumulative values by accident quarter (development months 1, 2, ... up to the
    valuation), and the accident quarters left out: those the experience by period hides."""
    by_quarter: dict[str, list[ClaimHistory]] = defaultdict(list)
    for history in histories:
        if quarter_start(history.accident_quarter) <= valuation:
            by_quarter[history.accident_quarter].append(history)
    rows: dict[str, list[Decimal]] = {}
    hidden = []
    for quarter in sorted(by_quarter):
        claims = by_quarter[quarter]
        if quarter in hidden_quarters:
            hidden.append(quarter)
            continue
        start = quarter_start(quarter)
        values = []
        month = 1
        while add_months(start, month - 1) <= valuation:
            cutoff = min(add_months(start, month), valuation)
            values.append(sum((value_at(claim, cutoff, basis) for claim in claims), ZERO))
            month += 1
        rows[quarter] = values
    return rows, hidden


def only_latest_diagonal(rows: dict[str, list[Decimal]]) -> bool:
    """Whether every row is still zero before its latest month: all the movements were valued
    at once (a book played through the APIs in one go), so there is no development to
    estimate factors from, and chain ladder's figures are not estimates."""
    return all(not any(values[:-1]) for values in rows.values())


def chainladder_triangle(rows: dict[str, list[Decimal]]) -> cl.Triangle:
    """The rows as a `chainladder` Triangle: origin = accident quarter, valuation = the last
    day of each development month."""
    records = []
    for quarter, values in rows.items():
        start = quarter_start(quarter)
        for month, value in enumerate(values, start=1):
            records.append({"origin": start.replace(tzinfo=None),
                            "valuation": (add_months(start, month) - timedelta(days=1))
                            .replace(tzinfo=None),
                            "value": float(value)})
    frame = pd.DataFrame.from_records(records)
    return cl.Triangle(frame, origin="origin", development="valuation",  # type: ignore[abstract]
                       columns=["value"], cumulative=True)


def development(rows: dict[str, list[Decimal]]) -> dict[str, Any]:
    """Chain-ladder (Mack) results of a triangle: age-to-age factors, and by accident quarter
    the latest value, ultimate, IBNR and Mack standard error, with their totals."""
    if not rows or max(len(values) for values in rows.values()) < 2:
        return {"factors": [], "origins": [], "total": None}
    # Mack's own approximation for the last sigma: the default log-linear extrapolation
    # overflows on month-grain triangles with a long flat tail.
    developed = cl.Development(sigma_interpolation="mack").fit_transform(chainladder_triangle(rows))
    model = cl.MackChainladder().fit(developed)
    factors = model.ldf_.to_frame()
    summary = model.summary_.to_frame(origin_as_datetime=True)
    summary = summary[[quarter_of(origin.to_pydatetime().replace(tzinfo=UTC)) in rows
                       for origin in summary.index]]  # chainladder fills gaps between quarters
    origins = [{"accident_quarter": quarter_of(origin.to_pydatetime().replace(tzinfo=UTC)),
                "latest": _number(line["Latest"]), "ultimate": _number(line["Ultimate"]),
                "ibnr": _number(line["IBNR"]), "mack_std_err": _number(line["Mack Std Err"])}
               for origin, line in summary.iterrows()]
    return {
        "factors": [{"development": str(name), "factor": _number(value)}
                    for name, value in factors.iloc[0].items()],
        "origins": origins,
        "total": {"latest": _number(summary["Latest"].sum()),
                  "ultimate": _number(summary["Ultimate"].sum()),
                  "ibnr": _number(summary["IBNR"].sum()),
                  "mack_std_err": _number(_scalar(model.total_mack_std_err_))},
    }


def _scalar(value: Any) -> float:
    """A one-cell chainladder result (a Triangle or a frame) as a number."""
    return float(numpy.asarray(getattr(value, "values", value), dtype=float).ravel()[0])


def _number(value: Any) -> float | None:
    number = float(value)
    return round(number, 2) if math.isfinite(number) else None
