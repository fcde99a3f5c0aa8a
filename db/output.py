"""Writers that stream query rows as a text table, CSV or JSON, one row at a time.

Nothing here holds more than one batch of rows: the text table sizes its columns on
the first rows (later, wider values widen their own line only), and JSON is written as
an array whose elements are emitted as they come.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import itertools
import json
import math
import uuid
from typing import Any, Iterable, Iterator, Sequence, TextIO

FORMATS = ("table", "csv", "json")
TABLE_SAMPLE_ROWS = 1_000


def write_rows(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO, format: str = "table"
) -> int:
    """Write ``rows`` under the header ``columns`` to ``stream``; return the number of rows.

    Parameters
    ----------
    columns : sequence of str
        Column names.
    rows : iterable of sequences
        Row values; consumed once, lazily.
    stream : text file
        Where to write.
    format : {"table", "csv", "json"}
        ``table``: aligned columns for people (floats to 6 significant digits);
        ``csv``: RFC 4180 with a header, full precision, empty for NULL;
        ``json``: an array of objects, NULL and NaN as ``null``, dates as ISO 8601.
    """
    if format == "csv":
        return _write_csv(columns, rows, stream)
    if format == "json":
        return _write_json(columns, rows, stream)
    if format == "table":
        return _write_table(columns, rows, stream)
    raise ValueError(f"unknown output format {format!r}; choose one of {FORMATS}")


def plain_value(value: Any) -> Any:
    """Return ``value`` as a JSON-compatible Python value (None for NaN)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    iterator = iter(rows)
    sample = list(itertools.islice(iterator, TABLE_SAMPLE_ROWS))
    # csv's C loop writes numbers and strings itself; convert only the columns that
    # hold dates, times or JSON documents in the first rows.
    converted = [
        index for index in range(len(columns))
        if any(isinstance(row[index], (dt.date, dt.time, dict, list)) for row in sample)
    ]
    counter = _Counter()
    batches = itertools.chain(sample, iterator)
    if converted:
        batches = (_converted(row, converted) for row in batches)
    writer.writerows(counter.count(batches))
    return counter.rows


class _Counter:
    """Counts the rows that pass through :meth:`count`."""

    def __init__(self) -> None:
        self.rows = 0

    def count(self, rows: Iterable[Any]) -> Iterator[Any]:
        for self.rows, row in enumerate(rows, start=1):  # noqa: B007
            yield row


def _converted(row: Sequence[Any], indices: list[int]) -> list[Any]:
    values = list(row)
    for index in indices:
        values[index] = _csv_value(values[index])
    return values


def _csv_value(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def _write_json(columns: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO) -> int:
    stream.write("[")
    count = 0
    for count, row in enumerate(rows, start=1):
        record = {name: plain_value(value) for name, value in zip(columns, row)}
        stream.write(("\n" if count == 1 else ",\n") + json.dumps(record, default=str))
    stream.write("\n]\n" if count else "]\n")
    return count


def _write_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO) -> int:
    iterator = iter(rows)
    sample = [[_table_value(value) for value in row] for row in itertools.islice(iterator, TABLE_SAMPLE_ROWS)]
    widths = [
        max([len(name), *(len(row[index]) for row in sample)]) for index, name in enumerate(columns)
    ]
    stream.write("  ".join(name.ljust(width) for name, width in zip(columns, widths)).rstrip() + "\n")
    stream.write("  ".join("-" * width for width in widths) + "\n")
    count = 0
    for count, cells in enumerate(itertools.chain(sample, _formatted(iterator)), start=1):
        stream.write("  ".join(cell.rjust(width) for cell, width in zip(cells, widths)).rstrip() + "\n")
    stream.write(f"({count} row{'' if count == 1 else 's'})\n")
    return count


def _formatted(rows: Iterator[Sequence[Any]]) -> Iterator[list[str]]:
    for row in rows:
        yield [_table_value(value) for value in row]


def _table_value(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    value = plain_value(value)
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
