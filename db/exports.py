"""Streaming export of cells or images to CSV or Parquet, filtered by batch date.

``cells`` exports the ``cell_metrics`` view (latest result per image × model, with
image and model lineage); ``images`` exports ``image_summary``. Rows are read from a
read-only engine in batches (a server-side cursor on PostgreSQL) and written batch by
batch, to ``OUT.partial`` first and renamed to ``OUT`` once complete, so a failed
export never leaves a truncated file under the requested name. Reading is guarded as
``cellpipe query`` is (:mod:`cellpipe.db.isolation`): a READ ONLY transaction as role
``cellpipe_reader`` where the login role may switch to it, with a time limit, cancelled
on the server by SIGTERM.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import Connection, Date, DateTime, Double, Float, Integer, Select, String, Table, Text, select
from sqlalchemy.engine import URL
from sqlalchemy.types import Boolean, TypeEngine

from cellpipe.db.engine import create_readonly_engine, parse_url
from cellpipe.db.isolation import DEFAULT_TIMEOUT_S, Guard, guarded, sqlite_guarded, translated_errors
from cellpipe.db.postgres_isolation import postgresql_transaction
from cellpipe.db.output import write_rows
from cellpipe.db.views import cell_metrics, image_summary

EXPORTS: dict[str, Table] = {"cells": cell_metrics, "images": image_summary}
EXPORT_FORMATS = ("csv", "parquet")
DEFAULT_BATCH_SIZE = 50_000


def export(
    url: str | URL,
    what: str,
    out: str | os.PathLike[str],
    *,
    format: str = "csv",
    since: dt.date | None = None,
    until: dt.date | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> int:
    """Write the ``cells`` or ``images`` of ``url`` to ``out``; return the number of rows.

    Parameters
    ----------
    url : str or URL
        Database URL.
    what : {"cells", "images"}
        ``cells``: the ``cell_metrics`` view; ``images``: the ``image_summary`` view.
    out : path
        File to write (replaced if it exists).
    format : {"csv", "parquet"}
        CSV with a header, or Parquet (one row group per batch; needs pyarrow).
    since, until : datetime.date, optional
        Keep images whose batch date is on or after ``since`` / on or before ``until``.
    batch_size : int
        Rows read and written at a time.
    timeout_s : float or None
        Seconds after which the export is cancelled (no file is left); 0 or None for no
        limit.

    Raises
    ------
    QueryTimeout, QueryInterrupted
        When the export runs past ``timeout_s`` or a signal stops it (the query is
        cancelled on the server first).
    """
    if what not in EXPORTS:
        raise ValueError(f"can export {sorted(EXPORTS)}, not {what!r}")
    if format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {format!r}")
    if since is not None and until is not None and since > until:
        raise ValueError(f"--since {since} is after --until {until}")
    view = EXPORTS[what]
    statement = _statement(view, since, until)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    backend = parse_url(url).get_backend_name()
    try:
        with guarded(timeout_s) as guard, translated_errors(guard, backend=backend):
            with _read_transaction(url, backend, guard) as connection:
                result = connection.execute(statement, execution_options={"yield_per": batch_size})
                batches = _utc_batches(view, result.partitions())
                if format == "csv":
                    with partial.open("w", newline="", encoding="utf-8") as stream:
                        count = write_rows(list(result.keys()), _rows(batches), stream, format="csv")
                else:
                    count = _write_parquet(view, batches, partial)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


@contextlib.contextmanager
def _read_transaction(url: str | URL, backend: str, guard: Guard) -> Iterator[Connection]:
    if backend != "sqlite":
        with postgresql_transaction(url, guard, user_sql=False) as session:
            yield session.connection
        return
    engine = create_readonly_engine(url)
    try:
        with engine.connect() as connection, connection.begin():
            with sqlite_guarded(connection.connection.driver_connection, guard):
                yield connection
    finally:
        engine.dispose()


def _statement(view: Table, since: dt.date | None, until: dt.date | None) -> Select[Any]:
    statement = select(view)
    if since is not None:
        statement = statement.where(view.c.batch_date >= since)
    if until is not None:
        statement = statement.where(view.c.batch_date <= until)
    order = ("segmentation_id", "label") if "label" in view.c else ("image_id", "model_id")
    return statement.order_by(*(view.c[name] for name in order))


def _utc_batches(view: Table, partitions: Iterable[Sequence[Any]]) -> Iterator[list[Any]]:
    # SQLite hands back the stored UTC times without a zone: attach it, as PostgreSQL does.
    zoned = [index for index, column in enumerate(view.columns) if isinstance(column.type, DateTime)]
    for batch in partitions:
        if not zoned:
            yield list(batch)
            continue
        rows = [list(row) for row in batch]
        for row in rows:
            for index in zoned:
                value = row[index]
                if isinstance(value, dt.datetime) and value.tzinfo is None:
                    row[index] = value.replace(tzinfo=dt.timezone.utc)
        yield rows


def _rows(batches: Iterable[list[Any]]) -> Iterator[Any]:
    for batch in batches:
        yield from batch


def _write_parquet(view: Table, batches: Iterable[list[Any]], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(column.name, _arrow_type(column.type)) for column in view.columns])
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            columns: Sequence[Sequence[Any]] = list(zip(*batch))
            arrays = [pa.array(values, type=field.type) for values, field in zip(columns, schema)]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            count += len(batch)
    return count


def _arrow_type(sql_type: TypeEngine[Any]) -> Any:
    import pyarrow as pa

    if isinstance(sql_type, Boolean):
        return pa.bool_()
    if isinstance(sql_type, Integer):
        return pa.int64()
    if isinstance(sql_type, (Double, Float)):
        return pa.float64()
    if isinstance(sql_type, DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(sql_type, Date):
        return pa.date32()
    if isinstance(sql_type, (String, Text)):
        return pa.string()
    raise TypeError(f"no Parquet type for SQL type {sql_type!r}")  # pragma: no cover
