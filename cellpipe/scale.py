"""Cell scale: how large the cells of an image are, and resampling to and from the model's scale.

A model trained at one cell size (its card's ``scale.cell_diameter_px``) sees every image
resampled so that its cells have that size; results are mapped back so that labels and
statistics are always at the image's own pixels. The diameter comes from the user
(``--cell-diameter``) or from :func:`diameter_of_labels` of a first segmentation: the
pipeline predicts at native scale, measures the median cell, resamples, and predicts
again when the cells were off the model's size by more than :data:`RESAMPLE_TOLERANCE`
(see :meth:`cellpipe.pipeline.CellSegmenter.__call__`).

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import skimage.transform

__all__ = [
    "MAX_FACTOR",
    "MIN_FACTOR",
    "RESAMPLE_TOLERANCE",
    "ScaleChoice",
    "diameter_of_labels",
    "labels_to_shape",
    "maps_to_shape",
    "resample",
    "resampled_copy",
    "scale_factor",
]

#: Resampling within this ratio of 1 is skipped: the model was trained with that much zoom and more.
RESAMPLE_TOLERANCE = 1.25
#: Bounds of the resampling factor (model pixels per image pixel): 8x smaller to 4x larger.
MIN_FACTOR, MAX_FACTOR = 1.0 / 8.0, 4.0


@dataclass(frozen=True)
class ScaleChoice:
    """The scale an image was segmented at; stored with every segmentation.

    Attributes
    ----------
    cell_diameter : float or None
        Median cell diameter in image pixels: given by the user, or estimated; None
        when the model has no training scale (it then always works at native scale)
        or no cell was found to measure.
    factor : float
        Resampling factor used for the final prediction (model pixels per image pixel).
    source : {"given", "estimated", "native"}
        Where ``cell_diameter`` came from; ``native``: the model has no training scale.
    passes : int
        Network passes spent (1 when the first, native-scale pass was kept).
    """

    cell_diameter: float | None
    factor: float
    source: str
    passes: int = 1

    def as_dict(self) -> dict:
        """Return the choice as a JSON-ready dict."""
        diameter = None if self.cell_diameter is None else round(float(self.cell_diameter), 2)
        return {"cell_diameter": diameter, "factor": round(float(self.factor), 4), "source": self.source,
                "passes": self.passes}


def scale_factor(cell_diameter: float | None, training_diameter: float | None) -> float:
    """Return the resampling factor that brings cells of ``cell_diameter`` to ``training_diameter``.

    1.0 when either is unknown or when the ratio is within :data:`RESAMPLE_TOLERANCE`;
    otherwise ``training_diameter / cell_diameter`` clipped to [``MIN_FACTOR``, ``MAX_FACTOR``].

    Examples
    --------
    >>> scale_factor(56.0, 28.0), scale_factor(30.0, 28.0), scale_factor(7.0, 28.0)
    (0.5, 1.0, 4.0)
    """
    if not cell_diameter or not training_diameter:
        return 1.0
    if cell_diameter <= 0:
        raise ValueError(f"cell diameter must be positive, got {cell_diameter}")
    factor = training_diameter / cell_diameter
    if 1.0 / RESAMPLE_TOLERANCE <= factor <= RESAMPLE_TOLERANCE:
        return 1.0
    return float(np.clip(factor, MIN_FACTOR, MAX_FACTOR))


def resample(image: np.ndarray, factor: float) -> np.ndarray:
    """Return the 2-D ``image`` resampled by ``factor`` (bilinear; antialiased when shrinking)."""
    if factor == 1.0:
        return image
    shape = _scaled_shape(image.shape[:2], factor)
    resized = skimage.transform.resize(
        image, shape, order=1, mode="reflect", anti_aliasing=factor < 1.0, preserve_range=True
    )
    return resized.astype(np.float32)


def maps_to_shape(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return the probability ``maps`` (H, W[, C]) resized bilinearly to ``shape`` (antialiased when shrinking)."""
    if maps.shape[:2] == tuple(shape):
        return maps
    shrinking = maps.shape[0] > shape[0]
    resized = skimage.transform.resize(
        maps, (*shape, *maps.shape[2:]), order=1, mode="edge", anti_aliasing=shrinking, preserve_range=True
    )
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def labels_to_shape(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return the label image resized to ``shape`` by nearest neighbour (labels are never blended)."""
    if labels.shape == tuple(shape):
        return labels
    rows = np.minimum((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0], labels.shape[0] - 1).astype(np.intp)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1], labels.shape[1] - 1).astype(np.intp)
    return np.ascontiguousarray(labels[rows[:, None], cols[None, :]])


def resampled_copy(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``image`` and its ``labels`` as they would be at ``factor`` times the magnification.

    The image is resampled bilinearly (antialiased when shrinking) and stored back in its
    own pixel type, as a file at that magnification would hold it; the labels by nearest
    neighbour. This is how the benchmarks and tests make their 0.5x and 2x copies.
    """
    if factor == 1.0:
        return image, labels
    shape = tuple(max(8, int(round(side * factor))) for side in image.shape)
    copy = skimage.transform.resize(image.astype(np.float32), shape, order=1, anti_aliasing=factor < 1,
                                    preserve_range=True)
    if np.issubdtype(image.dtype, np.integer):
        copy = np.clip(np.rint(copy), 0, np.iinfo(image.dtype).max).astype(image.dtype)
    return copy, labels_to_shape(labels, shape)


def diameter_of_labels(labels: np.ndarray, *, min_area: int = 8) -> float | None:
    """Return the median equivalent-circle diameter of the cells in ``labels`` (None if none).

    The statistic training rescales every image to (``cellpipe.unet.targets.median_diameter``
    is this function): cells under ``min_area`` pixels are fragments and are ignored. Cells
    cut by the image border count too: leaving them out would bias small images towards
    small cells.

    Examples
    --------
    >>> labels = np.zeros((40, 40), np.int32); labels[:20, :20] = 1; labels[20:, 20:] = 2
    >>> round(diameter_of_labels(labels), 1)
    22.6
    """
    areas = np.bincount(np.asarray(labels).ravel().astype(np.int64))[1:]
    areas = areas[areas >= min_area]
    if areas.size == 0:
        return None
    return math.sqrt(4.0 * float(np.median(areas)) / math.pi)


def _scaled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    return tuple(max(8, int(round(side * factor))) for side in shape)  # type: ignore[return-value]
