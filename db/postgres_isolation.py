"""PostgreSQL: who the SQL of ``cellpipe query`` runs as, in which transaction.

One statement (the extended protocol refuses a second one), described by the server
before it runs: a statement that returns no rows (ANALYZE, NOTIFY, COPY, SET, RESET,
DDL, DML without RETURNING) is refused without being run. It runs in a READ ONLY
transaction that is always rolled back, with ``statement_timeout`` set and a client
watchdog that cancels it at the deadline, as role ``cellpipe_reader`` (migration 0004:
SELECT on cellpipe's tables and views; no server files, no ``lo_import``, no ``COPY … TO``
a file). READ ONLY does not refuse ``lo_create``/``lo_from_bytea``: a transaction that
was given a transaction id (only a write gets one) ends as a :class:`ReadOnlyError`,
rolled back like every other.

Who the SQL runs as depends on who the URL logs in as:

- ``cellpipe_reader`` itself (it was given a login): nothing can switch to other rights.
- a superuser, or a role with ``pg_read_server_files``, ``pg_write_server_files`` or
  ``pg_execute_server_program``: ``SET ROLE`` and ``SET SESSION AUTHORIZATION`` can both be
  undone inside one statement (``set_config('role', …)`` followed by a function that runs
  SQL, such as ``query_to_xml``), which would give those rights back. cellpipe therefore
  connects a second time, as ``cellpipe_reader`` (same server and database, its password
  from ``~/.pgpass``), and refuses the query when that role cannot log in.
- any other member of ``cellpipe_reader`` (the owner that ran the migration): ``SET LOCAL
  ROLE cellpipe_reader``. A statement can switch back to the login role, whose rights
  in a read-only, rolled-back transaction are the owner's reads of its own tables.
- anyone else: the READ ONLY transaction alone, with a warning that says why.

The fixed statements of ``cellpipe export`` switch to ``cellpipe_reader`` whenever the
login role may (nothing in them can switch back).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import sqlalchemy
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from cellpipe.db.engine import create_readonly_engine, parse_url
from cellpipe.db.isolation import Guard, QueryError, ReadOnlyError

#: The role queries run as on PostgreSQL (created by migration 0004).
READER_ROLE = "cellpipe_reader"

_FILE_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
_SESSION = f"""
SELECT session_user::text,
       session_user = %(reader)s,
       EXISTS (
           SELECT FROM pg_catalog.pg_roles AS r
           WHERE (r.rolsuper OR r.rolname IN {_FILE_ROLES!r})
             AND pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')
       ),
       reader.oid IS NOT NULL,
       COALESCE(reader.rolcanlogin, false),
       COALESCE(pg_catalog.pg_has_role(session_user, reader.oid, 'MEMBER'), false)
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_roles AS reader ON reader.rolname = %(reader)s
"""


@dataclass(frozen=True)
class PostgresSession:
    """Who the SQL runs as on one connection, and what the user should be told about it."""

    connection: Connection
    set_role: bool
    warning: str | None = None


@contextlib.contextmanager
def postgresql_transaction(url: str | URL, guard: Guard, *, user_sql: bool) -> Iterator[PostgresSession]:
    """Yield a connection inside a READ ONLY transaction, as the module docstring says.

    The transaction is rolled back at the end, whatever happened. ``user_sql=False``
    (the fixed statements of an export) switches to the reader role whenever the login
    role may, and never refuses or warns.
    """
    with contextlib.ExitStack() as stack:
        connection, facts = _connect(stack, url)
        login, is_reader, privileged, reader_exists, reader_can_log_in, may_become_reader = facts
        warning = None
        if not user_sql:
            set_role = reader_exists and may_become_reader and not is_reader
        elif is_reader:
            if privileged:
                raise QueryError(
                    f"{READER_ROLE} has superuser rights or may use server files; "
                    "revoke them, it must only read cellpipe's tables"
                )
            set_role = False
        elif privileged:
            if not (reader_exists and reader_can_log_in):
                raise QueryError(_privileged_message(login, reader_exists))
            stack.close()
            connection = _connect_as_reader(stack, url, login)
            set_role = False
        elif reader_exists and may_become_reader:
            set_role = True
        else:
            set_role = False
            reason = (
                f"{login} is not a member of it (an administrator can run GRANT {READER_ROLE} TO {login})"
                if reader_exists
                else "that role does not exist (run `cellpipe db upgrade` as a role with CREATEROLE)"
            )
            warning = f"the query runs as {login} in a read-only transaction, not as {READER_ROLE}: {reason}"
        driver = connection.connection.driver_connection
        with driver.cursor() as cursor:
            if guard.timeout_s:
                cursor.execute(f"SET LOCAL statement_timeout = {max(1, round(guard.timeout_s * 1000))}")
            if set_role:
                cursor.execute(f"SET LOCAL ROLE {READER_ROLE}")
        stack.enter_context(_watchdog(driver, guard))
        yield PostgresSession(connection, set_role, warning)


def _connect(stack: contextlib.ExitStack, url: str | URL) -> tuple[Connection, tuple[Any, ...]]:
    engine = create_readonly_engine(url)
    stack.callback(engine.dispose)
    connection = stack.enter_context(engine.connect())
    transaction = connection.begin()  # SET TRANSACTION READ ONLY (create_readonly_engine)
    stack.callback(_rollback, connection, transaction)
    with connection.connection.driver_connection.cursor() as cursor:
        facts = cursor.execute(_SESSION, {"reader": READER_ROLE}).fetchone()
    return connection, facts


def _connect_as_reader(stack: contextlib.ExitStack, url: str | URL, login: str) -> Connection:
    reader_url = parse_url(url).set(username=READER_ROLE, password=None)
    try:
        connection, facts = _connect(stack, reader_url)
    except sqlalchemy.exc.OperationalError as error:
        cause = str(error.orig).strip().splitlines()[-1] if error.orig else str(error)
        raise QueryError(
            f"{_not_as(login)}; connecting as {READER_ROLE} instead failed: {cause} "
            "(its password goes in ~/.pgpass)"
        ) from None
    if not facts[1] or facts[2]:
        raise QueryError(f"connected as {facts[0]}, which is not an unprivileged {READER_ROLE}; query refused")
    return connection


def _not_as(login: str) -> str:
    return (
        f"{login} is a superuser or may use server files, rights that a statement could switch "
        f"back to, so cellpipe query does not run SQL as {login}"
    )


def _privileged_message(login: str, reader_exists: bool) -> str:
    fix = (
        f"give {READER_ROLE} a login (ALTER ROLE {READER_ROLE} LOGIN PASSWORD '…', the password "
        "in ~/.pgpass) and cellpipe connects as it"
        if reader_exists
        else f"run `cellpipe db upgrade` to create the role {READER_ROLE}, then give it a login"
    )
    return f"{_not_as(login)}; {fix}, or connect as a role without those rights (e.g. the database's owner)"


def _rollback(connection: Connection, transaction: Any) -> None:
    # A query cut short (error, signal, timeout) leaves nothing to keep: READ ONLY.
    if connection.invalidated or not transaction.is_active:
        return
    try:
        transaction.rollback()
    except sqlalchemy.exc.SQLAlchemyError:
        connection.invalidate()


@contextlib.contextmanager
def _watchdog(driver_connection: Any, guard: Guard) -> Iterator[None]:
    # statement_timeout covers one statement; the watchdog covers the whole query (an
    # export fetches from a cursor, one statement per batch) and a server that ignores it.
    if not guard.timeout_s:
        yield
        return

    def expire() -> None:
        guard.expired = True
        try:
            if hasattr(driver_connection, "cancel_safe"):  # psycopg >= 3.2
                driver_connection.cancel_safe(timeout=5.0)
            else:
                driver_connection.cancel()
        except Exception:  # noqa: BLE001 - the server's own statement_timeout still holds
            pass

    timer = threading.Timer(guard.timeout_s, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def refuse_statements_without_rows(driver_connection: Any, sql: str) -> None:
    """Raise :class:`ReadOnlyError` unless the server describes ``sql`` as returning rows.

    The statement is parsed and described (extended protocol), not run: ANALYZE, NOTIFY,
    COPY, SET, RESET, DDL and DML without RETURNING describe no columns.
    """
    import psycopg

    pgconn = driver_connection.pgconn
    prepared = pgconn.prepare(b"", sql.encode(driver_connection.info.encoding))
    if prepared.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(prepared, encoding=driver_connection.info.encoding)
    described = pgconn.describe_prepared(b"")
    if described.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(described, encoding=driver_connection.info.encoding)
    if described.nfields == 0:
        raise ReadOnlyError(
            "cellpipe query is read-only and runs only statements that return rows (SELECT, WITH, "
            "VALUES, TABLE, SHOW, EXPLAIN); this one returns none, so it was not run and nothing was changed"
        )


def refuse_written_transaction(driver_connection: Any) -> None:
    """Raise :class:`ReadOnlyError` if the transaction wrote anything (it has a transaction id)."""
    function = (
        "pg_catalog.pg_current_xact_id_if_assigned()"
        if driver_connection.info.server_version >= 130000
        else "pg_catalog.txid_current_if_assigned()"
    )
    with driver_connection.cursor() as cursor:
        wrote = cursor.execute(f"SELECT {function} IS NOT NULL").fetchone()[0]
    if wrote:
        raise ReadOnlyError(
            "cellpipe query is read-only: the statement wrote to the database (e.g. created a large "
            "object), so its transaction was rolled back and nothing was changed"
        )


_READER_CHECK = """
SELECT current_user::text, current_schema()::text,
       EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %(reader)s),
       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
       COALESCE((SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %(reader)s), false)
"""


def reader_role_problem(connection: Connection) -> str | None:
    """Return what keeps queries on ``connection``'s PostgreSQL database from running as the reader role, or None.

    The message says what an administrator or the tables' owner can run to fix it.
    SQLite has no roles: always None.
    """
    if connection.dialect.name != "postgresql":
        return None
    with connection.connection.driver_connection.cursor() as cursor:
        user, schema, exists, is_superuser, can_log_in = cursor.execute(
            _READER_CHECK, {"reader": READER_ROLE}
        ).fetchone()
        if exists:
            may_read, is_member = cursor.execute(
                "SELECT pg_catalog.has_table_privilege(%(reader)s, 'cell_metrics', 'SELECT'), "
                "pg_catalog.pg_has_role(current_user, %(reader)s, 'MEMBER')",
                {"reader": READER_ROLE},
            ).fetchone()
    grant_reads = (
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {READER_ROLE}; "
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {READER_ROLE}"
    )
    if not exists:
        return (
            f"role {READER_ROLE} does not exist ({user} may not create roles), so queries run as {user} "
            f"in a read-only transaction only; an administrator can run CREATE ROLE {READER_ROLE} NOLOGIN; "
            f"GRANT {READER_ROLE} TO {user}; then {user}: {grant_reads}"
        )
    if not may_read:
        return f"role {READER_ROLE} may not read the tables of this database; as their owner, run {grant_reads}"
    if is_superuser and not can_log_in:
        return (
            f"{user} is a superuser: cellpipe query connects as {READER_ROLE} instead, which needs a login "
            f"first (ALTER ROLE {READER_ROLE} LOGIN PASSWORD '…'), or use the URL of a role without superuser rights"
        )
    if not is_superuser and not is_member:
        return (
            f"{user} is not a member of role {READER_ROLE}, so queries run as {user} in a read-only "
            f"transaction only; an administrator can run GRANT {READER_ROLE} TO {user}"
        )
    return None
