"""How sure the model was of each cell: a confidence in [0, 1] from what the network saw.

A cell the model drew well sits inside a region it called interior, is ringed by pixels
it called wall or background, and is parted from each neighbour by a strong wall. A cell
the model got wrong usually fails one of these: a fragment of a real cell is parted from
the rest of it by a faint wall (the merge step kept it, just); a blob of two cells has a
weak interior where their missing wall should be; a speck of noise is much smaller than
the image's other cells. :func:`cell_features` measures each of these per cell:

``interior_probability``
    mean of ``1 - edge_probability`` over the cell's pixels;
``boundary_probability``
    mean ``edge_probability`` on the band just outside the cell (:data:`RING_WIDTH` px);
``weakest_wall``
    the merge step's view: the whole map is flooded from the cells (as
    :func:`cellpipe.agglomerate.merge_weak_boundaries` does) and this is the lowest mean
    edge probability along the ridge to any neighbour (``boundary_probability`` for a
    cell without neighbours, e.g. a nucleus alone on its background);
``log_relative_area``
    ``log(area / median area of the image's cells)``.

:class:`Calibration` turns them into a probability that the cell is correct (matches a
true cell with IoU >= 0.5) with a logistic model fitted on held-out data
(:func:`fit_calibration`, ``benchmarks/bench_confidence.py``) and stored in the model
card's ``confidence``. A card without one gets :func:`uncalibrated_confidence`, the mean
of the three probabilities: it ranks cells the same way whatever the model, but its
values are not probabilities.

>>> import numpy as np
>>> labels = np.zeros((9, 9), np.int32); labels[2:7, 2:7] = 1
>>> edges = np.where(labels > 0, 0.0, 1.0)
>>> float(cell_confidence(labels, edges, [1])[0])
1.0
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import ndimage

from cellpipe.agglomerate import boundary_statistics
from cellpipe.io import _write_atomically
from cellpipe.matching import best_iou
from cellpipe.segment import watershed
from cellpipe.shipped import model_file

__all__ = [
    "FEATURES",
    "LOW_CONFIDENCE",
    "PROBABILITY_FEATURES",
    "RING_WIDTH",
    "Calibration",
    "cell_confidence",
    "cell_features",
    "correct_cells",
    "fit_calibration",
    "roc_auc",
    "uncalibrated_confidence",
    "write_calibrated_card",
]

#: Features of :func:`cell_features`, in the order a :class:`Calibration` weighs them.
FEATURES: tuple[str, ...] = ("interior_probability", "boundary_probability", "weakest_wall", "log_relative_area")
#: The features that are probabilities, averaged by :func:`uncalibrated_confidence`.
PROBABILITY_FEATURES: tuple[str, ...] = ("interior_probability", "boundary_probability", "weakest_wall")
#: Width in pixels of the band outside a cell whose edge probability is its ``boundary_probability``.
RING_WIDTH = 2
#: Cells below this confidence count as low-confidence (``image_summary.low_confidence_cells``,
#: the review queue's flags): for a calibrated model, more likely wrong than right.
LOW_CONFIDENCE = 0.5
#: IoU with a true cell from which a cell counts as correct.
CORRECT_IOU = 0.5


def cell_features(
    labels: np.ndarray,
    edge_probability: np.ndarray,
    cell_labels: Sequence[int] | np.ndarray,
    *,
    background: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Return the confidence features of each cell in ``cell_labels``, as columns.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        0 on walls and background, one positive value per cell.
    edge_probability : (M, N) ndarray of float
        The model's probability that a pixel bounds a cell, in [0, 1]
        (:func:`cellpipe.unet.targets.boundary_probability`).
    cell_labels : sequence of int
        The cells to describe, e.g. ``cells["label"]`` of :func:`cellpipe.measure.regionprops_table`.
    background : (M, N) ndarray of bool, optional
        A three-class model's background: no two cells are neighbours across it.

    Returns
    -------
    dict of str to ndarray of float64
        One array per name of :data:`FEATURES`, one value per cell of ``cell_labels``.
    """
    labels = np.asarray(labels)
    edge_probability = np.asarray(edge_probability, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != edge_probability.shape:
        raise ValueError(f"labels (shape {labels.shape}) and edge_probability (shape {edge_probability.shape}) "
                         "must be 2-D images of one shape")
    cell_labels = np.asarray(cell_labels, dtype=np.int64)
    if cell_labels.size == 0:
        return {name: np.zeros(0) for name in FEATURES}
    if cell_labels.min() < 1 or cell_labels.max() > labels.max():
        raise ValueError(f"cell_labels must be labels present in the label image (1..{labels.max()})")
    n_bins = int(labels.max()) + 1
    flat = labels.ravel().astype(np.intp)
    area = np.bincount(flat, minlength=n_bins).astype(np.float64)
    interior = np.bincount(flat, weights=1.0 - edge_probability.ravel(), minlength=n_bins)

    # Flood walls and background from the cells, as the merge step does: each cell's
    # region reaches the ridge of edge probability between it and its neighbours.
    levels = np.rint(edge_probability * 255).astype(np.uint8)
    regions = watershed(levels, labels.astype(np.int32, copy=False))
    near = ndimage.binary_dilation(labels > 0, iterations=RING_WIDTH) & (labels == 0)
    ring = np.where(near, regions, 0).ravel().astype(np.intp)
    ring_length = np.bincount(ring, minlength=n_bins).astype(np.float64)
    ring_sum = np.bincount(ring, weights=edge_probability.ravel(), minlength=n_bins)
    # A cell with no pixel outside it (walls labelled, or it fills the image): its own rim.
    rim = (labels > 0) & ~ndimage.binary_erosion(labels > 0, border_value=1)
    rim_flat = np.where(rim, labels, 0).ravel().astype(np.intp)
    rim_length = np.bincount(rim_flat, minlength=n_bins).astype(np.float64)
    rim_sum = np.bincount(rim_flat, weights=edge_probability.ravel(), minlength=n_bins)
    boundary = np.where(ring_length > 0, ring_sum / np.maximum(ring_length, 1),
                        rim_sum / np.maximum(rim_length, 1))

    if background is not None:
        regions = np.where(np.asarray(background, dtype=bool), 0, regions)
    pairs, sums, lengths = boundary_statistics(regions, edge_probability)
    weakest = boundary.copy()
    if len(pairs):
        means = sums / lengths
        has_wall = np.zeros(n_bins, bool)
        lowest = np.full(n_bins, np.inf)
        for side in (0, 1):
            np.minimum.at(lowest, pairs[:, side], means)
            has_wall[pairs[:, side]] = True
        weakest = np.where(has_wall, lowest, boundary)

    cell_area = area[cell_labels]
    median_area = float(np.median(cell_area))
    return {
        "interior_probability": interior[cell_labels] / cell_area,
        "boundary_probability": boundary[cell_labels],
        "weakest_wall": weakest[cell_labels],
        "log_relative_area": np.log(cell_area / median_area),
    }


def uncalibrated_confidence(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Return the mean of the probability features: a confidence in [0, 1] for a model without calibration.

    It grows with every feature it averages, so it ranks a cell with a clearer interior,
    a stronger ring or a stronger weakest wall above an otherwise equal cell.
    """
    stacked = np.stack([np.asarray(features[name], dtype=np.float64) for name in PROBABILITY_FEATURES])
    return np.clip(stacked.mean(axis=0), 0.0, 1.0)


@dataclass(frozen=True)
class Calibration:
    """A logistic model of the probability that a cell is correct, from its features.

    ``P(correct) = 1 / (1 + exp(-(intercept + sum(coefficients * features))))``. Stored as
    the model card's ``confidence`` (:meth:`as_card`), with what it was fitted on and the
    ROC AUC it reached on held-out data.

    Attributes
    ----------
    features : tuple of str
        Names from :data:`FEATURES`, in the order of ``coefficients``.
    coefficients : tuple of float
    intercept : float
    """

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown confidence features {unknown}; known: {list(FEATURES)}")
        if len(self.features) != len(self.coefficients):
            raise ValueError(f"{len(self.features)} confidence features but {len(self.coefficients)} coefficients")

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the calibrated confidence of each cell, in [0, 1]."""
        score = np.full(np.shape(features[self.features[0]]), self.intercept, dtype=np.float64)
        for name, weight in zip(self.features, self.coefficients):
            score += weight * np.asarray(features[name], dtype=np.float64)
        return 0.5 * (1.0 + np.tanh(0.5 * score))  # the logistic function, without overflow

    def as_card(self, **record: Any) -> dict[str, Any]:
        """Return the calibration as the card's ``confidence`` dict, with ``record`` (AUC, data, command)."""
        return {"features": list(self.features), "coefficients": [float(c) for c in self.coefficients],
                "intercept": float(self.intercept), **record}

    @classmethod
    def from_card(cls, values: Mapping[str, Any] | None) -> "Calibration | None":
        """Return the calibration of a card's ``confidence``; None when the card has none."""
        if not values or "coefficients" not in values:
            return None
        return cls(tuple(values["features"]), tuple(float(c) for c in values["coefficients"]),
                   float(values["intercept"]))


def cell_confidence(
    labels: np.ndarray,
    edge_probability: np.ndarray,
    cell_labels: Sequence[int] | np.ndarray,
    *,
    background: np.ndarray | None = None,
    calibration: Calibration | None = None,
) -> np.ndarray:
    """Return the confidence in [0, 1] of each cell in ``cell_labels``.

    ``calibration`` (the model card's, :meth:`Calibration.from_card`) weighs the
    features of :func:`cell_features`; without one, :func:`uncalibrated_confidence`.
    """
    features = cell_features(labels, edge_probability, cell_labels, background=background)
    if calibration is None:
        return uncalibrated_confidence(features)
    return calibration(features)


def fit_calibration(
    features: Mapping[str, np.ndarray],
    correct: np.ndarray,
    *,
    names: Sequence[str] = FEATURES,
    weights: np.ndarray | None = None,
    l2: float = 1e-3,
) -> Calibration:
    """Return the logistic :class:`Calibration` of ``correct`` on ``features`` (maximum likelihood).

    Fitted by Newton's method on standardised features with a small ridge penalty
    ``l2`` (per cell) on the weights, so that separable data still gives finite weights.

    Parameters
    ----------
    features : mapping of str to ndarray
        Columns of :func:`cell_features`, one value per cell.
    correct : ndarray of bool
        Whether each cell matches a true cell (IoU >= 0.5).
    names : sequence of str
        The features to use.
    weights : ndarray of float, optional
        Weight of each cell in the likelihood (e.g. one over its source's cell count,
        so that a source with many cells does not decide alone). Default: 1 each.
    l2 : float
        Ridge penalty per cell on the standardised weights.
    """
    correct = np.asarray(correct, dtype=np.float64)
    x = np.column_stack([np.asarray(features[name], dtype=np.float64) for name in names])
    if len(correct) != len(x) or np.unique(correct).size < 2:
        raise ValueError("calibration needs correct and wrong cells, one flag per cell")
    cell_weights = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    cell_weights = cell_weights * (len(x) / cell_weights.sum())
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    design = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    penalty = l2 * len(x) * np.diag([0.0] + [1.0] * len(names))
    beta = np.zeros(design.shape[1])
    for _ in range(100):
        probability = 0.5 * (1.0 + np.tanh(0.5 * design @ beta))
        gradient = design.T @ (cell_weights * (probability - correct)) + penalty @ beta
        hessian = (design * (cell_weights * probability * (1 - probability))[:, None]).T @ design + penalty
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(beta)), gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    coefficients = beta[1:] / scale
    intercept = beta[0] - float(np.sum(coefficients * mean))
    return Calibration(tuple(names), tuple(float(c) for c in coefficients), float(intercept))


def roc_auc(scores: np.ndarray, correct: np.ndarray) -> float:
    """Return the ROC AUC of ``scores`` ranking correct cells above wrong ones (ties count half).

    NaN when all cells are correct or all wrong.

    >>> roc_auc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False]))
    0.75
    """
    correct = np.asarray(correct, dtype=bool)
    n_correct, n_wrong = int(correct.sum()), int((~correct).sum())
    if n_correct == 0 or n_wrong == 0:
        return float("nan")
    # Average ranks (1-based; tied scores share the mean of their ranks), as scipy.stats.rankdata.
    _, tie_group, counts = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    ranks = ((last - counts + 1 + last) / 2.0)[tie_group.ravel()]
    return float((ranks[correct].sum() - n_correct * (n_correct + 1) / 2) / (n_correct * n_wrong))


def correct_cells(labels: np.ndarray, truth: np.ndarray, cell_labels: Sequence[int] | np.ndarray,
                  *, iou: float = CORRECT_IOU) -> np.ndarray:
    """Return whether each cell of ``cell_labels`` matches a true cell of ``truth`` with IoU >= ``iou``."""
    found, best = best_iou(truth, labels)
    best_of = dict(zip(found.tolist(), best.tolist()))
    return np.array([best_of.get(int(label), 0.0) >= iou for label in np.asarray(cell_labels)], dtype=bool)


def write_calibrated_card(model_path: str | os.PathLike[str], confidence: Mapping[str, Any]) -> Path:
    """Write ``confidence`` (:meth:`Calibration.as_card`) into the card of ``model_path``; return the card's path.

    ``model_path`` is a ``.keras`` file, its folder or a shipped model's name; the card
    (``MODEL.json`` next to it) is rewritten atomically with every other field kept.
    """
    card_file = model_file(model_path).with_suffix(".json")
    try:
        card = json.loads(card_file.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the model card {card_file}: {error}") from error
    card["confidence"] = dict(confidence)
    text = json.dumps(card, indent=2) + "\n"
    return _write_atomically(card_file, lambda temporary: temporary.write_text(text))
