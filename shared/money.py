"""Money is `Decimal`, rounded half-up to 0.01, and a decimal string in JSON."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

AMOUNT_PATTERN = r"^[0-9]{1,14}(\.[0-9]{1,2})?$"
"""An amount as the API writes it: digits, optionally a point and one or two decimals."""
_AMOUNT = re.compile(AMOUNT_PATTERN)


def round_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _as_string(value: Decimal) -> str:
    return str(round_money(value))


def _strict_amount(value: Any) -> Any:
    """Python's `Decimal` also reads "1_000", "1e3", " 5", "NaN" and "-0", and a JSON number
    may be a binary fraction: an amount given as text must be plain digits, and never a float."""
    if isinstance(value, str) and not _AMOUNT.fullmatch(value):
        raise ValueError('an amount is a decimal string such as "1234.50": digits, then at '
                         "most two decimals after a point")
    if isinstance(value, float | bool):
        raise ValueError('an amount is a decimal string such as "1234.50", not a JSON number')
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_strict_amount),
    Field(ge=0, max_digits=16, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(_as_string, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["1234.50"]}),
]
"""A non-negative amount with at most two decimals, serialised as "1234.50"."""
