"""Initial tables: images, runs, models, segmentations, cells.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")

SQLITE_DELETE_CELLS_TRIGGER = """
CREATE TRIGGER segmentations_delete_cells AFTER DELETE ON segmentations
FOR EACH ROW BEGIN
    DELETE FROM cells WHERE segmentation_id = OLD.id;
END
"""
PG_DELETE_CELLS_FUNCTION = """
CREATE FUNCTION cellpipe_delete_cells() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cells WHERE segmentation_id = OLD.id;
    RETURN OLD;
END
$$
"""
PG_DELETE_CELLS_TRIGGER = """
CREATE TRIGGER segmentations_delete_cells AFTER DELETE ON segmentations
FOR EACH ROW EXECUTE FUNCTION cellpipe_delete_cells()
"""


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else sa.func.current_timestamp(),
    )


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False, comment="sha256 of the file, hex"),
        sa.Column("source_uri", sa.Text, nullable=False, comment="where the image was first found"),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("bit_depth", sa.SmallInteger),
        sa.Column("batch_date", sa.Date, nullable=False, comment="date of the batch that found it"),
        _timestamp("acquired_at", nullable=True),
        _timestamp("first_seen"),
        sa.Column("status", sa.String(16), nullable=False, server_default="registered"),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
        sa.UniqueConstraint("content_hash", name="uq_images_content_hash"),
        sa.CheckConstraint(
            "status IN ('registered', 'segmented', 'failed')", name="ck_images_status"
        ),
        sa.CheckConstraint("length(content_hash) = 64", name="ck_images_content_hash_length"),
    )
    op.create_index("ix_images_batch_date", "images", ["batch_date"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.Column("batch_date", sa.Date),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("parameters", JSON_DOCUMENT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="running"),
        sa.Column("images_seen", sa.Integer),
        sa.Column("images_segmented", sa.Integer),
        sa.Column("images_failed", sa.Integer),
        sa.Column("cells_stored", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name="ck_runs_status"
        ),
    )
    op.create_index("ix_runs_batch_date", "runs", ["batch_date"])

    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("file_hash", sa.String(64), nullable=False, comment="sha256 of the model file, hex"),
        sa.Column("location", sa.Text, nullable=False, comment="path or URI of the model file"),
        sa.Column("card", JSON_DOCUMENT, nullable=False, comment="config and training record"),
        sa.Column("metrics", JSON_DOCUMENT, nullable=False),
        sa.Column("cloud_ids", JSON_DOCUMENT, nullable=False, comment="e.g. Azure ML model id"),
        _timestamp("created_at"),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", "version", name="uq_models_name_version"),
    )
    op.create_index(
        "uq_models_one_default",
        "models",
        ["is_default"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )

    op.create_table(
        "segmentations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("param_hash", sa.String(64), nullable=False, comment="sha256 of the canonical JSON of parameters"),
        sa.Column("parameters", JSON_DOCUMENT, nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("n_cells", sa.Integer, nullable=False),
        sa.Column("label_uri", sa.Text, comment="where the label image was written"),
        sa.Column("timings", JSON_DOCUMENT, nullable=False, comment="seconds per stage"),
        _timestamp("stored_at"),
        sa.PrimaryKeyConstraint("id", name="pk_segmentations"),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name="fk_segmentations_image_id_images", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_segmentations_model_id_models", ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_segmentations_run_id_runs", ondelete="SET NULL"
        ),
        sa.UniqueConstraint(
            "image_id", "model_id", "param_hash", name="uq_segmentations_image_id_model_id_param_hash"
        ),
    )
    op.create_index("ix_segmentations_model_id", "segmentations", ["model_id"])
    op.create_index("ix_segmentations_run_id", "segmentations", ["run_id"])
    op.create_index(
        "ix_segmentations_image_id_model_id_stored_at",
        "segmentations",
        ["image_id", "model_id", "stored_at"],
    )

    double = sa.Double()
    # x and y are generated from the centroid: PostgreSQL only has stored generated
    # columns; SQLite computes virtual ones on read, at no storage cost.
    stored = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "cells",
        sa.Column("segmentation_id", sa.Integer, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("area", sa.Integer, nullable=False),
        sa.Column("centroid_0", double, nullable=False),
        sa.Column("centroid_1", double, nullable=False),
        sa.Column("x", double, sa.Computed("centroid_1", persisted=stored), comment="= centroid_1 (column)"),
        sa.Column("y", double, sa.Computed("centroid_0", persisted=stored), comment="= centroid_0 (row)"),
        sa.Column("bbox_0", sa.Integer, nullable=False),
        sa.Column("bbox_1", sa.Integer, nullable=False),
        sa.Column("bbox_2", sa.Integer, nullable=False),
        sa.Column("bbox_3", sa.Integer, nullable=False),
        sa.Column("axis_major_length", double),
        sa.Column("axis_minor_length", double),
        sa.Column("eccentricity", double),
        sa.Column("orientation", double),
        sa.Column("equivalent_diameter_area", double),
        sa.Column("perimeter", double),
        sa.Column("intensity_mean", double),
        sa.Column("intensity_min", double),
        sa.Column("intensity_max", double),
        sa.Column("touches_border", sa.Boolean),
        sa.PrimaryKeyConstraint("segmentation_id", "label", name="pk_cells"),
    )
    # No foreign key from cells to segmentations: checking it for every inserted cell
    # halves the bulk insert rate on PostgreSQL, and cells are only ever written by
    # store_segmentation, in the transaction that writes their segmentation. This
    # trigger keeps the cascade: deleting a segmentation (or its image) deletes its cells.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DELETE_CELLS_FUNCTION)
        op.execute(PG_DELETE_CELLS_TRIGGER)
    else:
        op.execute(SQLITE_DELETE_CELLS_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER segmentations_delete_cells" + (
        " ON segmentations" if op.get_bind().dialect.name == "postgresql" else ""
    ))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION cellpipe_delete_cells()")
    op.drop_table("cells")
    op.drop_table("segmentations")
    op.drop_table("models")
    op.drop_table("runs")
    op.drop_table("images")
