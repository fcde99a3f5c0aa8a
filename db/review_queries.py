"""What ``cellpipe review`` reads: the segmented images of a batch with their confidence, and their cells'.

:func:`review_candidates` lists every image × model of one batch date whose latest
segmentation has confidences (``image_summary.mean_confidence``), with where its image
and label image are; :func:`cell_confidences` reads the confidence of each cell of some
segmentations. Choosing which images to review is :func:`cellpipe.review.review_queue`'s.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

import numpy as np
from sqlalchemy import select

from cellpipe.db.engine import Bind, read_connection
from cellpipe.db.models import Cell, Segmentation
from cellpipe.db.views import image_summary

_IN_CHUNK = 500  # ids per IN (...) list, well below SQLite's bound-parameter limit


def review_candidates(bind: Bind, batch_date: dt.date) -> list[dict[str, Any]]:
    """Return the image × model rows of ``batch_date`` that have a mean confidence, lowest first.

    Each row has ``image_id``, ``source_uri``, ``model_name``, ``model_version``,
    ``segmentation_id``, ``label_uri``, ``n_cells``, ``mean_confidence`` and
    ``low_confidence_cells``. Segmentations stored without confidences are left out.
    """
    summary = image_summary.c
    statement = (
        select(summary.image_id, summary.source_uri, summary.model_name, summary.model_version,
               summary.segmentation_id, Segmentation.label_uri, summary.n_cells, summary.mean_confidence,
               summary.low_confidence_cells)
        .select_from(image_summary.join(Segmentation, Segmentation.id == summary.segmentation_id))
        .where(summary.batch_date == batch_date, summary.mean_confidence.is_not(None))
        .order_by(summary.mean_confidence, summary.image_id, summary.segmentation_id)
    )
    with read_connection(bind) as connection:
        return [dict(row._mapping) for row in connection.execute(statement)]


def cell_confidences(bind: Bind, segmentation_ids: Iterable[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Return ``{segmentation id: (labels, confidences)}`` of the cells of each segmentation, by label.

    A cell stored without a confidence has NaN.
    """
    ids = sorted(set(segmentation_ids))
    found: dict[int, tuple[list[int], list[float]]] = {sid: ([], []) for sid in ids}
    with read_connection(bind) as connection:
        for start in range(0, len(ids), _IN_CHUNK):
            statement = (select(Cell.segmentation_id, Cell.label, Cell.confidence)
                         .where(Cell.segmentation_id.in_(ids[start:start + _IN_CHUNK]))
                         .order_by(Cell.segmentation_id, Cell.label))
            for segmentation_id, label, confidence in connection.execute(statement):
                found[segmentation_id][0].append(label)
                found[segmentation_id][1].append(np.nan if confidence is None else confidence)
    return {sid: (np.asarray(labels, np.int64), np.asarray(values, np.float64))
            for sid, (labels, values) in found.items()}


__all__ = ["cell_confidences", "review_candidates"]
