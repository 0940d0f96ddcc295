"""Money is `Decimal`, rounded half-up to 0.01, and a decimal string in JSON."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import Field, PlainSerializer

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def round_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _as_string(value: Decimal) -> str:
    return str(round_money(value))


Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=16, decimal_places=2),
    PlainSerializer(_as_string, return_type=str, when_used="json"),
]
"""A non-negative amount with at most two decimals, serialised as "1234.50"."""
