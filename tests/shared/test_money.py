"""Money is Decimal, rounded half-up to 0.01, a decimal string in JSON, cents in the database."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from shared.db import MoneyColumn
from shared.money import Money, round_money


@pytest.mark.parametrize(("value", "rounded"), [
    ("0.005", "0.01"), ("0.125", "0.13"), ("2.675", "2.68"), ("2.665", "2.67"),
    ("1.004", "1.00"), ("1.0049999", "1.00"), ("99.995", "100.00"), ("7", "7.00"),
    ("-0.005", "-0.01"), ("1234.5", "1234.50"),
])
def test_round_money_is_half_up_to_the_cent(value: str, rounded: str) -> None:
    result = round_money(Decimal(value))
    assert result == Decimal(rounded) and str(result) == rounded


class Priced(BaseModel):
    amount: Money


def test_money_is_a_decimal_string_in_json() -> None:
    assert Priced(amount=Decimal("1234.5")).model_dump(mode="json") == {"amount": "1234.50"}
    assert Priced.model_validate({"amount": "0.1"}).amount == Decimal("0.1")
    assert Priced.model_validate_json('{"amount": "10"}').model_dump_json() == '{"amount":"10.00"}'


@pytest.mark.parametrize("bad", ["-0.01", "1.001", "abc", "1e100"])
def test_money_refuses_negative_or_sub_cent_amounts(bad: str) -> None:
    with pytest.raises(ValidationError):
        Priced.model_validate({"amount": bad})


@pytest.mark.parametrize("bad", [
    "1_000", "1e3", "1E3", "NaN", "nan", "Infinity", "-Infinity", "-0", "+5", " 5", "5 ",
    "5.", ".5", "0x10", "1,000", "\uff11\uff10", "123456789012345", 5.5, 1e3, float("nan"), True,
])
def test_an_amount_is_a_plain_decimal_string(bad: object) -> None:
    """Issue 23, finding 12: what Python's Decimal would read is not an amount (JSON)."""
    with pytest.raises(ValidationError, match="amount"):
        Priced.model_validate_json(json.dumps({"amount": bad}))


@pytest.mark.parametrize("good", ["0", "0.5", "1000", "1000.50", "12345678901234.99", 1000])
def test_plain_decimal_strings_and_whole_numbers_are_amounts(good: object) -> None:
    assert Priced.model_validate_json(json.dumps({"amount": good})).amount == Decimal(str(good))


def test_the_money_column_stores_cents_exactly() -> None:
    column = MoneyColumn()
    dialect: object = None
    assert column.process_bind_param(Decimal("1234.56"), dialect) == 123456  # type: ignore[arg-type]
    assert column.process_bind_param(Decimal("0.125"), dialect) == 13  # type: ignore[arg-type]
    assert column.process_bind_param(None, dialect) is None  # type: ignore[arg-type]
    back = column.process_result_value(123456, dialect)  # type: ignore[arg-type]
    assert back == Decimal("1234.56") and str(back) == "1234.56"
    assert str(column.process_result_value(0, dialect)) == "0.00"  # type: ignore[arg-type]
