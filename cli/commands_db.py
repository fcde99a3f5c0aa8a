"""``cellpipe db`` commands."""

from cellpipe.cli import app, db_app  # noqa: F401
