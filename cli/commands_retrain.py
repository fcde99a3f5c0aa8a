"""``cellpipe model retrain``."""

from cellpipe.cli import model_app  # noqa: F401
