"""Alembic environment of the cell database.

cellpipe runs migrations through :mod:`cellpipe.db.schema`, which hands over an open
connection in ``config.attributes["connection"]`` (inside a transaction it commits
itself). Run from Alembic's own CLI, this file opens the URL in ``sqlalchemy.url``, or
else the one the cellpipe settings resolve.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from cellpipe.db.engine import create_engine
from cellpipe.db.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from cellpipe.settings import Settings

    return Settings.load().db_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: autogenerate batch operations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the migrations as SQL (``alembic upgrade head --sql``)."""
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a new one to the database URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if config.config_file_name:  # Alembic's own CLI: log what it does, as it usually would
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = create_engine(_database_url())
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
