"""Shared pytest fixtures. Database fixtures live in db_fixtures.py (SQLite + PostgreSQL)."""

from db_fixtures import (  # noqa: F401
    db_url,
    empty_db_url,
    engine,
    postgres_databases,
    postgres_session_url,
)
