"""Database fixtures: every DB test runs on SQLite and on a real PostgreSQL server.

PostgreSQL: each test session creates its own databases with random names on the
server at ``CELLPIPE_TEST_POSTGRES_URL`` (default: the local server, user postgres)
and drops them at the end. When the server cannot be reached the PostgreSQL tests
FAIL, because CI has PostgreSQL (``.ci/run`` starts it); set
``CELLPIPE_TEST_SKIP_POSTGRES=1`` to skip them on purpose on a machine without one.
"""

from __future__ import annotations

import os
import secrets
from typing import Callable, Iterator

import numpy as np
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from cellpipe.db import open_database
from cellpipe.db.models import Base

POSTGRES_ADMIN_URL = os.environ.get(
    "CELLPIPE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SKIP_POSTGRES = os.environ.get("CELLPIPE_TEST_SKIP_POSTGRES", "") not in ("", "0")
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Yield a function that creates an empty database on the test server, returning its URL."""
    if SKIP_POSTGRES:
        pytest.skip("CELLPIPE_TEST_SKIP_POSTGRES is set: PostgreSQL tests skipped on request")
    import psycopg

    admin_url = make_url(POSTGRES_ADMIN_URL)
    conninfo = admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {admin_url.render_as_string(hide_password=True)}: "
            f"{error}\nStart it (.ci/run does), point CELLPIPE_TEST_POSTGRES_URL at a server, "
            "or set CELLPIPE_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL tests.",
            pytrace=False,
        )
    created: list[str] = []

    def create() -> str:
        name = f"cellpipe_test_{secrets.token_hex(6)}"
        admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return admin_url.set(database=name).render_as_string(hide_password=False)

    yield create
    for name in created:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def postgres_session_url(postgres_databases: Callable[[], str]) -> str:
    """Return the URL of this session's PostgreSQL database, upgraded to head."""
    url = postgres_databases()
    open_database(url).dispose()
    return url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """Return the URL of a database at head with no rows, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cells.sqlite'}"
        open_database(url).dispose()
        yield url
        return
    url = request.getfixturevalue("postgres_session_url")
    yield url
    # Emptied after each test rather than before: the session's database starts empty,
    # and discarding big tables here spares the checkpoint of DROP DATABASE writing them.
    _truncate(url)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Return the URL of a database that does not have cellpipe's schema yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'cells.sqlite'}"
    return request.getfixturevalue("postgres_databases")()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """Return a writable engine on ``db_url``."""
    engine = open_database(db_url)
    yield engine
    engine.dispose()


def make_cells(n_cells: int, seed: int = 0, *, intensity: float | None = None) -> dict[str, np.ndarray]:
    """Return per-cell statistics shaped like ``cellpipe.measure.regionprops_table``'s."""
    rng = np.random.default_rng(seed)
    area = rng.integers(20, 2_000, n_cells)
    row, col = rng.uniform(0, 1024, n_cells), rng.uniform(0, 1024, n_cells)
    major = rng.uniform(5, 60, n_cells)
    minor = major * rng.uniform(0.3, 1.0, n_cells)
    cells = {
        "label": np.arange(1, n_cells + 1, dtype=np.int32),
        "area": area,
        "centroid-0": row,
        "centroid-1": col,
        "bbox-0": np.floor(row).astype(int) - 5,
        "bbox-1": np.floor(col).astype(int) - 5,
        "bbox-2": np.floor(row).astype(int) + 5,
        "bbox-3": np.floor(col).astype(int) + 5,
        "axis_major_length": major,
        "axis_minor_length": minor,
        "eccentricity": np.sqrt(1 - (minor / major) ** 2),
        "orientation": rng.uniform(-np.pi / 2, np.pi / 2, n_cells),
        "equivalent_diameter_area": np.sqrt(4 * area / np.pi),
        "perimeter": rng.uniform(10, 200, n_cells),
        "touches_border": rng.random(n_cells) < 0.1,
    }
    if intensity is not None:
        for name in ("intensity_mean", "intensity_min", "intensity_max"):
            cells[name] = np.full(n_cells, float(intensity))
    return cells


def _truncate(url: str) -> None:
    engine = open_database(url)
    try:
        with engine.begin() as connection:
            tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
