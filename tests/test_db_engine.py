"""Where the database lives and how it is opened."""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy import text
from typer.testing import CliRunner

from cellpipe import db
from cellpipe.cli import app
from cellpipe.cli import commands_db  # noqa: F401  (registers the commands)
from cellpipe.settings import Settings

runner = CliRunner()


def test_sqlite_databases_use_wal_and_a_busy_timeout(tmp_path):
    engine = db.open_database(f"sqlite:///{tmp_path / 'cells.sqlite'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() > 0
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()


def test_postgresql_writers_commit_without_waiting_for_the_wal_flush(postgres_session_url):
    # The PostgreSQL counterpart of SQLite's synchronous=NORMAL: safe because every write
    # is an idempotent upsert that the next run redoes if a server crash forgets it.
    writer = db.create_engine(postgres_session_url)
    try:
        with writer.connect() as connection:
            assert connection.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "off"
            server_default = connection.exec_driver_sql(
                "SELECT boot_val FROM pg_settings WHERE name = 'synchronous_commit'"
            ).scalar_one()
    finally:
        writer.dispose()
    assert server_default == "on"


def test_the_folder_of_a_new_sqlite_file_is_created(tmp_path):
    path = tmp_path / "nested" / "folder" / "cells.sqlite"
    db.open_database(f"sqlite:///{path}").dispose()
    assert path.is_file()


def test_a_readonly_engine_cannot_write(db_url):
    engine = db.create_readonly_engine(db_url)
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            with engine.begin() as connection:
                connection.execute(text("DELETE FROM images"))
    finally:
        engine.dispose()


def test_unsupported_databases_are_refused_with_a_clear_message():
    with pytest.raises(db.DatabaseError, match="SQLite and PostgreSQL"):
        db.create_engine("mysql://user@localhost/cells")


def test_the_default_database_is_a_sqlite_file_in_the_user_data_directory():
    url = Settings.load(config_path="/nonexistent/luigi.cfg", environ={}).db_url
    assert url.startswith("sqlite:///") and url.endswith("cellpipe.sqlite")


def test_the_db_flag_wins_over_the_environment_variable(tmp_path):
    from_env = f"sqlite:///{tmp_path / 'env.sqlite'}"
    from_flag = f"sqlite:///{tmp_path / 'flag.sqlite'}"
    result = runner.invoke(app, ["db", "upgrade", "--db", from_flag], env={"CELLPIPE_DB_URL": from_env})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "flag.sqlite").exists() and not (tmp_path / "env.sqlite").exists()


def test_the_environment_variable_names_the_database_without_a_flag(tmp_path):
    from_env = f"sqlite:///{tmp_path / 'env.sqlite'}"
    result = runner.invoke(app, ["db", "upgrade"], env={"CELLPIPE_DB_URL": from_env})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.sqlite").exists()


def test_an_unreachable_server_is_reported_without_a_traceback():
    result = runner.invoke(app, ["query", "SELECT 1", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none"])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
