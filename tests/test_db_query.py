"""``cellpipe query``: read-only by construction, clear errors, streamed output."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from db_fixtures import POSTGRES_ADMIN_URL, make_cells
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cellpipe import db
from cellpipe.cli import app
from cellpipe.cli import commands_db  # noqa: F401  (registers the commands)
from cellpipe.db import Cell

runner = CliRunner()
DAY = dt.date(2024, 6, 1)
ENDLESS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="session")
def reader_login(postgres_session_url) -> None:
    """Give cellpipe_reader (created by the migrations) a login on the test server.

    The tests connect as the server's superuser, and `cellpipe query` then runs the SQL
    on a connection of its own as cellpipe_reader (the test server trusts local logins).
    """
    let_reader_log_in()


@pytest.fixture(autouse=True)
def _reader_login_on_postgresql(request):
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and "postgresql" in callspec.params.values():
        request.getfixturevalue("reader_login")


def let_reader_log_in() -> None:
    """ALTER ROLE cellpipe_reader LOGIN unless it can already log in (roles are the server's, not a database's)."""
    conninfo = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        for _attempt in range(5):
            if admin.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [db.READER_ROLE]).fetchone()[0]:
                return
            try:
                admin.execute(f"ALTER ROLE {db.READER_ROLE} LOGIN")
            except psycopg.errors.InternalError:  # "tuple concurrently updated": another test process
                continue


@pytest.fixture
def stored(engine):
    """Store one image with 12 cells; return the cells."""
    image_id = db.register_image(engine, sha("img"), "/img.tif", size_bytes=1, batch_date=DAY)
    model_id = db.register_model(engine, "unet", "1", file_hash=sha("w"), location="/m")
    cells = make_cells(12)
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, cells)
    return cells


def cell_count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Cell)).scalar_one()


def query(url: str, sql: str, *options: str):
    return runner.invoke(app, ["query", sql, "--db", url, *options])


def test_readonly_query_streams_the_rows_of_a_select(db_url, engine, stored):
    with db.readonly_query(db_url, "SELECT label, area FROM cells ORDER BY label", batch_size=5) as result:
        assert result.columns == ["label", "area"]
        assert list(result.rows) == list(zip(stored["label"].tolist(), stored["area"].tolist()))


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM cells",
        "UPDATE cells SET area = 0",
        "INSERT INTO cells (segmentation_id, label) VALUES (1, 999)",
        "DROP TABLE cells",
        "CREATE TABLE scratch (x INTEGER)",
    ],
)
def test_a_write_statement_fails_and_changes_nothing(db_url, engine, stored, sql):
    result = query(db_url, sql)
    assert result.exit_code != 0
    assert "read-only" in result.output
    assert cell_count(engine) == 12


def test_a_second_statement_after_a_select_is_refused(db_url, engine, stored):
    result = query(db_url, "SELECT 1; DELETE FROM cells")
    assert result.exit_code == 1
    assert cell_count(engine) == 12


def test_bad_sql_prints_the_database_error_without_a_traceback(db_url, stored):
    result = query(db_url, "SELEC label FROM cells")
    assert result.exit_code == 1
    assert "error:" in result.output and "SELEC" in result.output
    assert "Traceback" not in result.output


def test_a_missing_table_is_named_in_the_error(db_url):
    result = query(db_url, "SELECT * FROM no_such_table")
    assert result.exit_code == 1
    assert "no_such_table" in result.output


def test_csv_output_has_a_header_and_one_line_per_row(db_url, stored):
    result = query(db_url, "SELECT label, x FROM cells ORDER BY label", "--format", "csv")
    assert result.exit_code == 0, result.output
    parsed = list(csv.reader(io.StringIO(result.stdout)))
    assert parsed[0] == ["label", "x"]
    assert [(int(label), float(x)) for label, x in parsed[1:]] == list(
        zip(stored["label"].tolist(), stored["centroid-1"].tolist())
    )


def test_json_output_is_an_array_of_objects(db_url, stored):
    result = query(db_url, "SELECT label, batch_date FROM cell_metrics ORDER BY label", "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records[0] == {"label": 1, "batch_date": "2024-06-01"}
    assert len(records) == 12


def test_table_output_aligns_columns_and_counts_rows(db_url, stored):
    result = query(db_url, "SELECT label, area FROM cells ORDER BY label LIMIT 3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["label", "area"]
    assert lines[-1] == "(3 rows)"


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "mistyped" / "cells.sqlite"
    result = query(f"sqlite:///{path}", "SELECT count(*) FROM cells")
    assert result.exit_code == 2
    assert f"no database at {path}" in result.output
    assert not path.exists() and not path.parent.exists()


def test_a_database_without_cellpipe_tables_is_an_error_and_is_left_empty(empty_db_url):
    if empty_db_url.startswith("sqlite"):
        path = Path(make_url(empty_db_url).database)
        path.parent.mkdir(parents=True)
        sqlite3.connect(path).close()  # an empty file
    result = query(empty_db_url, "SELECT count(*) AS n FROM cells", "--format", "json")
    assert result.exit_code == 2
    assert "no cellpipe tables" in result.output and "cellpipe db upgrade" in result.output
    engine = db.create_readonly_engine(empty_db_url)
    try:
        assert db.schema_status(engine).is_empty
    finally:
        engine.dispose()


def test_the_timeout_setting_applies_without_the_flag(db_url, monkeypatch):
    monkeypatch.setenv("CELLPIPE_QUERY_TIMEOUT", "0.5")
    result = query(db_url, ENDLESS)
    assert result.exit_code == 3, result.output
    assert "time limit of 0.5 s" in result.output


def test_a_negative_timeout_is_refused(db_url):
    result = query(db_url, "SELECT 1", "--timeout", "-1")
    assert result.exit_code == 2


# VmHWM is the peak resident size of this process's own address space. ru_maxrss is not
# usable here: it keeps the peak of the forked parent (pytest, with TensorFlow loaded)
# across exec, so every child would seem to use a gigabyte.
MEASURE_PEAK_MEMORY = """
import re, sys
from cellpipe.cli import app
from cellpipe.cli import commands_db
try:
    app(sys.argv[1:])
finally:
    status = open("/proc/self/status").read()
    sys.stderr.write("PEAK_RSS_KB=%s\\n" % re.search(r"VmHWM:\\s+(\\d+)", status).group(1))
"""


def peak_memory_mb(url: str, sql: str) -> float:
    """Return the peak resident memory of `cellpipe query SQL --format csv` in a new process."""
    completed = subprocess.run(
        [sys.executable, "-c", MEASURE_PEAK_MEMORY, "query", sql, "--db", url, "--format", "csv"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return int(completed.stderr.rsplit("PEAK_RSS_KB=", 1)[1].split()[0]) / 1024


@pytest.mark.slow
def test_a_query_over_a_million_cells_streams_in_bounded_memory(db_url, engine):
    model_id = db.register_model(engine, "unet", "1", file_hash=sha("w"), location="/m")
    cells = make_cells(100_000)
    for index in range(10):
        image_id = db.register_image(engine, sha(f"image {index}"), f"/{index}.tif", size_bytes=1, batch_date=DAY)
        db.store_segmentation(engine, image_id, model_id, {}, cells)
    assert cell_count(engine) == 1_000_000

    baseline = peak_memory_mb(db_url, "SELECT 1")
    streaming = peak_memory_mb(db_url, "SELECT segmentation_id, label, x, y, area FROM cells")
    # Holding the million rows as Python tuples would take about 250 MB more.
    assert streaming - baseline < 100, (baseline, streaming)
    assert streaming < 400, (baseline, streaming)
