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
from typing import Callable, Sequence

import numpy as np
import skimage.transform

__all__ = [
    "MAX_FACTOR",
    "MIN_FACTOR",
    "RESAMPLE_TOLERANCE",
    "Measured",
    "SCALE_SEARCHES",
    "ScaleChoice",
    "best_pass",
    "diameter_of_labels",
    "labels_to_shape",
    "maps_to_shape",
    "resample",
    "resampled_copy",
    "scale_factor",
    "search_scale",
]

#: Resampling within this ratio of 1 is skipped: the model was trained with that much zoom and more.
RESAMPLE_TOLERANCE = 1.25
#: Bounds of the resampling factor (model pixels per image pixel): 8x smaller to 4x larger.
MIN_FACTOR, MAX_FACTOR = 1.0 / 8.0, 4.0
#: A pass that found fewer cells than this cannot tell cells from a few giant blobs.
MIN_TRUSTED_CELLS = 8
#: Coarser copies than this many pixels across hold too few cells to measure.
MIN_SEARCH_SIDE = 48
#: How :func:`search_scale` looks for the cells' scale.
SCALE_SEARCHES = ("ladder", "probes")


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


@dataclass(frozen=True)
class Measured:
    """What one network pass at ``factor`` found: median diameter (image px) and number of cells."""

    factor: float
    diameter: float | None
    cells: int

    def misfit(self, training_diameter: float) -> float:
        """Return |log| of how far from the training diameter the model saw these cells (inf: none)."""
        if not self.diameter:
            return math.inf
        return abs(math.log(self.diameter * self.factor / training_diameter))

    @classmethod
    def of_labels(cls, factor: float, labels: np.ndarray, *, min_area: int = 8) -> "Measured":
        """Return what a pass at ``factor`` found in ``labels``: :func:`diameter_of_labels` and the cells it counts."""
        areas = _cell_areas(labels, min_area)
        return cls(factor, _median_diameter(areas), int(areas.size))

    @property
    def trusted(self) -> bool:
        """Whether enough cells were found for their median to mean something."""
        return self.diameter is not None and self.cells >= MIN_TRUSTED_CELLS


def best_pass(passes: Sequence[Measured], training_diameter: float) -> Measured:
    """Return the pass whose cells to trust: confirmed ones first, then the native one when it fits.

    A pass is confirmed when another trusted pass, at a factor at least 1.5 times apart,
    measured the same diameter (within :data:`RESAMPLE_TOLERANCE`): a model that resolves
    the cells finds the same cells at two sizes, while fragments and merged blobs change
    with the size they were predicted at. Of the confirmed passes, the one whose cells the
    model saw closest to its training size wins. When none is confirmed, the native pass
    (the first) is kept if it is trusted and found cells of the model's size; failing
    that, the trusted pass closest to the training size, and failing that, any pass.
    """
    trusted = [m for m in passes if m.trusted]
    confirmed = [m for m in trusted if any(_agree(m, other) for other in trusted)]
    native = passes[0]
    if not confirmed and native.trusted and native.misfit(training_diameter) <= math.log(RESAMPLE_TOLERANCE):
        return native
    return min(confirmed or trusted or passes, key=lambda m: m.misfit(training_diameter))


def _agree(one: Measured, other: Measured) -> bool:
    apart = max(one.factor, other.factor) / min(one.factor, other.factor) >= 1.5
    ratio = max(one.diameter, other.diameter) / min(one.diameter, other.diameter)
    return apart and ratio <= RESAMPLE_TOLERANCE


def search_scale(
    measure: Callable[[float], Measured],
    training_diameter: float,
    side: int,
    *,
    strategy: str = "ladder",
    probes: Sequence[float] = (0.5,),
    max_passes: int = 3,
) -> list[Measured]:
    """Run network passes (``measure(factor)``) until the cells' scale is known; return them in order.

    The first pass is at native scale. A model shown cells far off its size fails in one
    of two ways, and the ``"ladder"`` search reads both:

    - cells larger than it knows are cut into fragments of about its own size, so their
      median says "about right" or "slightly large" whatever their true size. A half-size
      copy tells: real cells keep their diameter there, fragments double theirs. So a
      native pass that found cells of the model's size is checked on a half-size copy (a
      quarter of the cost); when that one finds larger cells, or when the native pass
      found cells larger than the model's size, copies at 1/4 and 1/8 of the size follow
      (down to :data:`MIN_SEARCH_SIDE` pixels across; all together a third of a native
      pass);
    - cells smaller than it knows merge into a few giant blobs: a pass with fewer than
      :data:`MIN_TRUSTED_CELLS` cells is not trusted, and the search then also tries the
      coarse copies (in case the cells are huge instead) and twice the size.

    A trusted native pass that found cells off the model's size is also followed by a pass
    at the size it asks for (the only one more when the cells were smaller).

    :func:`best_pass` picks the pass to keep; when even that one saw its cells off the
    model's size by more than the tolerance, one last pass at the size it asks for follows.
    An image whose native pass is confirmed by its half-size copy costs 1.25 passes; one
    without any cell 1.33 + 4 (the double-size pass).

    ``"probes"`` is the earlier search, kept for comparison (``benchmarks/bench_scale.py``):
    native pass; when off, passes at the factor it asks for and at each of ``probes``, at
    most ``max_passes`` in all.
    """
    if strategy not in SCALE_SEARCHES:
        raise ValueError(f"scale search must be one of {SCALE_SEARCHES}, got {strategy!r}")
    passes = [measure(1.0)]

    def tried(factor: float) -> bool:
        return any(max(factor, m.factor) / min(factor, m.factor) <= RESAMPLE_TOLERANCE for m in passes)

    def run(factor: float) -> Measured | None:
        if tried(factor) or (factor < 1.0 and side * factor < MIN_SEARCH_SIDE):
            return None
        passes.append(measure(factor))
        return passes[-1]

    native = passes[0]
    wanted = scale_factor(native.diameter, training_diameter)
    if strategy == "probes":
        if not tried(wanted) or native.diameter is None:
            for factor in ([wanted] if native.diameter else []) + list(probes):
                if len(passes) < max_passes:
                    run(factor)
        return passes
    if native.trusted and wanted != 1.0:
        run(wanted)  # where the native pass says the cells' size is
    if not (native.trusted and wanted > 1.0):
        half = run(0.5)
        cut = native.trusted and half is not None and half.trusted and half.diameter > RESAMPLE_TOLERANCE * native.diameter
        if cut or wanted < 1.0 or not native.trusted:
            for factor in (0.25, 0.125):
                run(factor)
        if not native.trusted:
            run(2.0)
    best = best_pass(passes, training_diameter)
    if best.trusted:
        run(scale_factor(best.diameter, training_diameter))
    return passes


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
    return _median_diameter(_cell_areas(labels, min_area))


def _cell_areas(labels: np.ndarray, min_area: int) -> np.ndarray:
    areas = np.bincount(np.asarray(labels).ravel().astype(np.int64))[1:]
    return areas[areas >= min_area]


def _median_diameter(areas: np.ndarray) -> float | None:
    if areas.size == 0:
        return None
    return math.sqrt(4.0 * float(np.median(areas)) / math.pi)


def _scaled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    return tuple(max(8, int(round(side * factor))) for side in shape)  # type: ignore[return-value]
