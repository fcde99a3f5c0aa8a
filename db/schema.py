"""Schema revisions: Alembic migrations run from Python, from any working directory.

Alembic is the only way cellpipe creates or changes the schema. The migration scripts
ship inside the package (``cellpipe/db/migrations``); :func:`alembic_config` points
Alembic at them, so ``cellpipe db upgrade`` works without an ``alembic.ini`` in the
current folder. Developers can still run Alembic's own CLI with
``alembic -c db/alembic.ini …`` (URL from the cellpipe settings).

Upgrades are serialised between processes: on PostgreSQL by a transaction-level
advisory lock, on SQLite by the write lock of ``BEGIN IMMEDIATE``; each upgrade runs in
one transaction (both backends have transactional DDL), so a failed upgrade leaves the
previous revision intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import URL

from cellpipe.db.engine import DatabaseError, create_engine, write_transaction
from cellpipe.db.models import TABLE_NAMES

PACKAGE_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"

# Any fixed 64-bit number: the key of the advisory lock that serialises upgrades.
_UPGRADE_LOCK_KEY = 0x63656C6C70697065  # "cellpipe"


class SchemaError(DatabaseError):
    """The database's schema revision is not the one this version of cellpipe needs."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands against the migrations shipped with cellpipe.

    Attributes
    ----------
    current : str or None
        Revision the database is at; None for a database without cellpipe's schema.
    head : str
        Newest revision shipped with this cellpipe.
    has_tables : bool
        Whether any of cellpipe's tables exist (a database at None without them is empty).
    """

    current: str | None
    head: str
    has_tables: bool

    @property
    def is_current(self) -> bool:
        """Return whether the database is at the head revision."""
        return self.current == self.head

    @property
    def is_empty(self) -> bool:
        """Return whether the database has neither a revision nor cellpipe's tables."""
        return self.current is None and not self.has_tables


def alembic_config(url: str | URL | None = None) -> Config:
    """Return an Alembic config whose scripts are the migrations shipped in the package."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.is_file() else Config()
    # ConfigParser interpolates '%': escape it in paths and URLs.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def head_revision() -> str:
    """Return the newest revision among the shipped migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise SchemaError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def schema_status(bind: Engine | Connection) -> SchemaStatus:
    """Return the current and head revisions of the database behind ``bind``."""
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return schema_status(connection)
    current = MigrationContext.configure(bind).get_current_revision()
    existing = set(inspect(bind).get_table_names())
    return SchemaStatus(current=current, head=head_revision(), has_tables=bool(existing & set(TABLE_NAMES)))


def upgrade(engine: Engine, revision: str = "head") -> tuple[SchemaStatus, SchemaStatus]:
    """Upgrade the database to ``revision``; return its status before and after."""
    with write_transaction(engine) as connection:
        _lock_schema(connection)
        before = schema_status(connection)
        if not (revision == "head" and before.is_current):
            config = alembic_config(engine.url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        after = schema_status(connection)
    return before, after


def downgrade(engine: Engine, revision: str) -> tuple[SchemaStatus, SchemaStatus]:
    """Downgrade the database to ``revision`` (``"base"`` drops everything); for developers."""
    with write_transaction(engine) as connection:
        _lock_schema(connection)
        before = schema_status(connection)
        config = alembic_config(engine.url)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        after = schema_status(connection)
    return before, after


def ensure_schema(engine: Engine) -> SchemaStatus:
    """Upgrade an empty database to head; check that any other one is at head.

    Raises
    ------
    SchemaError
        When the database is at another revision (run ``cellpipe db upgrade``), or has
        cellpipe's tables without a revision (it was not created by cellpipe).
    """
    status = schema_status(engine)
    if status.is_current:
        return status
    if status.is_empty:
        return upgrade(engine)[1]
    url = engine.url.render_as_string(hide_password=True)
    if status.current is None:
        raise SchemaError(
            f"{url} has tables named like cellpipe's but no Alembic revision; "
            "it was not created by cellpipe, use another database"
        )
    raise SchemaError(
        f"{url} is at schema revision {status.current}, this cellpipe needs {status.head}; "
        f"run `cellpipe db upgrade --db URL` (back the database up first)"
    )


def open_database(url: str | URL) -> Engine:
    """Return a writable engine on ``url`` whose schema is at head.

    An empty database (or a SQLite file that does not exist yet) is upgraded on first
    use; see :func:`ensure_schema` for the other cases.
    """
    engine = create_engine(url)
    try:
        ensure_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _lock_schema(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
