"""``cellpipe db upgrade|status``, ``cellpipe query`` and ``cellpipe export``."""

from __future__ import annotations

import datetime as dt
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from sqlalchemy.exc import SQLAlchemyError

from cellpipe.cli import app, db_app
from cellpipe.settings import Settings

if TYPE_CHECKING:
    from cellpipe.db import SchemaStatus

DB_OPTION = typer.Option(
    None,
    "--db",
    help="Database URL (sqlite:///PATH or postgresql+psycopg://user@host/db). "
    "Default: CELLPIPE_DB_URL, then db_url in luigi.cfg (section cellpipe), then a SQLite file "
    "in the user's data directory.",
)
TIMEOUT_OPTION = typer.Option(
    None,
    "--timeout",
    min=0,
    metavar="SECONDS",
    help="Cancel the query after this many seconds, on the server too (0: no limit). "
    "Default: CELLPIPE_QUERY_TIMEOUT, then query_timeout in luigi.cfg, then 300.",
)
DATE_FORMATS = ["%Y-%m-%d"]

# Exit codes of `cellpipe query` and `cellpipe export` (also in their --help):
EXIT_ERROR = 1  # the database refused the statement or could not be reached
EXIT_NO_DATABASE = 2  # no database at the path, or no cellpipe tables in it (also: bad options)
EXIT_TIMEOUT = 3  # ran past --timeout and was cancelled
EXIT_SIGNAL_BASE = 128  # + the signal's number (130 SIGINT, 143 SIGTERM), cancelled first
READ_EXIT_CODES = (
    "Exit codes: 0 done; 1 the database refused the statement or is unreachable; 2 no database "
    "at the path, or no cellpipe tables in it; 3 ran past --timeout (cancelled); 130/143 "
    "interrupted by SIGINT/SIGTERM (cancelled on the server first)."
)


class QueryFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class ExportWhat(str, Enum):
    cells = "cells"
    images = "images"


class ExportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


def _database_url(db: Optional[str]) -> str:
    return Settings.load({"db_url": db}).db_url


def _fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _read_failure(error: Exception) -> typer.Exit:
    """Return the exit of `cellpipe query` or `export` for ``error``, its message printed."""
    from cellpipe import db as cell_db

    if isinstance(error, SQLAlchemyError):
        return _fail(_database_message(error))
    if isinstance(error, cell_db.QueryInterrupted):
        return _fail(str(error), EXIT_SIGNAL_BASE + error.signal_number)
    if isinstance(error, cell_db.QueryTimeout):
        return _fail(str(error), EXIT_TIMEOUT)
    if isinstance(error, cell_db.NoDatabaseError):
        return _fail(str(error), EXIT_NO_DATABASE)
    return _fail(str(error))


def _database_message(error: SQLAlchemyError) -> str:
    # The driver's own message, without SQLAlchemy's "(Background on this error…)" lines.
    original = getattr(error, "orig", None)
    return str(original if original is not None else error).strip()


@db_app.command("upgrade")
def upgrade_command(
    db: Optional[str] = DB_OPTION,
    revision: str = typer.Option("head", help="Alembic revision to upgrade to."),
) -> None:
    """Create or upgrade the database schema to the newest revision."""
    from cellpipe import db as cell_db

    url = _database_url(db)
    try:
        engine = cell_db.create_engine(url)
        try:
            before, after = cell_db.upgrade(engine, revision)
        finally:
            engine.dispose()
    except (cell_db.DatabaseError, SQLAlchemyError) as error:
        message = _database_message(error) if isinstance(error, SQLAlchemyError) else str(error)
        raise _fail(message) from None
    if before.current == after.current:
        typer.echo(f"{_shown(url)} is already at revision {after.current} (head {after.head})")
    else:
        typer.echo(f"{_shown(url)} upgraded from {before.current or 'empty'} to {after.current}")
    _warn_about_reader_role(url)


def _warn_about_reader_role(url: str) -> None:
    from cellpipe import db as cell_db

    if cell_db.engine.is_sqlite(url):  # no roles
        return
    engine = cell_db.create_readonly_engine(url)
    try:
        with engine.connect() as connection:
            problem = cell_db.reader_role_problem(connection)
    except SQLAlchemyError as error:
        problem = f"cannot check role {cell_db.READER_ROLE}: {_database_message(error)}"
    finally:
        engine.dispose()
    if problem:
        typer.echo(f"warning: {problem}", err=True)


@db_app.command("status")
def status_command(db: Optional[str] = DB_OPTION) -> None:
    """Show the database's schema revision against the newest one, and its row counts."""
    from cellpipe import db as cell_db

    url = _database_url(db)
    typer.echo(f"database:         {_shown(url)}")
    try:
        engine = cell_db.create_readonly_engine(url)
    except cell_db.DatabaseError:
        typer.echo("current revision: none (no database file yet; created on first use)")
        typer.echo(f"head revision:    {cell_db.head_revision()}")
        return
    try:
        status = cell_db.schema_status(engine)
        typer.echo(f"current revision: {status.current or 'none'}")
        typer.echo(f"head revision:    {status.head}")
        if status.is_current:
            typer.echo("up to date")
            with engine.connect() as connection:
                for table in cell_db.Base.metadata.sorted_tables:
                    count = connection.exec_driver_sql(f"SELECT count(*) FROM {table.name}").scalar_one()
                    typer.echo(f"  {table.name:<14} {count:>12,} rows")
                problem = cell_db.reader_role_problem(connection)
            if problem:
                typer.echo(f"warning: {problem}", err=True)
        elif status.is_empty:
            typer.echo("empty: the schema is created on first use, or by `cellpipe db upgrade`")
        else:
            typer.echo("behind: run `cellpipe db upgrade` (back the database up first)")
    except SQLAlchemyError as error:
        raise _fail(_database_message(error)) from None
    finally:
        engine.dispose()


@app.command("query", epilog=READ_EXIT_CODES)
def query_command(
    sql: str = typer.Argument(..., help='One SQL statement, e.g. "SELECT * FROM image_summary".'),
    format: QueryFormat = typer.Option(QueryFormat.table, "--format", "-f", help="Output format."),
    timeout: Optional[float] = TIMEOUT_OPTION,
    db: Optional[str] = DB_OPTION,
) -> None:
    """Run read-only SQL on the cell database and print the rows as they arrive.

    Query the views cell_metrics (one row per cell, latest result per image and model)
    and image_summary (cell count and area/diameter statistics per image). Statements
    that would change the database fail and change nothing; a database that does not
    exist is never created. On PostgreSQL the SQL runs as role cellpipe_reader.
    """
    from cellpipe import db as cell_db
    from cellpipe.db.output import write_rows

    settings = _read_settings(db, timeout)
    try:
        _warn_if_behind(cell_db.check_readable(settings.db_url))
        with cell_db.readonly_query(settings.db_url, sql, timeout_s=settings.query_timeout) as result:
            if result.warning:
                typer.echo(f"warning: {result.warning}", err=True)
            write_rows(result.columns, result.rows, sys.stdout, format=format.value)
    except (cell_db.DatabaseError, SQLAlchemyError) as error:
        raise _read_failure(error) from None
    except BrokenPipeError:  # e.g. `cellpipe query … | head`
        sys.stderr.close()
        raise typer.Exit(code=0) from None


@app.command("export", epilog=READ_EXIT_CODES)
def export_command(
    what: ExportWhat = typer.Argument(..., help="cells (view cell_metrics) or images (view image_summary)."),
    out: Path = typer.Option(..., "--out", "-o", help="File to write."),
    format: ExportFormat = typer.Option(ExportFormat.csv, "--format", "-f", help="File format."),
    since: Optional[dt.datetime] = typer.Option(None, formats=DATE_FORMATS, help="First batch date (YYYY-MM-DD)."),
    until: Optional[dt.datetime] = typer.Option(None, formats=DATE_FORMATS, help="Last batch date (YYYY-MM-DD)."),
    timeout: Optional[float] = TIMEOUT_OPTION,
    db: Optional[str] = DB_OPTION,
) -> None:
    """Export cells or images to CSV or Parquet, streaming, optionally by batch date."""
    from cellpipe import db as cell_db

    settings = _read_settings(db, timeout)
    try:
        _warn_if_behind(cell_db.check_readable(settings.db_url))
        count = cell_db.export(
            settings.db_url,
            what.value,
            out,
            format=format.value,
            since=since.date() if since else None,
            until=until.date() if until else None,
            timeout_s=settings.query_timeout,
        )
    except (cell_db.DatabaseError, SQLAlchemyError, ValueError, OSError) as error:
        raise _read_failure(error) from None
    typer.echo(f"wrote {count:,} {what.value} to {out}")


def _read_settings(db: Optional[str], timeout: Optional[float]) -> Settings:
    try:
        settings = Settings.load({"db_url": db, "query_timeout": timeout})
    except ValueError as error:
        raise _fail(str(error), EXIT_NO_DATABASE) from None
    if settings.query_timeout < 0:
        raise _fail(f"query_timeout must be 0 (no limit) or more seconds, not {settings.query_timeout:g}",
                    EXIT_NO_DATABASE)
    return settings


def _warn_if_behind(status: SchemaStatus) -> None:
    if not status.is_current:
        typer.echo(
            f"warning: schema at revision {status.current}, head is {status.head}; run `cellpipe db upgrade`",
            err=True,
        )


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return url
