"""Scores of a predicted cell segmentation against ground truth.

Pixel-pair scores, as in the ISBI 2012 EM segmentation challenge (Arganda-Carreras et al.,
"Crowdsourcing the creation of image segmentation algorithms for connectomics", Front.
Neuroanat. 2015, doi:10.3389/fnana.2015.00142):

- :func:`rand_scores`: foreground-restricted Rand score V_rand with its split and merge parts,
- :func:`info_scores`: foreground-restricted information-theoretic score V_info, likewise.

Object scores:

- :func:`cell_count_error`: how far the number of cells is off,
- :func:`~cellpipe.matching.matching` and :func:`~cellpipe.matching.matching_sweep`:
  optimal one-to-one matching of cells by IoU, as StarDist's ``stardist/matching.py``. They
  live in :mod:`cellpipe.matching` and are re-exported here, with :class:`Matching`,
  :data:`IOU_THRESHOLDS` and :func:`as_instance_labels`.

:func:`evaluate_pair` gives all of them for one image as a flat dict, and
:func:`evaluate_dataset` averages such dicts over images.

Every function accepts label images (0 = background or edge, any other integer = one cell)
or binary interior masks (see :func:`as_instance_labels`). Only numpy and scipy are used,
and all work is vectorised, so 4096 x 4096 images take seconds.
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple

import numpy as np
from scipy import ndimage, sparse

from cellpipe.matching import (
    IOU_THRESHOLDS,
    Matching,
    _check_pair,
    _contingency,
    _iou_table,
    _match,
    _small_labels,
    as_instance_labels,
    matching,
    matching_sweep,
)

__all__ = [
    "IOU_THRESHOLDS",
    "CellCountError",
    "InfoScores",
    "Matching",
    "RandScores",
    "as_instance_labels",
    "cell_count_error",
    "evaluate_dataset",
    "evaluate_pair",
    "info_scores",
    "matching",
    "matching_sweep",
    "rand_scores",
]


class RandScores(NamedTuple):
    """Foreground-restricted Rand scores; all in [0, 1], 1 is perfect."""

    v_rand: float  #: harmonic mean of ``split`` and ``merge``
    split: float  #: 1 unless a true cell is split over several predicted cells
    merge: float  #: 1 unless a predicted cell merges several true cells


class InfoScores(NamedTuple):
    """Foreground-restricted information-theoretic scores; all in [0, 1], 1 is perfect."""

    v_info: float  #: harmonic mean of ``split`` and ``merge``
    split: float  #: 1 unless a true cell is split over several predicted cells
    merge: float  #: 1 unless a predicted cell merges several true cells


class CellCountError(NamedTuple):
    """Difference between the predicted and the true number of cells."""

    n_true: int
    n_pred: int
    absolute: int  #: ``|n_pred - n_true|``
    relative: float  #: ``absolute / n_true``; 0 when both are 0, inf when only n_true is 0


def rand_scores(pred_labels: np.ndarray, truth_labels: np.ndarray) -> RandScores:
    """Return the foreground-restricted Rand score V_rand and its split and merge parts.

    Following Arganda-Carreras et al. (2015), S is the prediction and T the ground truth;
    p_ij is the fraction of scored pixels in predicted segment i and true cell j, and
    s_i = sum_j p_ij, t_j = sum_i p_ij are the marginals. Then

    - split = sum p_ij^2 / sum t_j^2: probability that two pixels of one true cell are in
      one predicted segment; over-segmentation lowers it;
    - merge = sum p_ij^2 / sum s_i^2: probability that two pixels of one predicted segment
      are in one true cell; merging cells lowers it;
    - V_rand = 2 sum p_ij^2 / (sum s_i^2 + sum t_j^2), their harmonic mean.

    Only pixels inside true cells are scored (true label 0 is boundary). Predicted 0 pixels
    first take the label of the nearest predicted cell, so thin predicted edges cost nothing.
    A prediction without any cell is one segment covering the image.

    scikit-image's ``adapted_rand_error`` returns ``(1 - V_rand, split, merge)`` up to
    counting pixel pairs without replacement; it calls the last two precision and recall
    (scikit-image issue #6485).

    Parameters
    ----------
    pred_labels, truth_labels : ndarray
        Label images or binary interior masks of the same shape (see
        :func:`as_instance_labels`).

    Returns
    -------
    RandScores
        ``(v_rand, split, merge)``, each in [0, 1]; all NaN when the truth has no cell.

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 2, 2]])
    >>> rand_scores(np.array([[1, 1, 1, 1, 1]]), truth)  # two cells merged into one
    RandScores(v_rand=0.6666666666666666, split=1.0, merge=0.5)
    """
    pred_labels, truth_labels = _check_pair(pred_labels, truth_labels)
    return _rand_from_table(_foreground_table(pred_labels, truth_labels))


def info_scores(pred_labels: np.ndarray, truth_labels: np.ndarray) -> InfoScores:
    """Return the foreground-restricted information-theoretic score V_info and its parts.

    With S the prediction, T the ground truth, H the entropy and I(S; T) the mutual
    information of the joint distribution p_ij of :func:`rand_scores` (same pixels, same
    growth of predicted labels into their edges):

    - split = I(S; T) / H(S), lowered by over-segmentation (1 when H(S) = 0);
    - merge = I(S; T) / H(T), lowered by merging cells (1 when H(T) = 0);
    - V_info = 2 I(S; T) / (H(S) + H(T)), their harmonic mean (1 when both are 0).

    Parameters
    ----------
    pred_labels, truth_labels : ndarray
        Label images or binary interior masks of the same shape.

    Returns
    -------
    InfoScores
        ``(v_info, split, merge)``, each in [0, 1]; all NaN when the truth has no cell.
    """
    pred_labels, truth_labels = _check_pair(pred_labels, truth_labels)
    return _info_from_table(_foreground_table(pred_labels, truth_labels))


def cell_count_error(truth_labels: np.ndarray, pred_labels: np.ndarray) -> CellCountError:
    """Return the absolute and relative error of the predicted number of cells.

    Parameters
    ----------
    truth_labels, pred_labels : ndarray
        Label images or binary interior masks (shapes may differ).

    Returns
    -------
    CellCountError
    """
    return _count_error(_count_cells(truth_labels), _count_cells(pred_labels))


def evaluate_pair(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Return every score of one predicted image against its ground truth, as a flat dict.

    Keys: ``v_rand``, ``v_rand_split``, ``v_rand_merge``, ``v_info``, ``v_info_split``,
    ``v_info_merge`` (:func:`rand_scores`, :func:`info_scores`); ``tp``, ``fp``, ``fn``,
    ``precision``, ``recall``, ``f1``, ``ap``, ``mean_matched_iou`` at IoU 0.5;
    ``f1_mean`` and ``ap_mean``, their means over IoU 0.5:0.05:0.95 (:func:`matching_sweep`);
    ``n_true``, ``n_pred``, ``count_error``, ``count_error_relative``
    (:func:`cell_count_error`).

    Parameters
    ----------
    pred, truth : ndarray
        Label images or binary interior masks of the same shape.

    Returns
    -------
    dict of str to float
    """
    pred, truth = _check_pair(pred, truth)
    table = _foreground_table(pred, truth)
    rand, info = _rand_from_table(table), _info_from_table(table)
    iou, n_true, n_pred = _iou_table(truth, pred)
    sweep = [_match(iou, n_true, n_pred, t) for t in IOU_THRESHOLDS]
    at_half = sweep[0]
    count = _count_error(n_true, n_pred)
    return {
        "v_rand": rand.v_rand,
        "v_rand_split": rand.split,
        "v_rand_merge": rand.merge,
        "v_info": info.v_info,
        "v_info_split": info.split,
        "v_info_merge": info.merge,
        "tp": at_half.tp,
        "fp": at_half.fp,
        "fn": at_half.fn,
        "precision": at_half.precision,
        "recall": at_half.recall,
        "f1": at_half.f1,
        "ap": at_half.ap,
        "mean_matched_iou": at_half.mean_matched_iou,
        "f1_mean": float(np.mean([m.f1 for m in sweep])),
        "ap_mean": float(np.mean([m.ap for m in sweep])),
        "n_true": count.n_true,
        "n_pred": count.n_pred,
        "count_error": count.absolute,
        "count_error_relative": count.relative,
    }


def evaluate_dataset(per_image: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Return the mean over images of each score of :func:`evaluate_pair`.

    Images where a score is NaN (undefined, e.g. V_rand of an image without true cells)
    are left out of that score's mean; a score undefined for every image stays NaN.

    Parameters
    ----------
    per_image : iterable of mapping
        :func:`evaluate_pair` results, at least one.

    Returns
    -------
    dict of str to float
        The same keys, plus ``n_images``.
    """
    per_image = list(per_image)
    if not per_image:
        raise ValueError("cannot average the scores of zero images")
    means: dict[str, float] = {}
    for key in per_image[0]:
        values = np.array([scores[key] for scores in per_image], dtype=float)
        defined = values[~np.isnan(values)]
        means[key] = float(defined.mean()) if defined.size else float("nan")
    means["n_images"] = float(len(per_image))
    return means


# --- pixel-pair scores -------------------------------------------------------------------


def _foreground_table(pred: np.ndarray, truth: np.ndarray) -> sparse.csr_matrix:
    """Return the (predicted segment x true cell) pixel counts inside true cells."""
    foreground = truth != 0
    return _contingency(_grown_labels_at(pred, foreground), truth[foreground])


def _grown_labels_at(labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Return ``labels[where]``, each 0 replaced by the label of the nearest cell pixel."""
    selected = labels[where]
    unlabelled = selected == 0
    if not unlabelled.any() or not labels.any():
        return selected
    # Nearest labelled pixel of every pixel, by the Euclidean feature transform.
    nearest = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    selected[unlabelled] = labels[tuple(axis[where][unlabelled] for axis in nearest)]
    return selected


def _rand_from_table(table: sparse.csr_matrix) -> RandScores:
    if table.nnz == 0:
        return RandScores(*(3 * [float("nan")]))
    joint = float(np.sum(table.data.astype(np.float64) ** 2))
    pred_sizes, truth_sizes = _marginals(table)
    sum_s2, sum_t2 = float(np.sum(pred_sizes**2)), float(np.sum(truth_sizes**2))
    return RandScores(2.0 * joint / (sum_s2 + sum_t2), joint / sum_t2, joint / sum_s2)


def _info_from_table(table: sparse.csr_matrix) -> InfoScores:
    if table.nnz == 0:
        return InfoScores(*(3 * [float("nan")]))
    pred_sizes, truth_sizes = _marginals(table)
    total = pred_sizes.sum()
    h_pred, h_truth = _entropy(pred_sizes, total), _entropy(truth_sizes, total)
    coo = table.tocoo()
    joint = coo.data.astype(np.float64)
    mutual = float(np.sum(joint / total * np.log(joint * total / (pred_sizes[coo.row] * truth_sizes[coo.col]))))
    mutual = min(max(mutual, 0.0), h_pred, h_truth)  # rounding must not leave [0, min H]
    split = mutual / h_pred if h_pred > 0 else 1.0
    merge = mutual / h_truth if h_truth > 0 else 1.0
    v_info = 2.0 * mutual / (h_pred + h_truth) if h_pred + h_truth > 0 else 1.0
    return InfoScores(v_info, split, merge)


def _marginals(table: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Return the row (predicted) and column (true) sums of a contingency table, as floats."""
    pred_sizes = np.asarray(table.sum(axis=1), dtype=np.float64).ravel()
    truth_sizes = np.asarray(table.sum(axis=0), dtype=np.float64).ravel()
    return pred_sizes, truth_sizes


def _entropy(sizes: np.ndarray, total: float) -> float:
    fractions = sizes[sizes > 0] / total
    return float(max(-np.sum(fractions * np.log(fractions)), 0.0))


# --- cell counts -------------------------------------------------------------------------


def _count_error(n_true: int, n_pred: int) -> CellCountError:
    absolute = abs(n_pred - n_true)
    relative = absolute / n_true if n_true else (0.0 if n_pred == 0 else float("inf"))
    return CellCountError(n_true, n_pred, absolute, relative)


def _count_cells(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.bincount(_small_labels(as_instance_labels(labels)))[1:]))
