"""Shared pytest fixtures. Database fixtures live in db_fixtures.py (SQLite + PostgreSQL)."""

import os
import shutil
import tempfile

from db_fixtures import (  # noqa: F401
    db_url,
    empty_db_url,
    engine,
    postgres_databases,
    postgres_session_url,
)

_CACHE_HOME = tempfile.mkdtemp(prefix="cellpipe-test-cache-")


def pytest_configure(config):
    # Caches (the blob hash cache) go to a folder of this test session, never the
    # user's own; set before any test so `cellpipe run` subprocesses inherit it too.
    os.environ["XDG_CACHE_HOME"] = _CACHE_HOME


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE_HOME, ignore_errors=True)
