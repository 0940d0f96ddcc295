"""Insights' API bodies: a query (validated, each bad parameter named) and its answers.
Nothing here names an organisation: cells carry dimensions and aggregates only."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict

from services.insights.statistics import DIMENSIONS
from services.insights.triangles import Basis
from shared.problems import Unprocessable

QUARTER = re.compile(r"^[0-9]{4}Q[1-4]$")
FilterValue = Annotated[str | None, Query(min_length=1, max_length=300, pattern=r"^[^\x00]*$")]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperienceQuery:
    """`group_by` (comma-separated dimensions) and one optional filter per dimension."""

    def __init__(self, group_by: Annotated[str, Query(max_length=200)] = "",
                 period: Annotated[str | None, Query(examples=["2026Q3"])] = None,
                 industry: FilterValue = None, region: FilterValue = None,
                 size_band: FilterValue = None, category: FilterValue = None,
                 attack_vector: FilterValue = None) -> None:
        names = [name.strip() for name in group_by.split(",") if name.strip()]
        unknown = [name for name in names if name not in DIMENSIONS]
        if unknown:
            raise Unprocessable(f"unknown dimension {unknown[0]!r}; one of {', '.join(DIMENSIONS)}",
                                field="group_by")
        if len(set(names)) != len(names):
            raise Unprocessable("a dimension is named twice", field="group_by")
        if period is not None and not QUARTER.match(period):
            raise Unprocessable("period must be a quarter such as 2026Q3", field="period")
        self.group_by = tuple(name for name in DIMENSIONS if name in names)
        given = {"industry": industry, "region": region, "size_band": size_band,
                 "category": category, "attack_vector": attack_vector, "period": period}
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
    k: int
    valuation: str
    rows: list[TriangleRow]
    suppressed_accident_quarters: list[str]
    development: Development
