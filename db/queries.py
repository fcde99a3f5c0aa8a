"""Read-only SQL on the cell database, streamed row by row.

:func:`readonly_query` runs one statement of the user's SQL on a read-only engine (see
:func:`cellpipe.db.engine.create_readonly_engine`) and yields its rows in batches from
the driver: SQLite's cursor steps through the result, PostgreSQL's rows arrive through
psycopg's ``cursor.stream()``, so a million cells never sit in memory at once. A write
statement fails in the database itself; the error is raised as :class:`ReadOnlyError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterator

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from cellpipe.db.engine import DatabaseError, create_readonly_engine, is_sqlite, sqlite_path
from cellpipe.db.schema import SchemaStatus, open_database, schema_status

DEFAULT_BATCH_SIZE = 2_000


class QueryError(DatabaseError):
    """The database rejected the query; the message is the database's own."""


class ReadOnlyError(QueryError):
    """The query tried to change the database, which ``cellpipe query`` never does."""


@dataclass
class QueryResult:
    """The columns of a running query and an iterator over its rows (tuples)."""

    columns: list[str]
    rows: Iterator[tuple[Any, ...]]


def prepare_for_reading(url: str | URL) -> SchemaStatus:
    """Return the schema status of ``url``, creating the schema first if the database is empty.

    A database used for the first time (a SQLite file that does not exist, an empty
    PostgreSQL database) is upgraded to head like on any first use, so that queries
    on it return no rows rather than "no such table".
    """
    if is_sqlite(url) and not sqlite_path(url).exists():
        open_database(url).dispose()
    engine = create_readonly_engine(url)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    if status.is_empty:
        open_database(url).dispose()
        engine = create_readonly_engine(url)
        try:
            status = schema_status(engine)
        finally:
            engine.dispose()
    return status


@contextlib.contextmanager
def readonly_query(
    url: str | URL, sql: str, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[QueryResult]:
    """Run ``sql`` read-only on ``url``; yield its columns and a streaming row iterator.

    The rows must be consumed inside the ``with`` block.

    Parameters
    ----------
    url : str or URL
        Database URL (SQLite or PostgreSQL).
    sql : str
        One SQL statement.
    batch_size : int
        Rows fetched from the database at a time.

    Raises
    ------
    ReadOnlyError
        When the statement tries to write (nothing is changed).
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
    engine = create_readonly_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            with _sqlite_query(engine, sql, batch_size) as result:
                yield result
        else:
            with _postgresql_query(engine, sql, batch_size) as result:
                yield result
    finally:
        engine.dispose()


@contextlib.contextmanager
def _sqlite_query(engine: Engine, sql: str, batch_size: int) -> Iterator[QueryResult]:
    with engine.connect() as connection:
        driver_connection = connection.connection.driver_connection
        cursor = driver_connection.cursor()
        try:
            with _translated_errors():
                cursor.execute(sql)
            columns = [description[0] for description in cursor.description or ()]
            yield QueryResult(columns, _batched_rows(cursor, batch_size))
        finally:
            cursor.close()


@contextlib.contextmanager
def _postgresql_query(engine: Engine, sql: str, batch_size: int) -> Iterator[QueryResult]:
    with engine.connect() as connection, connection.begin():  # begin: SET TRANSACTION READ ONLY
        driver_connection = connection.connection.driver_connection
        cursor = driver_connection.cursor()
        try:
            with _translated_errors():
                stream = _psycopg_stream(cursor, sql, batch_size)
                first = next(stream, None)
            columns = [column.name for column in cursor.description or ()]
            yield QueryResult(columns, _chained_rows(first, stream))
        finally:
            cursor.close()


def _psycopg_stream(cursor: Any, sql: str, batch_size: int) -> Iterator[tuple[Any, ...]]:
    import psycopg

    try:
        yield from cursor.stream(sql, size=batch_size)
    except psycopg.NotSupportedError:
        # libpq older than 17 has no chunked mode: fall back to single-row mode.
        yield from cursor.stream(sql)


def _chained_rows(first: tuple[Any, ...] | None, rest: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    if first is None:
        return
    yield first
    with _translated_errors():
        yield from rest


def _batched_rows(cursor: sqlite3.Cursor, batch_size: int) -> Iterator[tuple[Any, ...]]:
    with _translated_errors():
        while batch := cursor.fetchmany(batch_size):
            yield from batch


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        if getattr(error, "sqlite_errorname", "").startswith("SQLITE_READONLY") or "readonly" in str(error):
            raise ReadOnlyError(_read_only_message(str(error))) from None
        raise QueryError(str(error)) from None
    except Exception as error:
        if type(error).__module__.startswith("psycopg"):
            message = str(error).strip()
            if getattr(error, "sqlstate", None) == "25006":  # read_only_sql_transaction
                raise ReadOnlyError(_read_only_message(message)) from None
            raise QueryError(message) from None
        raise


def _read_only_message(database_message: str) -> str:
    return (
        "cellpipe query is read-only and cannot change the database "
        f"(the database said: {database_message}); nothing was changed"
    )
