"""The JSON codec of the database's JSON columns and of Kafka values reads back what `json`
would have written, and writes what `json` reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared import jsoncodec


def test_it_round_trips_what_json_round_trips() -> None:
    value = {"a": [1, 2.5, None, True], "name": "Lì Wěi", "nested": {"k": "v"}}

    assert json.loads(jsoncodec.dumps(value)) == value
    assert jsoncodec.loads(json.dumps(value)) == value
    assert json.loads(jsoncodec.dumps_text(value)) == value


def test_keys_that_are_not_strings_are_written_as_strings_as_json_does() -> None:
    assert jsoncodec.loads(jsoncodec.dumps({1: "x"})) == json.loads(json.dumps({1: "x"}))


def test_datetimes_are_written_as_rfc_3339() -> None:
    at = datetime(2026, 12, 5, 8, 30, tzinfo=UTC)

    assert jsoncodec.loads(jsoncodec.dumps({"at": at})) == {"at": "2026-12-05T08:30:00+00:00"}


def test_malformed_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(b"{not json")
