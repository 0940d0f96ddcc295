"""CSV and Parquet exports of published cells, for sharing across insurers: the same cells as
the JSON answer (suppressed ones included, marked, with empty figures), one row per cell."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from services.insights.schemas import CellOut, Figures, Severity

FIGURE_COLUMNS = tuple(name for name in Figures.model_fields if name not in ("paid", "incurred"))
SEVERITY_COLUMNS = tuple(f"{basis}_{name}" for basis in ("paid", "incurred")
                         for name in Severity.model_fields)


def columns(group_by: Sequence[str]) -> list[str]:
    return [*group_by, "suppressed", *FIGURE_COLUMNS, *SEVERITY_COLUMNS]


def flatten(cells: Sequence[CellOut], group_by: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for cell in cells:
        row: dict[str, Any] = dict.fromkeys(columns(group_by))
        row.update(cell.dimensions)
        row["suppressed"] = cell.suppressed
        if cell.figures is not None:
            figures = cell.figures.model_dump()
            for basis in ("paid", "incurred"):
                for name, value in figures.pop(basis).items():
                    row[f"{basis}_{name}"] = value
            row.update(figures)
        rows.append(row)
    return rows


def to_csv(cells: Sequence[CellOut], group_by: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(group_by), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flatten(cells, group_by))
    return buffer.getvalue()


def to_parquet(cells: Sequence[CellOut], group_by: Sequence[str]) -> bytes:
    """Amounts as decimal128(20, 4) so a reader sums them exactly; dimensions as strings."""
    names = columns(group_by)
    rows = flatten(cells, group_by)
    fields = []
    for name in names:
        if name in group_by:
            kind: pa.DataType = pa.string()
        elif name == "suppressed":
            kind = pa.bool_()
        elif name in ("claims", "paid_claims", "incurred_claims"):
            kind = pa.int64()
        else:
            kind = pa.decimal128(20, 4)
        fields.append(pa.field(name, kind))
    schema = pa.schema(fields)
    table = pa.Table.from_pylist(
        [{name: (Decimal(value) if isinstance(value, Decimal) else value)
          for name, value in row.items()} for row in rows], schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
