"""Insights' API bodies: a query (validated, each bad parameter named) and its answers.
Nothing here names an organisation: cells carry dimensions and aggregates only."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.insights.statistics import DIMENSIONS
from services.insights.triangles import Basis
from shared.events import Category, Industry
from shared.inputs import RequestBody, Timestamp
from shared.money import Money
from shared.problems import Unprocessable
from shared.regions import Region

QUARTER = re.compile(r"^[0-9]{4}Q[1-4]$")
FilterValue = Annotated[str | None, Query(min_length=1, max_length=300, pattern=r"^[^\x00]*$")]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperienceQuery:
    """`group_by` (comma-separated dimensions) and one optional filter per dimension."""

    def __init__(self, group_by: Annotated[str, Query(max_length=200, pattern=r"^[a-z_, ]*$")] = "",
                 period: Annotated[str | None, Query(pattern=QUARTER.pattern,
                                                     examples=["2026Q3"])] = None,
                 industry: FilterValue = None, region: FilterValue = None,
                 size_band: FilterValue = None, category: FilterValue = None,
                 attack_vector: FilterValue = None,
                 source: Annotated[Literal["live", "history"] | None, Query()] = None) -> None:
        names = [name.strip() for name in group_by.split(",") if name.strip()]
        unknown = [name for name in names if name not in DIMENSIONS]
        if unknown:
            raise Unprocessable(f"unknown dimension {unknown[0]!r}; one of {', '.join(DIMENSIONS)}",
                                field="group_by")
        if len(set(names)) != len(names):
            raise Unprocessable("a dimension is named twice", field="group_by")
        self.group_by = tuple(name for name in DIMENSIONS if name in names)
        given = {"industry": industry, "region": region, "size_band": size_band,
                 "category": category, "attack_vector": attack_vector, "period": period,
                 "source": source}
        self.filters = {name: value for name, value in given.items() if value is not None}


class Severity(Out):
    total: Decimal
    claims: int
    mean: Decimal | None
    median: Decimal | None
    p90: Decimal | None


class Figures(Out):
    exposure_policy_years: Decimal | None
    earned_premium: Decimal | None
    claims: int
    frequency_per_100_policy_years: Decimal | None
    paid: Severity
    incurred: Severity
    case_reserves: Decimal
    loss_ratio: Decimal | None
    mean_hours_report_to_dispatch: Decimal | None
    mean_hours_report_to_containment: Decimal | None
    mean_hours_report_to_payment: Decimal | None
    bi_hours_total: Decimal | None
    bi_hours_mean: Decimal | None


class CellOut(Out):
    dimensions: dict[str, str]
    suppressed: bool
    figures: Figures | None


class ExperienceOut(Out):
    k: int
    valuation: str  # the exposure and earned premium run up to it
    group_by: list[str]
    filters: dict[str, str]
    cells: list[CellOut]


class Factor(Out):
    development: str
    factor: float | None


class OriginResult(Out):
    accident_quarter: str
    latest: float | None
    ultimate: float | None
    ibnr: float | None
    mack_std_err: float | None


class Totals(Out):
    latest: float | None
    ultimate: float | None
    ibnr: float | None
    mack_std_err: float | None


class Development(Out):
    factors: list[Factor]
    origins: list[OriginResult]
    total: Totals | None


class TriangleRow(Out):
    accident_quarter: str
    values: list[Decimal]


class TriangleOut(Out):
    basis: Basis
    source: str | None
    k: int
    valuation: str
    rows: list[TriangleRow]
    suppressed_accident_quarters: list[str]
    only_latest_diagonal: bool
    development: Development


# --- the historical loss bordereau (POST /v1/insights/history) -----------------------------

RowId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/-]+$")]
MAX_ROWS = 5000
"""Rows of each kind in one import (the request body limit usually binds first): a larger
book is sent as several imports, each claim with its exposure."""


class HistoricalExposure(RequestBody):
    """One policy-period of the legacy book: who was insured, how, when, for what premium."""

    exposure_id: RowId
    org_id: Annotated[str, Field(min_length=1, max_length=128)]
    industry: Industry
    region: Region
    size_band: Literal["1-49", "50-249", "250-999", "1000+", "unknown"] = "unknown"
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    annual_premium: Money | None = None
    period_start: Timestamp
    period_end: Timestamp


class HistoricalMovement(RequestBody):
    """A dated change of a claim: a reserve set (the payable expected in total), a payment,
    or the claim closed without (further) payment."""

    at: Timestamp
    kind: Literal["reserve", "paid", "closed"]
    amount: Money = Decimal(0)


def _attack_vector_as_stored(value: str | None) -> str | None:
    """Stripped and lower-cased, as stored and grouped; the limit holds for that text (lower
    case can be longer: "İ" becomes two characters). It begins with a letter or a digit: it
    is a grouping value of the CSV export, which a spreadsheet would run as a formula if it
    began with "=", "+", "-" or "@"."""
    if value is None:
        return None
    normalised = value.strip().lower()
    if len(normalised) > 300:
        raise ValueError("at most 300 characters, lower-cased")
    if normalised and not normalised[0].isalnum():
        raise ValueError("must begin with a letter or a digit")
    return normalised or None


class HistoricalClaim(RequestBody):
    claim_id: RowId
    exposure_id: RowId
    category: Category
    attack_vector: Annotated[str | None, Field(max_length=300),
                             AfterValidator(_attack_vector_as_stored)] = None
    occurred_at: Timestamp
    reported_at: Timestamp
    dispatched_at: Timestamp | None = None
    contained_at: Timestamp | None = None
    outage_hours: Annotated[Decimal | None, Field(ge=0, le=100_000, decimal_places=2,
                                                  allow_inf_nan=False)] = None
    movements: Annotated[list[HistoricalMovement], Field(max_length=100)] = []


class Bordereau(RequestBody):
    """A loss bordereau from a legacy system: exposures and the claims against them. The
    `import_id` is the sender's: sending the same import again changes nothing."""

    import_id: RowId
    exposures: Annotated[list[HistoricalExposure], Field(max_length=MAX_ROWS)]
    claims: Annotated[list[HistoricalClaim], Field(max_length=MAX_ROWS)] = []


class ImportOut(Out):
    import_id: str
    exposures: int
    claims: int
    movements: int
    imported_at: str
