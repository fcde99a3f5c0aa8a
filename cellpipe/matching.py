"""Optimal one-to-one matching of predicted and true cells by IoU, as StarDist's ``matching.py``.

- :func:`matching`: the Hungarian matching of cells whose intersection over union is at
  least a threshold, giving TP, FP, FN, precision, recall, F1, AP = TP / (TP + FP + FN)
  and the mean IoU of matched cells (a :class:`Matching`),
- :func:`matching_sweep`: the same at several IoU thresholds, by default
  :data:`IOU_THRESHOLDS` = 0.5:0.05:0.95, computing the IoU table only once,
- :func:`as_instance_labels`: the label image of a label image or binary interior mask,
  which every score here and in :mod:`cellpipe.metrics` accepts.

The label-table helpers at the end are shared with :mod:`cellpipe.metrics`, which builds
its pixel-pair scores and :func:`~cellpipe.metrics.evaluate_pair` on this module and
re-exports its public names. Only numpy and scipy are used, and all work is vectorised,
so 4096 x 4096 images take seconds.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

#: IoU thresholds 0.5, 0.55, ..., 0.95 of the averaged matching scores (COCO, StarDist).
IOU_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())

_MASK_VALUE = 255  # interior value of an 8-bit binary mask (ISBI 2012 labels)


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


def best_iou(truth_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each predicted cell's label and its largest IoU with any true cell (0 when it overlaps none).

    A predicted cell is "correct" at IoU >= 0.5 exactly when it is matched by
    :func:`matching` at 0.5 (above one half, a cell overlaps at most one other that much).

    Examples
    --------
    >>> truth = np.array([[1, 1, 1, 1, 0, 0]])
    >>> pred = np.array([[1, 1, 1, 0, 0, 2]])
    >>> best_iou(truth, pred)
    (array([1, 2]), array([0.75, 0.  ]))
    """
    truth_labels, pred_labels = _check_pair(truth_labels, pred_labels)
    values, dense = np.unique(pred_labels, return_inverse=True)
    dense = dense.reshape(pred_labels.shape) + int(values[0] != 0) if values.size else pred_labels
    cells = values[values != 0]
    iou, _, _ = _iou_table(truth_labels, dense)
    best = np.zeros(cells.size)
    if iou.nnz:
        np.maximum.at(best, iou.col, iou.data)
    return cells, best


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


# --- label helpers, shared with cellpipe.metrics -----------------------------------------


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
