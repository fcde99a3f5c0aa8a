"""Engines for the cell database: SQLite (default) or PostgreSQL, writable or read-only.

SQLite files are opened in WAL mode with a busy timeout, so that several processes can
write one after the other and read while another writes. Write transactions on SQLite
start with ``BEGIN IMMEDIATE`` (see :func:`write_transaction`), which takes the write
lock up front, so two writers queue on the busy timeout instead of failing with
"database is locked" when one upgrades a read to a write.

Read-only engines are read-only by construction, not by convention: SQLite is opened
with ``mode=ro`` (plus ``PRAGMA query_only``) and never created, PostgreSQL sessions
start with ``default_transaction_read_only`` on and every transaction is ``READ ONLY``.
What else guards the SQL of ``cellpipe query``: :mod:`cellpipe.db.isolation`.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Union
from urllib.parse import quote

import sqlalchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

#: Something the write functions accept: they open their own transaction on an Engine,
#: and join the caller's transaction on a Connection or Session.
Bind = Union[Engine, Connection, Session]

DEFAULT_BUSY_TIMEOUT_S = 60.0
MIN_SQLITE_VERSION = (3, 35, 0)  # RETURNING (3.35), upserts (3.24), window functions (3.25)


class DatabaseError(RuntimeError):
    """The database cannot be opened or is not in the state cellpipe needs."""


class NoDatabaseError(DatabaseError):
    """There is no database to read: a SQLite file that does not exist, or one without cellpipe's tables."""


class DatabaseUnreachableError(DatabaseError):
    """The database did not answer (server down, refused, network): a later run may succeed."""


def database_location(url: str | URL) -> str:
    """Return where ``url`` points, for messages: ``PostgreSQL at host:port/db`` or ``SQLite file PATH``.

    Examples
    --------
    >>> database_location("postgresql+psycopg://me:secret@db.lab:5433/cells")
    'PostgreSQL at db.lab:5433/cells'
    >>> database_location("sqlite:////var/cells.sqlite")
    'SQLite file /var/cells.sqlite'
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    return f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


def unreachable(url: str | URL, error: BaseException) -> DatabaseUnreachableError:
    """Return a :class:`DatabaseUnreachableError` naming the database of ``url`` and the cause in ``error``, in one line."""
    return DatabaseUnreachableError(f"cannot reach the database ({database_location(url)}): {error_cause(error)}")


def error_cause(error: BaseException) -> str:
    """Return the driver's own message of ``error`` in one line (SQLAlchemy's wrapping and SQL left out)."""
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return " ".join(lines) or type(cause).__name__


def parse_url(url: str | URL) -> URL:
    """Return ``url`` as a SQLAlchemy URL, with a clear error for a malformed one."""
    try:
        return make_url(url)
    except sqlalchemy.exc.ArgumentError as error:
        raise DatabaseError(
            f"not a database URL: {url!r}; expected e.g. sqlite:///path/cells.sqlite "
            "or postgresql+psycopg://user@host:5432/dbname"
        ) from error


def is_sqlite(url: str | URL) -> bool:
    """Return whether ``url`` names a SQLite database."""
    return parse_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str | URL) -> Path:
    """Return the file of a SQLite URL; raise :class:`DatabaseError` for in-memory ones."""
    parsed = parse_url(url)
    database = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = database[len("file:"):]
    if database in ("", ":memory:"):
        raise DatabaseError(f"{url!s}: cellpipe needs a SQLite file, not an in-memory database")
    return Path(database).expanduser()


def create_engine(url: str | URL, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Engine:
    """Return a writable engine for ``url``; the schema is not touched.

    Parameters
    ----------
    url : str or URL
        ``sqlite:///PATH`` or ``postgresql+psycopg://user@host:port/dbname``. The folder
        of a SQLite file is created when missing.
    busy_timeout_s : float
        How long a SQLite writer waits for another writer's lock before failing.

    Returns
    -------
    Engine
        Use :func:`cellpipe.db.open_database` instead to also create or check the schema.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.create_engine(
            parsed.set(drivername="sqlite+pysqlite"), connect_args={"timeout": busy_timeout_s}
        )
        _configure_sqlite(engine, busy_timeout_s=busy_timeout_s, read_only=False)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # synchronous_commit=off is PostgreSQL's counterpart of SQLite's WAL with
        # synchronous=NORMAL: a commit returns before its WAL record reaches the disk, so a
        # server crash can forget the last few hundred milliseconds of commits but never
        # corrupts or half-applies one. Every cellpipe write is an idempotent upsert and a
        # forgotten result reads as "not segmented", which the next run redoes. Waiting for
        # one fsync per image made the flush, not COPY, the slow part of storing results.
        # pool_pre_ping: a connection that a server restart or a network cut left dead in
        # the pool is replaced when taken out, instead of failing the next statement.
        return sqlalchemy.create_engine(
            _psycopg(parsed),
            connect_args={"application_name": "cellpipe", "options": "-c synchronous_commit=off"},
            pool_pre_ping=True,
        )
    raise DatabaseError(f"{parsed!r}: cellpipe supports SQLite and PostgreSQL URLs only")


def create_readonly_engine(url: str | URL, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Engine:
    """Return an engine on ``url`` that cannot change the database.

    Raises
    ------
    NoDatabaseError
        For a SQLite file that does not exist (it is never created).
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed).resolve()
        if not path.is_file():
            raise NoDatabaseError(f"no database at {path}; `cellpipe db upgrade --db URL` creates one")
        readonly_url = URL.create(
            "sqlite+pysqlite",
            database=f"file:{quote(str(path))}",
            query={"mode": "ro", "uri": "true"},
        )
        engine = sqlalchemy.create_engine(readonly_url, connect_args={"timeout": busy_timeout_s})
        _configure_sqlite(engine, busy_timeout_s=busy_timeout_s, read_only=True)
        return engine
    if parsed.get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(
            _psycopg(parsed),
            connect_args={
                "application_name": "cellpipe-query",
                "options": "-c default_transaction_read_only=on",
            },
        )

        @event.listens_for(engine, "begin")
        def _read_only_transaction(connection: Connection) -> None:
            # On the driver's cursor: a connection streaming results would otherwise
            # wrap this statement in a server-side cursor (DECLARE … CURSOR FOR SET …).
            with connection.connection.driver_connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")

        return engine
    raise DatabaseError(f"{parsed!r}: cellpipe supports SQLite and PostgreSQL URLs only")


@contextlib.contextmanager
def write_transaction(bind: Bind) -> Iterator[Connection]:
    """Yield a connection inside a write transaction on ``bind``.

    An Engine gets its own transaction, committed on success and rolled back on error
    (``BEGIN IMMEDIATE`` on SQLite). A Connection or Session joins the caller's
    transaction, which the caller commits.
    """
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            connection.execution_options(cellpipe_sqlite_begin="IMMEDIATE")
            with connection.begin():
                yield connection
    elif isinstance(bind, Session):
        yield bind.connection(execution_options={"cellpipe_sqlite_begin": "IMMEDIATE"})
    elif isinstance(bind, Connection):
        if bind.in_transaction():
            yield bind
        else:
            with bind.begin():
                yield bind
    else:
        raise TypeError(f"expected an Engine, Connection or Session, got {type(bind).__name__}")


@contextlib.contextmanager
def read_connection(bind: Bind) -> Iterator[Connection]:
    """Yield a connection for reading on ``bind`` (the caller's, for a Connection or Session)."""
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            yield connection
    elif isinstance(bind, Session):
        yield bind.connection()
    elif isinstance(bind, Connection):
        yield bind
    else:
        raise TypeError(f"expected an Engine, Connection or Session, got {type(bind).__name__}")


def _psycopg(url: URL) -> URL:
    # Plain postgresql:// would pick psycopg2, which cellpipe does not install.
    return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url


def use_wal(cursor: sqlite3.Cursor | sqlite3.Connection, busy_timeout_s: float) -> None:
    """Put the SQLite file of ``cursor`` in WAL mode, waiting up to ``busy_timeout_s`` for other processes.

    Raises
    ------
    sqlite3.OperationalError
        When the file stays locked past the timeout, or cannot be switched.
    """
    # WAL is stored in the file, so only the first connection to a new database switches
    # it. Switching takes an exclusive lock and SQLite answers "database is locked" at
    # once, without its busy handler, when another process holds any lock (two workers
    # opening a fresh database together): retry until the busy timeout instead.
    deadline = time.monotonic() + busy_timeout_s
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine, *, busy_timeout_s: float, read_only: bool) -> None:
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        raise DatabaseError(
            f"SQLite {sqlite3.sqlite_version} is too old for cellpipe; it needs "
            f"{'.'.join(map(str, MIN_SQLITE_VERSION))} or newer (Python's sqlite3 module)"
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, instead of pysqlite's own
        # implicit BEGIN before DML (which would ignore BEGIN IMMEDIATE and DDL).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if read_only:
            cursor.execute("PRAGMA query_only = ON")
        else:
            use_wal(cursor, busy_timeout_s)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()
        _ensure_sqrt(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = "DEFERRED" if read_only else connection.get_execution_options().get(
            "cellpipe_sqlite_begin", "DEFERRED"
        )
        connection.exec_driver_sql(f"BEGIN {mode}")


def _ensure_sqrt(dbapi_connection: sqlite3.Connection) -> None:
    # image_summary needs sqrt(); SQLite builds without the math functions lack it.
    try:
        dbapi_connection.execute("SELECT sqrt(4.0)")
    except sqlite3.OperationalError:
        dbapi_connection.create_function(
            "sqrt", 1, lambda value: None if value is None or value < 0 else math.sqrt(value),
            deterministic=True,
        )
