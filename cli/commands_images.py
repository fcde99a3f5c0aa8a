"""``cellpipe segment``, ``cellpipe synth`` and ``cellpipe evaluate``."""

from cellpipe.cli import app  # noqa: F401
