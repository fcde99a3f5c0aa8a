"""The review queue: the images of a batch the model was least sure of, as Labelme projects to correct.

:func:`review_queue` picks the images with the lowest mean cell confidence
(:mod:`cellpipe.confidence`); :func:`write_review` writes each as a Labelme file whose
polygons are the model's cells (:func:`cellpipe.labelme.labels_to_shapes`), every
low-confidence cell flagged in its shape's ``description``, next to a PNG of the image,
plus ``queue.csv`` listing what was chosen and why. Corrected files go back through
``cellpipe label convert`` (and ``cellpipe model finetune``).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from cellpipe.confidence import LOW_CONFIDENCE
from cellpipe.io import read_image, read_labels_tiff, write_png
from cellpipe.labelme import labelme_document, labels_to_shapes, png_bytes, png_storable, write_labelme

__all__ = ["QUEUE_FILE", "ReviewItem", "cell_descriptions", "review_queue", "write_review"]

#: The list of chosen images written beside their Labelme files.
QUEUE_FILE = "queue.csv"


@dataclass(frozen=True)
class ReviewItem:
    """One image of the review queue.

    Attributes
    ----------
    image_id, segmentation_id : int
    source_uri, label_uri : str
        The image and its label image (``<stem>_labels.tif``).
    model : str
        Name and version of the model whose cells are to be checked.
    mean_confidence : float
    low_confidence_cells, n_cells : int
    """

    image_id: int
    segmentation_id: int
    source_uri: str
    label_uri: str | None
    model: str
    mean_confidence: float
    low_confidence_cells: int
    n_cells: int

    @property
    def stem(self) -> str:
        """Return the image's file name without its suffix."""
        return Path(str(self.source_uri).rstrip("/").rsplit("/", 1)[-1]).stem


def review_queue(candidates: Iterable[Mapping[str, Any]], limit: int) -> list[ReviewItem]:
    """Return the ``limit`` images with the lowest mean confidence, one item per image, lowest first.

    ``candidates`` are rows of :func:`cellpipe.db.review_queries.review_candidates`; an
    image segmented by several models is reviewed for the model it trusts least.
    """
    if limit < 1:
        raise ValueError(f"the review queue needs a limit of at least 1 image, got {limit}")
    chosen: dict[int, ReviewItem] = {}
    for row in sorted(candidates, key=lambda row: (row["mean_confidence"], row["image_id"])):
        if row["image_id"] in chosen:
            continue
        chosen[row["image_id"]] = ReviewItem(
            int(row["image_id"]), int(row["segmentation_id"]), row["source_uri"], row.get("label_uri"),
            f"{row.get('model_name')} {row.get('model_version')}", float(row["mean_confidence"]),
            int(row.get("low_confidence_cells") or 0), int(row.get("n_cells") or 0))
        if len(chosen) == limit:
            break
    return list(chosen.values())


def cell_descriptions(labels: Sequence[int], confidence: Sequence[float],
                      low: float = LOW_CONFIDENCE) -> dict[int, str]:
    """Return the Labelme ``description`` of each cell: its confidence, and a flag below ``low``.

    >>> cell_descriptions([1, 2], [0.92, 0.31])
    {1: 'confidence 0.92', 2: 'LOW CONFIDENCE 0.31: check this cell'}
    """
    descriptions = {}
    for label, value in zip(np.asarray(labels).tolist(), np.asarray(confidence, dtype=float).tolist()):
        if value != value:  # NaN: stored without a confidence
            descriptions[label] = ""
        elif value < low:
            descriptions[label] = f"LOW CONFIDENCE {value:.2f}: check this cell"
        else:
            descriptions[label] = f"confidence {value:.2f}"
    return descriptions


def write_review(
    out_dir: str | os.PathLike[str],
    items: Sequence[ReviewItem],
    confidences: Mapping[int, tuple[np.ndarray, np.ndarray]],
    read_uri: Callable[[str], bytes],
    *,
    low: float = LOW_CONFIDENCE,
    embed: bool = True,
) -> list[Path]:
    """Write each item as ``OUT/<stem>.json`` (Labelme) and ``OUT/<stem>.png``, and ``OUT/queue.csv``; return the JSON paths.

    Parameters
    ----------
    out_dir : path
        Created when missing.
    items : sequence of ReviewItem
        From :func:`review_queue`, in the order to review them.
    confidences : mapping
        ``{segmentation id: (labels, confidences)}``
        (:func:`cellpipe.db.review_queries.cell_confidences`).
    read_uri : callable
        Returns the bytes at an image's or label image's URI.
    low : float
        Cells below this confidence are flagged.
    embed : bool
        Embed the image in the Labelme file (``imageData``), so that it opens on its own.

    Raises
    ------
    ValueError
        When an image or its label image cannot be read, or their sizes differ; the
        message names the file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, stems = [], set()
    for item in items:
        image, labels = _image_and_labels(item, read_uri)
        stem = item.stem if item.stem not in stems else f"{item.stem}-{item.image_id}"
        stems.add(stem)
        cell_labels, values = confidences.get(item.segmentation_id, (np.zeros(0, np.int64), np.zeros(0)))
        shapes = labels_to_shapes(labels, descriptions=cell_descriptions(cell_labels, values, low))
        picture = png_storable(image)[0]
        write_png(out_dir / f"{stem}.png", picture)
        document = labelme_document(shapes, image_path=f"{stem}.png", shape=image.shape,
                                    image_data=png_bytes(picture) if embed else None)
        written.append(write_labelme(out_dir / f"{stem}.json", document))
    _write_queue(out_dir / QUEUE_FILE, items, written)
    return written


def _image_and_labels(item: ReviewItem, read_uri: Callable[[str], bytes]) -> tuple[np.ndarray, np.ndarray]:
    if not item.label_uri:
        raise ValueError(f"{item.source_uri}: no label image was recorded for its segmentation")
    try:
        image = read_image(read_uri(item.source_uri), name=item.source_uri)
    except (OSError, ValueError) as error:
        raise ValueError(f"the image {item.source_uri} cannot be read: {error}") from None
    try:
        labels = read_labels_tiff(io.BytesIO(read_uri(item.label_uri)))
    except (OSError, ValueError) as error:
        raise ValueError(f"the label image {item.label_uri} cannot be read: {error}") from None
    if labels.shape != image.shape:
        raise ValueError(f"the label image {item.label_uri} is {labels.shape[1]} x {labels.shape[0]} pixels but "
                         f"the image {item.source_uri} is {image.shape[1]} x {image.shape[0]}")
    return image, labels


def _write_queue(path: Path, items: Sequence[ReviewItem], written: Sequence[Path]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["labelme_file", "source_uri", "model", "mean_confidence", "low_confidence_cells", "n_cells"])
        for item, labelme_file in zip(items, written):
            writer.writerow([labelme_file.name, item.source_uri, item.model, f"{item.mean_confidence:.4f}",
                             item.low_confidence_cells, item.n_cells])
