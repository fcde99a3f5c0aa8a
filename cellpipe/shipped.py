"""The models shipped with cellpipe, and how a ``--model`` value names a model file.

Shipped models live in ``cellpipe/models/NAME/model.keras`` (card ``model.json`` next to
it): ``default`` is the EM edge model every command uses unless told otherwise;
``generalist`` is the three-class model for every kind of image (opt-in while it is
undertrained; see the README). Nothing here imports TensorFlow, so the batch's
coordinator can resolve models without it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MODELS_DIR", "model_file", "shipped_names"]

#: Folder of the shipped models, one subfolder each.
MODELS_DIR = Path(__file__).resolve().parent / "models"


def shipped_names() -> list[str]:
    """Return the names of the shipped models (folders of ``cellpipe/models`` holding a model)."""
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "model.keras").is_file())


def model_file(model: str | os.PathLike[str] | None) -> Path:
    """Return the ``.keras`` file that ``model`` names.

    ``None`` or ``""``: the shipped default. A path of a file, or of a folder holding
    ``model.keras``: that file. Otherwise the name of a shipped model (``generalist``).
    The file itself is not checked: loading it says what is missing.

    Examples
    --------
    >>> model_file(None).parent.name, model_file("generalist").parent.name
    ('default', 'generalist')
    """
    if not model:
        return MODELS_DIR / "default" / "model.keras"
    path = Path(model).expanduser()
    if not path.exists() and path.name == str(model) and (MODELS_DIR / str(model)).is_dir():
        path = MODELS_DIR / str(model)
    return path / "model.keras" if path.is_dir() else path
