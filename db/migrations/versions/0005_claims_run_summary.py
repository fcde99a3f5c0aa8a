"""Claims of the images a run is segmenting, and what a run's summary said.

``claims``: one row per image × model × parameter hash that a run is segmenting right
now (its host, process and run), taken before segmenting and dropped once the result is
stored. Two ``cellpipe run`` processes that do not share a scheduler see each other's
work through it, so each image is segmented once (:mod:`cellpipe.db.claims`).

``runs.summary``: the parts of a run's summary that the counts do not hold, such as the
duplicate files (same bytes, another name) it found and the database outages it rode
out; ``cellpipe report`` names the duplicates from it.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("image_id", sa.Integer, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("param_hash", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("image_id", "model_id", "param_hash", name="pk_claims"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name="fk_claims_image_id_images", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_claims_model_id_models", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_claims_run_id_runs", ondelete="SET NULL"),
    )
    # In place, not with batch mode: rebuilding runs on SQLite would set the run_id of every
    # segmentation to NULL (see 0003). Both backends add a NOT NULL column with a default.
    op.add_column("runs", sa.Column("summary", JSON_DOCUMENT, nullable=False, server_default=sa.text("'{}'"),
                                    comment="duplicates and outages the run reported"))


def downgrade() -> None:
    op.execute("ALTER TABLE runs DROP COLUMN summary")  # SQLite 3.35+, cellpipe's minimum
    op.drop_table("claims")
