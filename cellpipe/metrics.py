"""Scores of a predicted cell segmentation against ground truth.

Pixel-pair scores, as in the ISBI 2012 EM segmentation challenge (Arganda-Carreras et al.,
"Crowdsourcing the creation of image segmentation algorithms for connectomics", Front.
Neuroanat. 2015, doi:10.3389/fnana.2015.00142):

- :func:`rand_scores`: foreground-restricted Rand score V_rand with its split and merge parts,
- :func:`info_scores`: foreground-restricted information-theoretic score V_info, likewise.

Object scores, as StarDist's ``stardist/matching.py``:

- :func:`matching`: optimal one-to-one matching of cells by IoU (Hungarian), giving TP, FP,
  FN, precision, recall, F1, AP = TP / (TP + FP + FN) and the mean IoU of matched cells,
- :func:`matching_sweep`: the same at IoU thresholds 0.5:0.05:0.95,
- :func:`cell_count_error`: how far the number of cells is off.

:func:`evaluate_pair` gives all of them for one image as a flat dict, and
:func:`evaluate_dataset` averages such dicts over images.

Every function accepts label images (0 = background or edge, any other integer = one cell)
or binary interior masks (see :func:`as_instance_labels`). Only numpy and scipy are used,
and all work is vectorised, so 4096 x 4096 images take seconds.
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

#: IoU thresholds 0.5, 0.55, ..., 0.95 of the averaged matching scores (COCO, StarDist).
IOU_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())

_MASK_VALUE = 255  # interior value of an 8-bit binary mask (ISBI 2012 labels)


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


class Matching(NamedTuple):
    """Cells matched one-to-one by IoU at one threshold (StarDist's ``Matching``)."""

    thresh: float  #: a pair matches when its IoU >= thresh
    tp: int  #: matched pairs
    fp: int  #: predicted cells without a match
    fn: int  #: true cells without a match
    precision: float  #: TP / (TP + FP)
    recall: float  #: TP / (TP + FN)
    f1: float  #: 2 TP / (2 TP + FP + FN)
    ap: float  #: TP / (TP + FP + FN), StarDist's "accuracy", the DSB 2018 "average precision"
    mean_matched_iou: float  #: mean IoU of the matched pairs; NaN when there are none
    n_true: int  #: cells in the ground truth
    n_pred: int  #: cells in the prediction


class CellCountError(NamedTuple):
    """Difference between the predicted and the true number of cells."""

    n_true: int
    n_pred: int
    absolute: int  #: ``|n_pred - n_true|``
    relative: float  #: ``absolute / n_true``; 0 when both are 0, inf when only n_true is 0


def as_instance_labels(array: np.ndarray) -> np.ndarray:
    """Return a label image (0 = no cell, 1..n = cells) for a label image or interior mask.

    A boolean array, or an integer array whose only values are 0 and 255 (8-bit masks such
    as the ISBI 2012 labels, 255 = cell interior, 0 = membrane), is a binary interior mask:
    its 4-connected components are the cells. Any other integer array is already a label
    image and is returned unchanged. A 0/1 integer array is a label image with one cell;
    pass ``mask.astype(bool)`` when it is a mask.

    Parameters
    ----------
    array : ndarray of bool or non-negative integers
        Label image or binary interior mask, any number of dimensions.

    Returns
    -------
    labels : ndarray of int
        Label image of the same shape.

    Raises
    ------
    TypeError
        If ``array`` holds neither booleans nor integers (integral floats are accepted).
    ValueError
        If ``array`` holds negative values.

    Examples
    --------
    >>> mask = np.array([[255, 255, 0, 255]], dtype=np.uint8)
    >>> as_instance_labels(mask)
    array([[1, 1, 0, 2]], dtype=int32)
    """
    array = np.asarray(array)
    if array.dtype == bool:
        return _components(array)
    if np.issubdtype(array.dtype, np.floating) and np.array_equal(array, np.round(array)):
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"a label image must hold integers or booleans, not {array.dtype}; "
            "threshold probability maps and label them before scoring them"
        )
    if array.size and array.min() < 0:
        raise ValueError("a label image must not hold negative labels")
    if array.size and array.max() == _MASK_VALUE and not np.any((array != 0) & (array != _MASK_VALUE)):
        return _components(array == _MASK_VALUE)
    return array


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


def matching(truth_labels: np.ndarray, pred_labels: np.ndarray, thresh: float = 0.5) -> Matching:
    """Return the optimal one-to-one matching of true and predicted cells by IoU.

    A true and a predicted cell may be paired when their intersection over union is at
    least ``thresh``. Among all one-to-one pairings the one with the most pairs is chosen,
    and among those the one with the largest summed IoU (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment``, as StarDist's ``matching``). Predicted labels
    are used as they are (no growth into edges).

    Ratios with TP = 0 are 0, as in StarDist, except that a prediction without cells of a
    truth without cells is perfect: precision, recall, F1 and AP are then 1. Unlike
    StarDist, the mean matched IoU is NaN, not 0, when nothing matched.

    Parameters
    ----------
    truth_labels, pred_labels : ndarray
        Label images or binary interior masks of the same shape. Note the order (truth
        first), as in StarDist.
    thresh : float
        IoU threshold in [0, 1].

    Returns
    -------
    Matching
    """
    return matching_sweep(truth_labels, pred_labels, (thresh,))[0]


def matching_sweep(
    truth_labels: np.ndarray, pred_labels: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> tuple[Matching, ...]:
    """Return :func:`matching` at each IoU threshold, computing the overlaps only once.

    Parameters
    ----------
    truth_labels, pred_labels : ndarray
        Label images or binary interior masks of the same shape.
    thresholds : sequence of float
        IoU thresholds in [0, 1]; default 0.5, 0.55, ..., 0.95.

    Returns
    -------
    tuple of Matching
        One per threshold, in the given order.
    """
    truth_labels, pred_labels = _check_pair(truth_labels, pred_labels)
    thresholds = [float(t) for t in thresholds]
    if not all(0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"IoU thresholds must lie in [0, 1], got {thresholds}")
    iou, n_true, n_pred = _iou_table(truth_labels, pred_labels)
    return tuple(_match(iou, n_true, n_pred, t) for t in thresholds)


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


# --- object matching ---------------------------------------------------------------------


def _iou_table(truth: np.ndarray, pred: np.ndarray) -> tuple[sparse.coo_matrix, int, int]:
    """Return the IoU of every overlapping (true cell, predicted cell) pair, and the counts.

    Row and column ``k`` of the table are the cells labelled ``k + 1`` after
    :func:`_small_labels`.
    """
    truth, pred = _small_labels(truth), _small_labels(pred)
    overlap = _contingency(truth, pred).tocoo()
    cells = (overlap.row > 0) & (overlap.col > 0)
    rows, cols, intersection = overlap.row[cells], overlap.col[cells], overlap.data[cells].astype(np.float64)
    truth_area, pred_area = np.bincount(truth), np.bincount(pred)
    iou = intersection / (truth_area[rows] + pred_area[cols] - intersection)
    shape = (max(len(truth_area) - 1, 0), max(len(pred_area) - 1, 0))
    table = sparse.coo_matrix((iou, (rows - 1, cols - 1)), shape=shape)
    return table, int(np.count_nonzero(truth_area[1:])), int(np.count_nonzero(pred_area[1:]))


def _match(iou: sparse.coo_matrix, n_true: int, n_pred: int, thresh: float) -> Matching:
    candidates = iou.data >= thresh
    rows, cols, scores = iou.row[candidates], iou.col[candidates], iou.data[candidates]
    matched_scores = _optimal_pairs(rows, cols, scores, iou.shape[0])
    tp = len(matched_scores)
    fp, fn = n_pred - tp, n_true - tp
    if n_true == 0 and n_pred == 0:
        ratios = (1.0, 1.0, 1.0, 1.0)
    elif tp == 0:
        ratios = (0.0, 0.0, 0.0, 0.0)
    else:
        ratios = (tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn))
    mean_iou = float(np.mean(matched_scores)) if tp else float("nan")
    return Matching(thresh, tp, fp, fn, *ratios, mean_iou, n_true, n_pred)


def _optimal_pairs(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, n_rows: int) -> np.ndarray:
    """Return the IoUs of a maximum matching of largest total IoU among candidate pairs.

    The candidate graph splits into connected components that can be matched
    independently. Above IoU 0.5 every component is a single pair (a cell overlaps at most
    one other cell by more than half of their union), so only the rare larger components
    go through ``linear_sum_assignment``, which keeps large images fast.
    """
    if len(scores) == 0:
        return scores
    # Nodes 0..n_rows-1 are the true cells, n_rows + k the predicted cell in column k.
    graph = sparse.coo_matrix((np.ones_like(scores), (rows, n_rows + cols)), shape=(n_rows + cols.max() + 1,) * 2)
    _, component = connected_components(graph, directed=False)
    pair_component = component[rows]
    pairs_per_component = np.bincount(pair_component)
    single = pairs_per_component[pair_component] == 1
    matched = [scores[single]]
    for label in np.unique(pair_component[~single]):
        in_component = pair_component == label
        true_ids, true_index = np.unique(rows[in_component], return_inverse=True)
        pred_ids, pred_index = np.unique(cols[in_component], return_inverse=True)
        local_scores = scores[in_component]
        # As StarDist: one unit per pair, plus the IoU scaled so that no amount of IoU can
        # outweigh one more pair.
        gain = np.zeros((len(true_ids), len(pred_ids)))
        gain[true_index, pred_index] = 1.0 + local_scores / (2 * min(gain.shape))
        chosen_true, chosen_pred = linear_sum_assignment(gain, maximize=True)
        chosen = gain[chosen_true, chosen_pred] > 0
        score = np.zeros_like(gain)
        score[true_index, pred_index] = local_scores
        matched.append(score[chosen_true[chosen], chosen_pred[chosen]])
    return np.concatenate(matched)


# --- shared helpers ----------------------------------------------------------------------


def _check_pair(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first, second = as_instance_labels(first), as_instance_labels(second)
    if first.shape != second.shape:
        raise ValueError(f"the two label images differ in shape: {first.shape} and {second.shape}")
    return first, second


def _components(mask: np.ndarray) -> np.ndarray:
    four_connected = ndimage.generate_binary_structure(mask.ndim, 1)
    labels, _ = ndimage.label(mask, structure=four_connected)
    return labels


def _small_labels(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` raveled, renumbered 1..n (0 stays 0) only if their values are huge.

    Tables indexed by label stay small without the cost of renumbering every image.
    """
    labels = labels.ravel()
    if labels.size == 0 or int(labels.max()) <= 4 * labels.size + 1024:
        # numpy < 2.3 refuses uint64 in bincount; these values fit in intp.
        return labels if np.can_cast(labels.dtype, np.intp) else labels.astype(np.intp)
    values, inverse = np.unique(labels, return_inverse=True)
    return inverse + int(values[0] != 0)


def _contingency(rows: np.ndarray, cols: np.ndarray) -> sparse.csr_matrix:
    """Return the count of each (row label, column label) pair of two 1-D label arrays."""
    rows, cols = _small_labels(rows), _small_labels(cols)
    shape = (int(rows.max(initial=0)) + 1, int(cols.max(initial=0)) + 1)
    counts = np.ones(rows.size, dtype=np.int64)
    table = sparse.coo_matrix((counts, (rows, cols)), shape=shape).tocsr()
    table.sum_duplicates()
    return table


def _count_error(n_true: int, n_pred: int) -> CellCountError:
    absolute = abs(n_pred - n_true)
    relative = absolute / n_true if n_true else (0.0 if n_pred == 0 else float("inf"))
    return CellCountError(n_true, n_pred, absolute, relative)


def _count_cells(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.bincount(_small_labels(as_instance_labels(labels)))[1:]))
