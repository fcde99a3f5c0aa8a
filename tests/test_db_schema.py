"""Migrations: Alembic creates and upgrades the schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from typer.testing import CliRunner

from cellpipe.cli import app
from cellpipe.cli import commands_db  # noqa: F401  (registers the commands)
from cellpipe.db import (
    SchemaError,
    create_engine,
    ensure_schema,
    head_revision,
    open_database,
    schema_status,
    upgrade,
)
from cellpipe.db.models import TABLE_NAMES, Base
from cellpipe.db.schema import downgrade
from cellpipe.db.views import VIEW_NAMES

runner = CliRunner()


def test_first_use_upgrades_an_empty_database_to_head(empty_db_url):
    engine = open_database(empty_db_url)
    try:
        status = schema_status(engine)
        assert status.current == head_revision()
        assert set(TABLE_NAMES) <= set(inspect(engine).get_table_names())
        assert set(VIEW_NAMES) <= set(inspect(engine).get_view_names())
    finally:
        engine.dispose()


def test_status_of_an_empty_database_has_no_revision(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    assert status.current is None and status.is_empty and not status.is_current


def test_upgrading_a_database_at_head_changes_nothing(engine):
    before, after = upgrade(engine)
    assert before.current == after.current == head_revision()


def test_a_database_behind_head_is_not_upgraded_silently(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        upgrade(engine, "0001")
        with pytest.raises(SchemaError, match="cellpipe db upgrade"):
            ensure_schema(engine)
        assert schema_status(engine).current == "0001"
    finally:
        engine.dispose()


def test_db_upgrade_command_brings_an_old_database_to_head(empty_db_url, tmp_path, monkeypatch):
    engine = create_engine(empty_db_url)
    try:
        upgrade(engine, "0001")
        monkeypatch.chdir(tmp_path)  # migrations are found from any working directory
        result = runner.invoke(app, ["db", "upgrade", "--db", empty_db_url])
        assert result.exit_code == 0, result.output
        assert "from 0001 to" in result.output
        assert schema_status(engine).current == head_revision()
    finally:
        engine.dispose()


def test_db_status_command_shows_current_and_head_revisions(db_url):
    result = runner.invoke(app, ["db", "status", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert f"current revision: {head_revision()}" in result.output
    assert f"head revision:    {head_revision()}" in result.output
    assert "up to date" in result.output


def test_db_status_command_reports_a_database_not_created_yet(tmp_path):
    url = f"sqlite:///{tmp_path / 'not-yet.sqlite'}"
    result = runner.invoke(app, ["db", "status", "--db", url])
    assert result.exit_code == 0, result.output
    assert "current revision: none" in result.output
    assert not (tmp_path / "not-yet.sqlite").exists()


def test_migrations_downgrade_to_an_empty_database(engine):
    downgrade(engine, "base")
    remaining = set(inspect(engine).get_table_names()) | set(inspect(engine).get_view_names())
    assert remaining & (set(TABLE_NAMES) | set(VIEW_NAMES)) == set()
    assert schema_status(engine).current is None


def test_migrated_schema_matches_the_models(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
