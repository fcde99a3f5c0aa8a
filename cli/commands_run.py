"""``cellpipe run``."""

from cellpipe.cli import app  # noqa: F401
