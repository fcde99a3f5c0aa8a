"""Runs record their process id, and a run whose process died is "interrupted".

A batch killed mid-way (SIGKILL, reboot) never reaches ``finish_run``; with the pid of
its process on record, the next run on the same host can see that the process is gone
and mark the run "interrupted" (:func:`cellpipe.db.mark_interrupted_runs`). Runs stored
before this revision have no pid and are left as they are.

SQLite cannot change a CHECK constraint in place: Alembic's batch mode rebuilds
``runs`` (copy, drop, rename). Dropping ``runs`` with foreign keys on, as cellpipe's
connections have them and as they stay inside the upgrade's transaction, sets
``segmentations.run_id`` to NULL (its ON DELETE action), so the run ids of the
segmentations are saved before the rebuild and restored after it.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-01
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The name migration 0001 gave it: its "ck_runs_status" went through the "ck" naming
# convention (ck_<table>_<name>) and came out prefixed twice. op.f() keeps it as is.
STATUS_CHECK = "ck_runs_ck_runs_status"
STATUSES_BEFORE = "status IN ('running', 'succeeded', 'failed')"
STATUSES_AFTER = "status IN ('running', 'succeeded', 'failed', 'interrupted')"


@contextlib.contextmanager
def _keeping_segmentation_run_ids() -> Iterator[None]:
    if op.get_bind().dialect.name != "sqlite":  # PostgreSQL alters runs in place
        yield
        return
    op.execute("CREATE TEMPORARY TABLE saved_run_ids (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL)")
    op.execute("INSERT INTO saved_run_ids SELECT id, run_id FROM segmentations WHERE run_id IS NOT NULL")
    yield
    op.execute(
        "UPDATE segmentations SET run_id = saved.run_id "
        "FROM saved_run_ids AS saved WHERE saved.id = segmentations.id"
    )
    op.execute("DROP TABLE saved_run_ids")


def upgrade() -> None:
    with _keeping_segmentation_run_ids(), op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("pid", sa.Integer, comment="process id of the run on its host"))
        batch_op.drop_constraint(op.f(STATUS_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(STATUS_CHECK), STATUSES_AFTER)


def downgrade() -> None:
    # The older schema knows no "interrupted": such a run did not succeed.
    op.execute("UPDATE runs SET status = 'failed' WHERE status = 'interrupted'")
    with _keeping_segmentation_run_ids(), op.batch_alter_table("runs") as batch_op:
        batch_op.drop_constraint(op.f(STATUS_CHECK), type_="check")
        batch_op.create_check_constraint(op.f(STATUS_CHECK), STATUSES_BEFORE)
        batch_op.drop_column("pid")
