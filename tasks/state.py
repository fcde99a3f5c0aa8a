"""Database questions the batch asks that :mod:`cellpipe.db` does not answer (yet).

- :func:`find_model_by_hash` / :func:`ensure_model`: the id of a model file, registering
  it on first use, so that a file registered by ``cellpipe model`` under its own name
  is found rather than registered twice;
- :func:`image_states`: for many content hashes at once, whether each image is known,
  its status and last error, and whether it is segmented with a given model and
  parameter hash. This is the completeness test of the per-image task and the
  before/after snapshot of the batch report.

Candidates to move into ``cellpipe.db`` once its owner agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import and_, select

from cellpipe.db import Image, Model, Segmentation, read_connection, register_model
from cellpipe.db.engine import Bind

#: Content hashes per ``IN (...)`` query (well under SQLite's bound-parameter limit).
_CHUNK = 500


@dataclass(frozen=True)
class ImageState:
    """What the database knows about one image content.

    Attributes
    ----------
    image_id : int
    status : str
        ``"registered"``, ``"segmented"`` or ``"failed"``.
    last_error : str or None
        Why the image failed, when it did.
    segmented : bool
        A segmentation exists for the model and parameter hash asked about.
    n_cells : int or None
        Its cell count, when segmented.
    """

    image_id: int
    status: str
    last_error: str | None
    segmented: bool
    n_cells: int | None


def find_model_by_hash(bind: Bind, file_hash: str) -> int | None:
    """Return the id of the earliest model registered with ``file_hash``, or None."""
    with read_connection(bind) as connection:
        return connection.execute(
            select(Model.id).where(Model.file_hash == file_hash).order_by(Model.created_at, Model.id).limit(1)
        ).scalar_one_or_none()


def ensure_model(bind: Bind, *, name: str, version: str, file_hash: str, location: str,
                 card: dict | None = None) -> int:
    """Return the id of the model file ``file_hash``, registering it as ``name`` ``version`` if new."""
    model_id = find_model_by_hash(bind, file_hash)
    if model_id is not None:
        return model_id
    return register_model(bind, name, version, file_hash=file_hash, location=location, card=card)


def image_states(bind: Bind, content_hashes: Iterable[str], model_id: int | None,
                 param_hash: str) -> dict[str, ImageState]:
    """Return ``{content hash: ImageState}`` for the hashes that are registered images.

    ``segmented`` refers to (``model_id``, ``param_hash``); with ``model_id`` None it is
    always False.
    """
    hashes = list(dict.fromkeys(content_hashes))
    states: dict[str, ImageState] = {}
    with read_connection(bind) as connection:
        for start in range(0, len(hashes), _CHUNK):
            chunk = hashes[start : start + _CHUNK]
            statement = (
                select(Image.content_hash, Image.id, Image.status, Image.last_error,
                       Segmentation.id, Segmentation.n_cells)
                .outerjoin(
                    Segmentation,
                    and_(Segmentation.image_id == Image.id, Segmentation.model_id == model_id,
                         Segmentation.param_hash == param_hash),
                )
                .where(Image.content_hash.in_(chunk))
            )
            for content_hash, image_id, status, last_error, segmentation_id, n_cells in connection.execute(statement):
                states[content_hash] = ImageState(
                    image_id=image_id, status=status, last_error=last_error,
                    segmented=segmentation_id is not None, n_cells=n_cells,
                )
    return states
