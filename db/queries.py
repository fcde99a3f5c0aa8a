"""Read-only SQL on the cell database, streamed row by row, with a time limit.

:func:`readonly_query` runs one statement of the user's SQL on a read-only engine and
yields its rows in batches from the driver: SQLite's cursor steps through the result,
PostgreSQL's rows arrive through psycopg's ``cursor.stream()``, so a million cells never
sit in memory at once. What keeps the statement from changing anything, from running
past its time limit, or running on after SIGTERM is in :mod:`cellpipe.db.isolation`; a
statement that tries to write is refused by the database itself and raised as
:class:`ReadOnlyError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterator

from sqlalchemy.engine import URL

from cellpipe.db.engine import NoDatabaseError, create_readonly_engine, parse_url
from cellpipe.db.isolation import (
    DEFAULT_TIMEOUT_S,
    Guard,
    QueryError,
    QueryInterrupted,
    QueryTimeout,
    ReadOnlyError,
    guarded,
    sqlite_guarded,
    translated_errors,
)
from cellpipe.db.postgres_isolation import (
    postgresql_transaction,
    refuse_statements_without_rows,
    refuse_written_transaction,
)
from cellpipe.db.schema import SchemaStatus, schema_status

DEFAULT_BATCH_SIZE = 2_000

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TIMEOUT_S",
    "QueryError",
    "QueryInterrupted",
    "QueryResult",
    "QueryTimeout",
    "ReadOnlyError",
    "check_readable",
    "readonly_query",
]


@dataclass
class QueryResult:
    """The columns of a running query, an iterator over its rows (tuples), and a warning.

    ``warning`` says, when it is not None, why the query does not run with the
    isolation it should have (see :mod:`cellpipe.db.isolation`).
    """

    columns: list[str]
    rows: Iterator[tuple[Any, ...]]
    warning: str | None = None


def check_readable(url: str | URL) -> SchemaStatus:
    """Return the schema status of ``url``, which must hold cellpipe's schema; nothing is created.

    Raises
    ------
    NoDatabaseError
        For a SQLite file that does not exist, or a database without cellpipe's tables
        (``cellpipe db upgrade`` creates them).
    """
    engine = create_readonly_engine(url)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    if status.is_empty:
        shown = parse_url(url).render_as_string(hide_password=True)
        raise NoDatabaseError(f"{shown} has no cellpipe tables; `cellpipe db upgrade --db URL` creates them")
    return status


@contextlib.contextmanager
def readonly_query(
    url: str | URL,
    sql: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> Iterator[QueryResult]:
    """Run ``sql`` read-only on ``url``; yield its columns and a streaming row iterator.

    The rows must be consumed inside the ``with`` block; the time limit covers them.

    Parameters
    ----------
    url : str or URL
        Database URL (SQLite or PostgreSQL).
    sql : str
        One SQL statement that returns rows.
    batch_size : int
        Rows fetched from the database at a time.
    timeout_s : float or None
        Seconds after which the query is cancelled; 0 or None for no limit.

    Raises
    ------
    ReadOnlyError
        When the statement tries to write or returns no rows (nothing is changed).
    QueryTimeout
        When the query runs past ``timeout_s`` (it is cancelled on the server).
    QueryInterrupted
        When SIGTERM or SIGINT arrives while it runs (it is cancelled on the server).
    QueryError
        When the database rejects the statement, with the database's message.

    Examples
    --------
    >>> with readonly_query(url, "SELECT label, area FROM cells") as result:  # doctest: +SKIP
    ...     for label, area in result.rows:
    ...         ...
    """
    if not sql.strip():
        raise QueryError("the query is empty")
    backend = parse_url(url).get_backend_name()
    with guarded(timeout_s) as guard, translated_errors(guard, backend=backend):
        if backend == "sqlite":
            with _sqlite_query(url, sql, batch_size, guard) as result:
                yield result
        else:
            with _postgresql_query(url, sql, batch_size, guard) as result:
                yield result


@contextlib.contextmanager
def _sqlite_query(url: str | URL, sql: str, batch_size: int, guard: Guard) -> Iterator[QueryResult]:
    engine = create_readonly_engine(url)
    try:
        with engine.connect() as connection:
            driver_connection = connection.connection.driver_connection
            with sqlite_guarded(driver_connection, guard):
                cursor = driver_connection.cursor()
                try:
                    cursor.execute(sql)
                    columns = [description[0] for description in cursor.description or ()]
                    yield QueryResult(columns, _batched_rows(cursor, batch_size))
                finally:
                    cursor.close()
    finally:
        engine.dispose()


@contextlib.contextmanager
def _postgresql_query(url: str | URL, sql: str, batch_size: int, guard: Guard) -> Iterator[QueryResult]:
    with postgresql_transaction(url, guard, user_sql=True) as session:
        driver_connection = session.connection.connection.driver_connection
        refuse_statements_without_rows(driver_connection, sql)
        cursor = driver_connection.cursor()
        stream = _psycopg_stream(cursor, sql, batch_size)
        try:
            first = next(stream, None)
            columns = [column.name for column in cursor.description or ()]
            yield QueryResult(columns, _checked_rows(first, stream, driver_connection), session.warning)
        finally:
            stream.close()  # an unfinished stream cancels its query on the server
            cursor.close()


def _psycopg_stream(cursor: Any, sql: str, batch_size: int) -> Iterator[tuple[Any, ...]]:
    import psycopg

    try:
        yield from cursor.stream(sql, size=batch_size)
    except psycopg.NotSupportedError:
        # libpq older than 17 has no chunked mode: fall back to single-row mode.
        yield from cursor.stream(sql)


def _checked_rows(
    first: tuple[Any, ...] | None, rest: Iterator[tuple[Any, ...]], driver_connection: Any
) -> Iterator[tuple[Any, ...]]:
    if first is not None:
        yield first
        yield from rest
    refuse_written_transaction(driver_connection)


def _batched_rows(cursor: sqlite3.Cursor, batch_size: int) -> Iterator[tuple[Any, ...]]:
    while batch := cursor.fetchmany(batch_size):
        yield from batch
