"""The cell database: SQLAlchemy models, sessions, migrations, writes and queries.

SQLite by default (a WAL-mode file in the user's data directory), PostgreSQL through
``postgresql+psycopg://user@host:port/dbname``. The schema is created and changed only
by the Alembic migrations shipped in ``migrations/``; an empty database is upgraded on
first use by :func:`open_database`.

Typical use by the batch::

    engine = open_database(Settings.load().db_url)
    run_id = start_run(engine, batch_date=day, parameters=params)
    image_id = register_image(engine, sha256, uri, size_bytes=n, batch_date=day, bit_depth=8)
    key = (image_id, model_id, parameter_hash(params))
    if claim_segmentation(engine, *key, run_id=run_id) is None:  # None: no other process is on it
        if not is_segmented(engine, *key):
            store_segmentation(engine, image_id, model_id, params, cells, run_id=run_id)
        release_claim(engine, *key)
    finish_run(engine, run_id)

This package knows tables, sessions, migrations and queries; nothing about images.
"""

from cellpipe.db.bulk import cell_columns
from cellpipe.db.claims import ClaimHolder, claim_holders, claim_segmentation, release_claim
from cellpipe.db.engine import (
    DatabaseError,
    DatabaseUnreachableError,
    NoDatabaseError,
    create_engine,
    create_readonly_engine,
    read_connection,
    write_transaction,
)
from cellpipe.db.exports import export
from cellpipe.db.models import Base, Cell, Claim, Image, Model, Run, Segmentation, SegmentationQuality
from cellpipe.db.isolation import QueryInterrupted, QueryTimeout
from cellpipe.db.postgres_isolation import READER_ROLE, reader_role_problem
from cellpipe.db.queries import QueryError, QueryResult, ReadOnlyError, check_readable, readonly_query
from cellpipe.db.registry import get_default_model, get_model, list_models, register_model, set_default_model
from cellpipe.db.schema import (
    SchemaError,
    SchemaStatus,
    ensure_schema,
    head_revision,
    open_database,
    schema_status,
    upgrade,
)
from cellpipe.db.writes import (
    finish_run,
    is_segmented,
    mark_image_failed,
    mark_interrupted_runs,
    parameter_hash,
    record_pixel_size,
    register_image,
    start_run,
    store_segmentation,
)

__all__ = [
    "Base",
    "Cell",
    "Claim",
    "ClaimHolder",
    "DatabaseError",
    "DatabaseUnreachableError",
    "Image",
    "Model",
    "NoDatabaseError",
    "QueryError",
    "QueryInterrupted",
    "QueryResult",
    "QueryTimeout",
    "READER_ROLE",
    "ReadOnlyError",
    "Run",
    "SchemaError",
    "SchemaStatus",
    "Segmentation",
    "SegmentationQuality",
    "cell_columns",
    "check_readable",
    "claim_holders",
    "claim_segmentation",
    "create_engine",
    "create_readonly_engine",
    "ensure_schema",
    "export",
    "finish_run",
    "get_default_model",
    "get_model",
    "head_revision",
    "is_segmented",
    "list_models",
    "mark_image_failed",
    "mark_interrupted_runs",
    "open_database",
    "parameter_hash",
    "read_connection",
    "record_pixel_size",
    "reader_role_problem",
    "readonly_query",
    "register_image",
    "register_model",
    "release_claim",
    "schema_status",
    "set_default_model",
    "start_run",
    "store_segmentation",
    "upgrade",
    "write_transaction",
]
