"""``cellpipe model`` commands."""

from cellpipe.cli import app, model_app  # noqa: F401
