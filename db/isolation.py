"""Why SQL run by ``cellpipe query`` and ``export`` cannot change anything or run forever.

Nothing here reads the SQL: every guard is the database's own.

SQLite
    The file is opened with ``mode=ro``, so SQLite refuses every write. The statement is
    compiled under an authorizer (:class:`ReadOnlyAuthorizer`) that allows reading and
    nothing else: ATTACH, DETACH, VACUUM and VACUUM INTO, DML, DDL, transaction statements
    and every PRAGMA but a few read-only ones are refused while the statement is
    compiled, before any file is opened. A progress handler stops it at its deadline.
    ``sqlite3`` compiles one statement at a time and refuses a second one.

PostgreSQL
    One statement that returns rows, in a READ ONLY transaction that is always rolled
    back, as role ``cellpipe_reader``, with ``statement_timeout``
    (:mod:`cellpipe.db.postgres_isolation`, which also says who the SQL runs as).

Both: while a query runs, SIGTERM (and SIGINT, unless the program installed its own
handler) stops it, cancelled on the server first (:class:`QueryInterrupted`), and its
errors are raised as :class:`QueryError` and its kinds with the database's message.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import sqlalchemy

from cellpipe.db.engine import DatabaseError

try:  # psycopg comes with the PostgreSQL backend only
    from psycopg import Error as _PsycopgError
except ImportError:  # pragma: no cover
    class _PsycopgError(Exception):  # type: ignore[no-redef]
        """Stands for psycopg's errors where psycopg is not installed."""

#: Seconds a query or export may take unless told otherwise (``query_timeout`` setting).
DEFAULT_TIMEOUT_S = 300.0
#: SQLite virtual-machine steps between two looks at the clock.
SQLITE_PROGRESS_STEPS = 10_000


class QueryError(DatabaseError):
    """The database rejected the query; the message is the database's own."""


class ReadOnlyError(QueryError):
    """The query tried to change the database, which ``cellpipe query`` never does."""


class QueryTimeout(QueryError):
    """The query ran past its time limit and was cancelled."""


class QueryInterrupted(QueryError):
    """A signal (SIGTERM, SIGINT) stopped the query, which was cancelled first."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


# --- deadlines and signals ----------------------------------------------------------------


class _Signalled(KeyboardInterrupt):
    # A KeyboardInterrupt, so that psycopg cancels the running query on the server and
    # waits for it to end, as it does on Ctrl-C, before the exception goes on.
    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


@dataclass
class Guard:
    """The time limit of one query and what stopped it, if anything did."""

    timeout_s: float | None
    started: float = field(default_factory=time.monotonic)
    expired: bool = False
    signal_number: int | None = None

    @property
    def deadline(self) -> float | None:
        """Return the ``time.monotonic()`` at which the query must stop, or None for no limit."""
        return None if not self.timeout_s else self.started + self.timeout_s

    def sqlite_progress(self) -> int:
        """Return non-zero (SQLite then aborts the statement) once the query must stop."""
        if self.signal_number is not None:
            return 1
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.expired = True
            return 1
        return 0

    def timeout_error(self) -> QueryTimeout:
        return QueryTimeout(
            f"the query ran longer than its time limit of {self.timeout_s:g} s and was cancelled; "
            "nothing was changed (raise the limit with --timeout SECONDS or the query_timeout "
            "setting, 0 for none)"
        )

    def interrupted_error(self, where: str) -> QueryInterrupted:
        assert self.signal_number is not None
        name = signal.Signals(self.signal_number).name
        return QueryInterrupted(f"interrupted by {name}; the query was cancelled{where}", self.signal_number)


@contextlib.contextmanager
def guarded(timeout_s: float | None) -> Iterator[Guard]:
    """Yield a :class:`Guard`; SIGTERM and SIGINT stop the query while the block runs.

    Only default handlers are replaced, and only in the main thread; the first signal
    puts them back, so a second one ends the process the usual way.
    """
    if timeout_s is not None and timeout_s < 0:
        raise ValueError(f"the time limit must be 0 (none) or more seconds, got {timeout_s:g}")
    guard = Guard(timeout_s)
    previous: dict[int, Any] = {}

    def on_signal(signal_number: int, _frame: object) -> None:
        guard.signal_number = signal_number
        for number, handler in previous.items():
            signal.signal(number, handler)
        raise _Signalled(signal_number)

    if threading.current_thread() is threading.main_thread():
        for number, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
            if signal.getsignal(number) is default:
                previous[number] = signal.signal(number, on_signal)
    try:
        yield guard
    finally:
        if guard.signal_number is None:
            for number, handler in previous.items():
                signal.signal(number, handler)


@contextlib.contextmanager
def translated_errors(guard: Guard, *, backend: str) -> Iterator[None]:
    """Raise the errors of the block as :class:`QueryError` and its kinds, with the database's message."""
    where = " on the server" if backend == "postgresql" else ""
    try:
        yield
    except _Signalled:
        raise guard.interrupted_error(where) from None
    except sqlalchemy.exc.DBAPIError as error:
        _raise_translated(error.orig, guard, where)
        raise
    except (sqlite3.Error, _PsycopgError) as error:
        _raise_translated(error, guard, where)
        raise


def _raise_translated(error: BaseException, guard: Guard, where: str) -> None:
    if guard.signal_number is not None:
        raise guard.interrupted_error(where) from None
    if isinstance(error, sqlite3.Error):
        message = str(error)
        if message == "interrupted" and guard.expired:
            raise guard.timeout_error() from None
        refused = getattr(error, "cellpipe_refused", None)
        if refused:
            raise ReadOnlyError(f"cellpipe query is read-only: {refused} is refused; nothing was changed") from None
        if getattr(error, "sqlite_errorname", "").startswith("SQLITE_READONLY") or "readonly" in message:
            raise ReadOnlyError(_read_only_message(message)) from None
        raise QueryError(message) from None
    if type(error).__module__.startswith("psycopg"):
        message = str(error).strip()
        sqlstate = getattr(error, "sqlstate", None)
        if sqlstate == "57014" and (guard.expired or "statement timeout" in message):
            raise guard.timeout_error() from None
        if sqlstate == "25006":  # read_only_sql_transaction
            raise ReadOnlyError(_read_only_message(message)) from None
        raise QueryError(message) from None


def _read_only_message(database_message: str) -> str:
    return (
        "cellpipe query is read-only and cannot change the database "
        f"(the database said: {database_message}); nothing was changed"
    )


# --- SQLite -------------------------------------------------------------------------------

#: PRAGMAs that only read, without an argument or with a table or index name.
READ_PRAGMAS = frozenset({
    "application_id", "collation_list", "compile_options", "data_version", "database_list",
    "encoding", "foreign_keys", "freelist_count", "function_list", "journal_mode", "module_list",
    "page_count", "page_size", "pragma_list", "query_only", "schema_version", "user_version",
})
NAME_PRAGMAS = frozenset({
    "foreign_key_check", "foreign_key_list", "index_info", "index_list", "index_xinfo",
    "integrity_check", "quick_check", "table_info", "table_list", "table_xinfo",
})
_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
_ACTION_NAMES = {
    getattr(sqlite3, name): name[len("SQLITE_"):].replace("_", " ")
    for name in (
        "SQLITE_ALTER_TABLE", "SQLITE_ANALYZE", "SQLITE_ATTACH", "SQLITE_CREATE_INDEX",
        "SQLITE_CREATE_TABLE", "SQLITE_CREATE_TEMP_INDEX", "SQLITE_CREATE_TEMP_TABLE",
        "SQLITE_CREATE_TEMP_TRIGGER", "SQLITE_CREATE_TEMP_VIEW", "SQLITE_CREATE_TRIGGER",
        "SQLITE_CREATE_VIEW", "SQLITE_CREATE_VTABLE", "SQLITE_DELETE", "SQLITE_DETACH",
        "SQLITE_DROP_INDEX", "SQLITE_DROP_TABLE", "SQLITE_DROP_TEMP_INDEX", "SQLITE_DROP_TEMP_TABLE",
        "SQLITE_DROP_TEMP_TRIGGER", "SQLITE_DROP_TEMP_VIEW", "SQLITE_DROP_TRIGGER", "SQLITE_DROP_VIEW",
        "SQLITE_DROP_VTABLE", "SQLITE_INSERT", "SQLITE_REINDEX", "SQLITE_SAVEPOINT",
        "SQLITE_TRANSACTION", "SQLITE_UPDATE",
    )
}
# SQLite reports these when a statement first uses a virtual table (json_each,
# pragma_table_info): bookkeeping of its in-memory schema, which mode=ro keeps read-only.
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema"})


class ReadOnlyAuthorizer:
    """SQLite authorizer (``Connection.set_authorizer``) that allows reading and nothing else.

    ``refused`` describes the first thing it refused (SQLite's own error only says
    "not authorized").
    """

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2 != "load_extension":
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in NAME_PRAGMAS or (name in READ_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
            return self._refuse(f"PRAGMA {arg1}" + ("" if arg2 is None else f" = {arg2}"))
        if action == sqlite3.SQLITE_FUNCTION:
            return self._refuse(f"the function {arg2}()")
        if action == sqlite3.SQLITE_ATTACH:
            # VACUUM and VACUUM INTO are refused here too: both attach a database first.
            return self._refuse(f"opening the database file {arg1!r} (ATTACH, VACUUM INTO)" if arg1 else "VACUUM")
        if action == sqlite3.SQLITE_TRANSACTION:
            return self._refuse(f"{arg1} (cellpipe runs the transaction)")
        what = _ACTION_NAMES.get(action, f"operation {action}")
        return self._refuse(what + (f" on {arg1}" if arg1 else ""))

    def _refuse(self, what: str) -> int:
        if self.refused is None:
            self.refused = what
        return sqlite3.SQLITE_DENY


@contextlib.contextmanager
def sqlite_guarded(dbapi_connection: sqlite3.Connection, guard: Guard) -> Iterator[ReadOnlyAuthorizer]:
    """Yield while statements compiled on ``dbapi_connection`` may only read, and stop at ``guard``'s deadline."""
    authorizer = ReadOnlyAuthorizer()
    dbapi_connection.set_authorizer(authorizer)
    dbapi_connection.set_progress_handler(guard.sqlite_progress, SQLITE_PROGRESS_STEPS)
    try:
        yield authorizer
    except sqlite3.Error as error:
        if authorizer.refused:
            error.cellpipe_refused = authorizer.refused  # type: ignore[attr-defined]
        raise
    finally:
        # Back to allowing everything (None only from Python 3.11): the pool rolls back.
        dbapi_connection.set_authorizer(lambda *_: sqlite3.SQLITE_OK)
        dbapi_connection.set_progress_handler(None, 0)
