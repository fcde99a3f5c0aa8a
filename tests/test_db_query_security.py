"""``cellpipe query`` and ``export`` against hostile SQL, on the real SQLite and PostgreSQL.

Every attack of issue 18 is refused with an exit code other than 0 and writes nothing:
no large object, no file on the server or next to the database, no row. Endless queries
stop at ``--timeout`` and SIGTERM cancels them on the server. The attack matrix runs the
CLI in-process (the code path of the ``cellpipe`` command); what depends on the process
itself (time limits, signals, exit codes of a missing file) runs ``cellpipe`` as a
subprocess.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
from db_fixtures import POSTGRES_ADMIN_URL, make_cells
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cellpipe import db
from cellpipe.cli import app
from cellpipe.cli import commands_db  # noqa: F401  (registers the commands)

runner = CliRunner()
DAY = dt.date(2024, 6, 1)
N_CELLS = 12
ENDLESS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
ENDLESS_ROWS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def store_cells(engine) -> None:
    image_id = db.register_image(engine, sha("img"), "/img.tif", size_bytes=1, batch_date=DAY)
    model_id = db.register_model(engine, "unet", "1", file_hash=sha("w"), location="/m")
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, make_cells(N_CELLS))


def query(url: str, sql: str, *options: str):
    return runner.invoke(app, ["query", sql, "--db", url, *options])


def cellpipe(*args: str, **popen) -> subprocess.Popen:
    """Start the `cellpipe` command line as a new process, with the default signal handlers.

    A shell that runs the tests in the background leaves SIGINT ignored, and the child
    would inherit that (cellpipe keeps an ignored signal ignored, as nohup asks).
    """
    return subprocess.Popen([sys.executable, "-m", "cellpipe.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals, **popen)


def _default_signals() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


def admin_conninfo(database: str | None = None) -> str:
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    return (url.set(database=database) if database else url).render_as_string(hide_password=False)


@contextlib.contextmanager
def admin(url: str | None = None) -> Iterator[psycopg.Connection]:
    """Yield a superuser connection (autocommit) to the database of ``url``, or the admin database."""
    with psycopg.connect(admin_conninfo(make_url(url).database if url else None), autocommit=True) as connection:
        yield connection


def let_reader_log_in() -> None:
    """ALTER ROLE cellpipe_reader LOGIN unless it can already log in (roles are the server's, not a database's)."""
    with admin() as connection:
        for _attempt in range(5):
            if connection.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                                  [db.READER_ROLE]).fetchone()[0]:
                return
            try:
                connection.execute(f"ALTER ROLE {db.READER_ROLE} LOGIN")
            except psycopg.errors.InternalError:  # "tuple concurrently updated": another test process
                continue


def user_url(url: str, user: str) -> str:
    return make_url(url).set(username=user, password=None).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_superuser_url(postgres_databases) -> str:
    """Return the URL, as the test server's superuser, of a database with 12 cells; the reader role can log in."""
    url = postgres_databases()
    engine = db.open_database(url)
    store_cells(engine)
    engine.dispose()
    let_reader_log_in()
    return url


@pytest.fixture(scope="session")
def postgres_owner() -> Iterator[dict[str, str]]:
    """Yield URLs of a database owned (and migrated) by a non-superuser member of cellpipe_reader.

    ``owner``: that role; ``outsider``: a role that may read the tables but is not a
    member of cellpipe_reader. Both roles and the database are dropped at the end.
    """
    token = secrets.token_hex(5)
    owner, outsider, name = f"cellpipe_test_owner_{token}", f"cellpipe_test_outsider_{token}", f"cellpipe_test_{token}"
    with admin() as connection:
        connection.execute(f"CREATE ROLE {owner} LOGIN")
        connection.execute(f"CREATE ROLE {outsider} LOGIN")
        connection.execute(f'CREATE DATABASE "{name}" OWNER {owner}')
        # CREATEROLE would let the migration do this itself on PostgreSQL <= 15 only.
        connection.execute(f"GRANT {db.READER_ROLE} TO {owner}")
    owner_url = user_url(make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False), owner)
    try:
        engine = db.open_database(owner_url)
        store_cells(engine)
        engine.dispose()
        with admin(owner_url) as connection:
            connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {outsider}")
        yield {"owner": owner_url, "outsider": user_url(owner_url, outsider), "owner_name": owner,
               "outsider_name": outsider}
    finally:
        with admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f"DROP ROLE IF EXISTS {outsider}")
            connection.execute(f"DROP ROLE IF EXISTS {owner}")


@pytest.fixture(params=["superuser", "owner", "reader"])
def postgres_url(request) -> str:
    """Return a URL of a database with 12 cells, logging in as a superuser, as the owner, or as cellpipe_reader."""
    if request.param == "owner":
        return request.getfixturevalue("postgres_owner")["owner"]
    url = request.getfixturevalue("postgres_superuser_url")
    return url if request.param == "superuser" else user_url(url, db.READER_ROLE)


@pytest.fixture
def server_secret() -> Iterator[tuple[Path, str]]:
    """Yield a file that the server can read (it runs on this machine) and the token in it."""
    token = secrets.token_hex(16)
    path = Path(f"/tmp/cellpipe-secret-{token[:8]}")
    path.write_text(token)
    path.chmod(0o644)
    yield path, token
    path.unlink()


@pytest.fixture
def server_target() -> Iterator[Path]:
    """Yield a path in /tmp where an attack would make the server write a file (it must not)."""
    path = Path(f"/tmp/cellpipe-attack-{secrets.token_hex(6)}")
    yield path
    if path.exists():
        path.unlink()


def postgres_state(url: str) -> dict[str, int]:
    """Return the large-object count and the row count of each table of the database of ``url``."""
    with admin(url) as connection:
        state = {"large objects": connection.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]}
        for table in ("images", "models", "runs", "segmentations", "cells"):
            state[table] = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return state


def backends_running(marker: str) -> list[tuple]:
    with admin() as connection:
        return connection.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            [f"%{marker}%"],
        ).fetchall()


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- PostgreSQL: attacks ------------------------------------------------------------------

POSTGRES_ATTACKS = {
    "lo_from_bytea": "SELECT lo_from_bytea(0, 'x')",
    "lo_create": "SELECT lo_create(0)",
    "lo_create through SQL run by a function": "SELECT query_to_xml('SELECT lo_create(0)', false, false, '')",
    "lo_import a server file": "SELECT lo_import('{secret}')",
    "lo_export to a server file": "SELECT lo_export(lo_from_bytea(0, 'x'), '{target}')",
    "COPY a query to a server file": "COPY (SELECT label FROM cells) TO '{target}'",
    "COPY a table to a server file": "COPY cells TO '{target}'",
    "pg_read_file": "SELECT pg_read_file('{secret}')",
    "pg_read_binary_file": "SELECT pg_read_binary_file('{secret}')",
    "ANALYZE": "ANALYZE cells",
    "NOTIFY": "NOTIFY cellpipe_attack",
    "DELETE": "DELETE FROM cells",
    "UPDATE RETURNING": "UPDATE cells SET area = 0 RETURNING label",
    "INSERT RETURNING": "INSERT INTO models (name, version, file_hash, location) VALUES ('x', '2', 'h', '/x') RETURNING id",
    "TRUNCATE": "TRUNCATE cells CASCADE",
    "CREATE TABLE AS": "CREATE TABLE stolen AS SELECT * FROM cells",
    "nextval": "SELECT nextval(pg_get_serial_sequence('models', 'id'))",
    "SELECT FOR UPDATE": "SELECT label FROM cells FOR UPDATE",
    "RESET ROLE": "RESET ROLE",
    "SET ROLE": "SET ROLE postgres",
    "SET SESSION AUTHORIZATION": "SET SESSION AUTHORIZATION postgres",
    "a second statement": "SELECT 1; RESET ROLE; SELECT lo_create(0)",
    "set_config role, then a file": (
        "SELECT set_config('role', 'postgres', true), query_to_xml('SELECT pg_read_file(''{secret}'')', false, false, '')"
    ),
    "set_config session_authorization, then a file": (
        "SELECT set_config('session_authorization', 'postgres', true), "
        "query_to_xml('SELECT pg_read_file(''{secret}'')', false, false, '')"
    ),
    "read-write transaction": "SELECT set_config('transaction_read_only', 'off', true), lo_create(0)",
    "COMMIT": "COMMIT",
}


@pytest.mark.parametrize("attack", list(POSTGRES_ATTACKS))
def test_a_postgresql_attack_is_refused_and_writes_nothing(postgres_url, attack, server_secret, server_target):
    secret, token = server_secret
    before = postgres_state(postgres_url)
    result = query(postgres_url, POSTGRES_ATTACKS[attack].format(secret=secret, target=server_target))
    assert result.exit_code != 0, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert token not in result.output
    assert not server_target.exists()
    assert postgres_state(postgres_url) == before


def test_analyze_is_not_run(postgres_superuser_url):
    def analyses() -> tuple:
        with admin(postgres_superuser_url) as connection:
            return connection.execute(
                "SELECT analyze_count, (SELECT count(*) FROM pg_stats WHERE tablename = 'images') "
                "FROM pg_stat_user_tables WHERE relname = 'images'"
            ).fetchone()

    before = analyses()
    assert query(postgres_superuser_url, "ANALYZE images").exit_code != 0
    assert analyses() == before


@pytest.mark.parametrize("sql", ["NOTIFY {channel}, 'x'", "SELECT pg_notify('{channel}', 'x')"])
def test_no_notification_is_ever_sent(postgres_superuser_url, sql):
    channel = f"cellpipe_attack_{secrets.token_hex(4)}"
    with psycopg.connect(admin_conninfo(make_url(postgres_superuser_url).database), autocommit=True) as listener:
        listener.execute(f"LISTEN {channel}")
        query(postgres_superuser_url, sql.format(channel=channel))  # pg_notify runs, and is rolled back
        assert list(listener.notifies(timeout=0.5)) == []


@pytest.mark.parametrize("login", ["superuser", "owner", "reader"])
def test_the_sql_runs_as_the_reader_role(postgres_url, login):
    result = query(postgres_url, "SELECT current_user AS who", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["who", db.READER_ROLE]
    assert "warning" not in result.output


def test_a_superuser_url_queries_on_a_session_of_the_reader_role(postgres_superuser_url):
    result = query(postgres_superuser_url, "SELECT session_user AS who", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["who", db.READER_ROLE]


def test_switching_back_from_the_reader_role_only_reaches_the_owner(postgres_owner, server_secret):
    # SET ROLE can be undone inside a statement: what it gives back is the owner's rights.
    secret, token = server_secret
    owner_url = postgres_owner["owner"]
    result = query(owner_url, "SELECT set_config('role', 'none', true) AS r, current_user AS who", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == f"none,{postgres_owner['owner_name']}"
    escaped = query(owner_url, f"SELECT set_config('role', 'none', true), pg_read_file('{secret}')")
    assert escaped.exit_code != 0 and token not in escaped.output


@pytest.fixture
def other_reader_role(postgres_superuser_url, monkeypatch) -> Iterator[str]:
    """Yield a new role that queries run as instead of cellpipe_reader (SELECT on the tables, NOLOGIN)."""
    role = f"cellpipe_test_reader_{secrets.token_hex(4)}"
    with admin(postgres_superuser_url) as connection:
        connection.execute(f"CREATE ROLE {role} NOLOGIN")
        connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    monkeypatch.setattr("cellpipe.db.postgres_isolation.READER_ROLE", role)
    yield role
    with admin(postgres_superuser_url) as connection:
        connection.execute(f"DROP OWNED BY {role}")
        connection.execute(f"DROP ROLE {role}")


def test_a_superuser_url_is_refused_when_the_reader_role_cannot_log_in(postgres_superuser_url, other_reader_role):
    result = query(postgres_superuser_url, "SELECT 1")
    assert result.exit_code == 1
    assert "superuser" in result.output and f"ALTER ROLE {other_reader_role} LOGIN" in result.output


def test_a_superuser_url_is_refused_when_logging_in_as_the_reader_fails(postgres_superuser_url, other_reader_role):
    with admin() as connection:
        connection.execute(f"ALTER ROLE {other_reader_role} LOGIN CONNECTION LIMIT 0")
    result = query(postgres_superuser_url, "SELECT 1")
    assert result.exit_code == 1
    assert f"connecting as {other_reader_role} instead failed" in result.output
    assert "too many connections" in result.output


def test_a_role_that_cannot_switch_queries_read_only_with_a_warning(postgres_owner):
    outsider_url, outsider = postgres_owner["outsider"], postgres_owner["outsider_name"]
    before = postgres_state(outsider_url)
    result = query(outsider_url, "SELECT current_user AS who, count(*) AS n FROM cells", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["who,n", f"{outsider},{N_CELLS}"]
    assert f"warning: the query runs as {outsider} in a read-only transaction" in result.stderr
    assert f"GRANT {db.READER_ROLE} TO {outsider}" in result.stderr
    assert query(outsider_url, "SELECT lo_create(0)").exit_code == 1
    assert query(outsider_url, "DELETE FROM cells").exit_code == 1
    assert postgres_state(outsider_url) == before


def test_db_upgrade_says_what_to_grant_when_the_role_cannot_switch(postgres_owner):
    engine = db.create_readonly_engine(postgres_owner["outsider"])
    try:
        with engine.connect() as connection:
            problem = db.reader_role_problem(connection)
    finally:
        engine.dispose()
    assert f"GRANT {db.READER_ROLE} TO {postgres_owner['outsider_name']}" in problem


def test_the_owner_that_migrated_needs_no_warning(postgres_owner):
    engine = db.create_readonly_engine(postgres_owner["owner"])
    try:
        with engine.connect() as connection:
            assert db.reader_role_problem(connection) is None
    finally:
        engine.dispose()


# --- SQLite: attacks ----------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """Return the URL of a SQLite file with 12 cells, alone in its folder."""
    url = f"sqlite:///{tmp_path / 'db' / 'cells.sqlite'}"
    engine = db.open_database(url)
    store_cells(engine)
    engine.dispose()
    return url


def sqlite_state(url: str) -> dict[str, object]:
    """Return the row counts, and the files of the database's folder with their bytes.

    The -shm file is SQLite's shared-memory index, which readers update; it is listed
    only. A reader of a WAL database creates the (empty) -wal and -shm files when missing,
    so the files are listed after the counts are read.
    """
    path = Path(make_url(url).database)
    with db.readonly_query(url, "SELECT (SELECT count(*) FROM cells), (SELECT count(*) FROM models)") as result:
        state: dict[str, object] = {"rows": list(result.rows)}
    state["files"] = sorted(p.name for p in path.parent.iterdir())
    for file in path.parent.iterdir():
        if not file.name.endswith("-shm"):
            state[file.name] = hashlib.sha256(file.read_bytes()).hexdigest()
    return state


SQLITE_ATTACKS = {
    "ATTACH a new file": "ATTACH DATABASE '{folder}/attached.sqlite' AS x",
    "ATTACH a URI": "ATTACH DATABASE 'file:{folder}/uri.sqlite?mode=rwc' AS x",
    "VACUUM INTO": "VACUUM INTO '{folder}/copy.sqlite'",
    "VACUUM": "VACUUM",
    "DETACH": "DETACH DATABASE main",
    "PRAGMA query_only off": "PRAGMA query_only = OFF",
    "PRAGMA journal_mode": "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version": "PRAGMA user_version = 7",
    "PRAGMA writable_schema": "PRAGMA writable_schema = ON",
    "PRAGMA wal_checkpoint": "PRAGMA wal_checkpoint(TRUNCATE)",
    "PRAGMA optimize": "PRAGMA optimize",
    "PRAGMA incremental_vacuum": "PRAGMA incremental_vacuum",
    "ANALYZE": "ANALYZE",
    "REINDEX": "REINDEX",
    "DELETE": "DELETE FROM cells",
    "UPDATE RETURNING": "UPDATE cells SET area = 0 RETURNING label",
    "INSERT RETURNING": "INSERT INTO models (name, version, file_hash, location) VALUES ('x', '2', 'h', '/x') RETURNING id",
    "CREATE TEMP TABLE": "CREATE TEMP TABLE scratch AS SELECT * FROM cells",
    "BEGIN": "BEGIN IMMEDIATE",
    "load_extension": "SELECT load_extension('{folder}/evil')",
    "a second statement": "SELECT 1; ATTACH DATABASE '{folder}/second.sqlite' AS x",
}


@pytest.mark.parametrize("attack", list(SQLITE_ATTACKS))
def test_a_sqlite_attack_is_refused_and_writes_nothing(sqlite_url, attack, tmp_path):
    folder = Path(make_url(sqlite_url).database).parent
    before = sqlite_state(sqlite_url)
    result = query(sqlite_url, SQLITE_ATTACKS[attack].format(folder=folder))
    assert result.exit_code != 0, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert sqlite_state(sqlite_url) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_a_refused_attach_names_what_was_refused(sqlite_url, tmp_path):
    result = query(sqlite_url, f"ATTACH DATABASE '{tmp_path}/x.sqlite' AS x")
    assert result.exit_code == 1
    assert "read-only" in result.output and "x.sqlite" in result.output


@pytest.mark.parametrize(
    "sql",
    ["PRAGMA table_info(cells)", "PRAGMA user_version", "SELECT count(*) FROM json_each('[1, 2, 3]')",
     "SELECT name FROM pragma_table_info('cells')", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r "
     "WHERE n < 5) SELECT count(*) FROM r"],
)
def test_reading_statements_still_run_on_sqlite(sqlite_url, sql):
    result = query(sqlite_url, sql)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["query", "export"])
def test_a_missing_sqlite_file_exits_2_and_is_not_created(tmp_path, command):
    path = tmp_path / "mistyped" / "cells.sqlite"
    args = ["query", "SELECT 1"] if command == "query" else ["export", "cells", "--out", str(tmp_path / "x.csv")]
    process = cellpipe(*args, "--db", f"sqlite:///{path}")
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert f"no database at {path}" in err and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == []


# --- time limits and signals --------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_superuser_url")


# `cellpipe` once its modules are imported (a second or two, longer on a busy machine):
# the time it reports is that of the command itself.
TIMED_CELLPIPE = """
import sys, time
from cellpipe.cli import _register_commands, app
_register_commands()
started = time.monotonic()
try:
    app(sys.argv[1:])
finally:
    sys.stderr.write("SECONDS=%.3f\\n" % (time.monotonic() - started))
"""


def test_an_endless_query_stops_at_its_timeout(any_url):
    marker = f"cellpipe-timeout-{secrets.token_hex(4)}"
    process = subprocess.Popen(
        [sys.executable, "-c", TIMED_CELLPIPE, "query", f"{ENDLESS} /* {marker} */", "--timeout", "5", "--db", any_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _out, err = process.communicate(timeout=60)
    err, seconds = err.rsplit("SECONDS=", 1)
    assert process.returncode == 3, err
    assert 5 <= float(seconds) < 10, seconds
    assert err.strip().splitlines() == [
        "error: the query ran longer than its time limit of 5 s and was cancelled; nothing was changed "
        "(raise the limit with --timeout SECONDS or the query_timeout setting, 0 for none)"
    ]
    if any_url.startswith("postgresql"):
        assert wait_until(lambda: not backends_running(marker), 2.0), backends_running(marker)


def test_a_timeout_stops_the_query_in_process(any_url):
    started = time.monotonic()
    with pytest.raises(db.QueryTimeout, match="time limit of 0.5 s"):
        with db.readonly_query(any_url, ENDLESS, timeout_s=0.5) as result:
            list(result.rows)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cancels_the_query_on_the_server(postgres_superuser_url, signal_number):
    marker = f"cellpipe-signal-{secrets.token_hex(4)}"
    process = cellpipe("query", f"{ENDLESS} /* {marker} */", "--timeout", "60", "--db", postgres_superuser_url)
    try:
        assert wait_until(lambda: any(state == "active" for _pid, state, _q in backends_running(marker)), 20.0)
        process.send_signal(signal_number)
        _out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + signal_number, err
    name = signal.Signals(signal_number).name
    assert f"error: interrupted by {name}; the query was cancelled on the server" in err
    assert wait_until(lambda: not backends_running(marker), 2.0), backends_running(marker)


def test_sigterm_stops_a_sqlite_query(sqlite_url):
    process = cellpipe("query", ENDLESS_ROWS, "--format", "csv", "--timeout", "60", "--db", sqlite_url)
    try:
        assert process.stdout.readline().strip() == "n"  # the query is running
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err


def test_an_export_stops_at_its_timeout_and_leaves_no_file(postgres_superuser_url, tmp_path):
    out = tmp_path / "cells.csv"
    with admin(postgres_superuser_url) as locker:
        with locker.transaction():
            locker.execute("LOCK TABLE cells IN ACCESS EXCLUSIVE MODE")  # the export waits for it
            started = time.monotonic()
            result = runner.invoke(app, ["export", "cells", "--out", str(out), "--timeout", "1",
                                         "--db", postgres_superuser_url])
            elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.output
    assert "time limit of 1 s" in result.output
    assert elapsed < 5
    assert list(tmp_path.iterdir()) == []


def test_the_timeout_flag_wins_over_the_setting(sqlite_url, monkeypatch):
    monkeypatch.setenv("CELLPIPE_QUERY_TIMEOUT", "60")
    result = query(sqlite_url, ENDLESS, "--timeout", "0.5")
    assert result.exit_code == 3
    assert "time limit of 0.5 s" in result.output
