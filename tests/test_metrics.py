"""Specification of cellpipe.metrics and of ``cellpipe evaluate``.

Toy cases are small enough to compute by hand; each comment shows the arithmetic. For the
Rand scores, with S the prediction and T the truth, p_ij is the fraction of scored pixels
in predicted segment i and true cell j, s_i and t_j its marginals:
split = sum p_ij^2 / sum t_j^2, merge = sum p_ij^2 / sum s_i^2,
V_rand = 2 sum p_ij^2 / (sum s_i^2 + sum t_j^2). Counts n_ij work as well as fractions
because N^2 cancels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from typer.testing import CliRunner

from cellpipe import io
from cellpipe.cli import app
from cellpipe.cli import commands_evaluate  # noqa: F401  (registers ``cellpipe evaluate``)
from cellpipe.metrics import (
    IOU_THRESHOLDS,
    as_instance_labels,
    cell_count_error,
    evaluate_dataset,
    evaluate_pair,
    info_scores,
    matching,
    matching_sweep,
    rand_scores,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ISBI_LABEL = SHARED_DATA / "isbi2012" / "train" / "label" / "0.png"
LN2, LN3 = math.log(2), math.log(3)


# --- ground truth as label image or interior mask ----------------------------------------


def test_boolean_mask_cells_are_its_four_connected_components():
    mask = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    labels = as_instance_labels(mask)
    # The two diagonal pixels touch only at corners: two cells, not one.
    assert len(np.unique(labels[labels > 0])) == 3


def test_uint8_mask_with_255_interior_is_a_mask():
    mask = np.array([[255, 255, 0, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(as_instance_labels(mask), [[1, 1, 0, 2]])


def test_label_image_is_kept_as_it_is():
    labels = np.array([[7, 7, 0, 3]], dtype=np.uint32)
    np.testing.assert_array_equal(as_instance_labels(labels), labels)


def test_probability_map_is_rejected():
    with pytest.raises(TypeError, match="integers or booleans"):
        as_instance_labels(np.array([[0.2, 0.7]]))


def test_negative_labels_are_rejected():
    with pytest.raises(ValueError, match="negative"):
        as_instance_labels(np.array([[-1, 2]]))


def test_label_images_of_different_shapes_are_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        rand_scores(np.ones((2, 3), int), np.ones((3, 2), int))


# --- Rand and information scores on toy cases --------------------------------------------


def test_two_cells_merged_into_one_lower_only_the_rand_merge_score():
    truth = np.array([[1, 1, 1, 1, 0, 2, 2]])  # cells of 4 and 2 pixels; 0 is boundary
    pred = np.ones_like(truth)  # one cell over both
    # n_ij = [[4, 2]]: sum n^2 = 20, sum t^2 = 16 + 4 = 20, sum s^2 = 6^2 = 36.
    # split = 20/20 = 1, merge = 20/36 = 5/9, V_rand = 40/56 = 5/7.
    assert rand_scores(pred, truth) == pytest.approx((5 / 7, 1.0, 5 / 9))


def test_two_cells_merged_into_one_carry_no_information():
    truth = np.array([[1, 1, 1, 1, 0, 2, 2]])
    pred = np.ones_like(truth)
    # H(S) = 0 (one segment), so I(S;T) = 0: V_info = 0, merge = I/H(T) = 0, and split is 1
    # (nothing was split; the ratio 0/0 is defined as 1).
    assert info_scores(pred, truth) == pytest.approx((0.0, 1.0, 0.0))


def test_two_of_three_cells_merged_give_hand_computed_scores():
    truth = np.array([[1, 1, 0, 2, 2, 0, 3, 3]])
    pred = np.array([[1, 1, 1, 1, 1, 0, 2, 2]])  # cells 1 and 2 merged, cell 3 right
    # Rand: n_ij = 2, 2, 2; sum n^2 = 12 = sum t^2; s = (4, 2), sum s^2 = 20.
    # split = 1, merge = 12/20 = 3/5, V_rand = 24/32 = 3/4.
    assert rand_scores(pred, truth) == pytest.approx((3 / 4, 1.0, 3 / 5))
    # Info: H(T) = ln 3, H(S) = -(2/3 ln 2/3 + 1/3 ln 1/3) = ln 3 - 2/3 ln 2, and S is a
    # function of T, so I = H(S): split = 1, merge = H(S)/ln 3, V_info = 2 H(S)/(H(S) + ln 3).
    h_pred = LN3 - 2 / 3 * LN2
    assert info_scores(pred, truth) == pytest.approx((2 * h_pred / (h_pred + LN3), 1.0, h_pred / LN3))


def test_one_cell_split_in_halves_lowers_only_the_split_scores():
    truth = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 2, 2]])
    # Rand: n_ij = 2, 2; sum n^2 = 8, sum t^2 = 16, sum s^2 = 8.
    # split = 8/16 = 1/2, merge = 1, V_rand = 16/24 = 2/3.
    assert rand_scores(pred, truth) == pytest.approx((2 / 3, 0.5, 1.0))
    # Info: H(T) = 0, so I = 0: split = I/H(S) = 0, merge = 1 (0/0), V_info = 0/ln 2 = 0.
    assert info_scores(pred, truth) == pytest.approx((0.0, 0.0, 1.0))


def test_predicted_edge_pixels_take_the_label_of_the_nearest_predicted_cell():
    truth = np.array([[1, 1, 1, 1, 0, 2]])
    pred = np.array([[1, 1, 0, 0, 2, 2]])
    # Grown: column 2 is 1 pixel from cell 1, column 3 is 1 pixel from cell 2, so the
    # prediction becomes [1, 1, 1, 2, 2, 2]; column 4 is truth boundary and not scored.
    # n_ij: (1,1) = 3, (2,1) = 1, (2,2) = 1; sum n^2 = 11, sum t^2 = 16 + 1 = 17,
    # sum s^2 = 9 + 4 = 13: split = 11/17, merge = 11/13, V_rand = 22/30 = 11/15.
    assert rand_scores(pred, truth) == pytest.approx((11 / 15, 11 / 17, 11 / 13))


def test_thick_predicted_edges_on_the_true_boundary_cost_nothing():
    truth = np.array([[1, 1, 1, 0, 2, 2, 2]] * 3)
    pred = np.array([[1, 1, 0, 0, 0, 2, 2]] * 3)
    assert rand_scores(pred, truth) == pytest.approx((1.0, 1.0, 1.0))
    assert info_scores(pred, truth) == pytest.approx((1.0, 1.0, 1.0))


def test_prediction_without_cells_is_one_segment_over_the_image():
    truth = np.array([[1, 1, 0, 2, 2]])
    pred = np.zeros_like(truth)
    # As one merged cell: n_ij = 2, 2; sum n^2 = 8 = sum t^2, sum s^2 = 16.
    assert rand_scores(pred, truth) == pytest.approx((2 / 3, 1.0, 0.5))


def test_truth_without_cells_leaves_pixel_scores_undefined():
    truth = np.zeros((3, 3), int)
    pred = np.ones((3, 3), int)
    assert all(math.isnan(score) for score in (*rand_scores(pred, truth), *info_scores(pred, truth)))


# --- matching of cells by IoU ------------------------------------------------------------


def test_hungarian_matching_finds_more_pairs_than_greedy_matching():
    truth = np.array([[2, 1, 1, 1]])
    pred = np.array([[1, 1, 1, 2]])
    # IoU(t1, p1) = 2/4 = 0.5, IoU(t1, p2) = 1/3, IoU(t2, p1) = 1/3, IoU(t2, p2) = 0.
    # At 0.3 a greedy match takes the best pair (t1, p1) and leaves t2 unmatched;
    # the optimal matching pairs (t1, p2) and (t2, p1): two pairs of IoU 1/3.
    result = matching(truth, pred, thresh=0.3)
    assert (result.tp, result.fp, result.fn) == (2, 0, 0)
    assert result.mean_matched_iou == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("ids", "dtype"), [((5, 9), np.uint64), ((70_000, 2**40), np.int64)], ids=["gaps", "huge"]
)
def test_cell_ids_need_not_be_consecutive(ids, dtype):
    truth = np.array([[ids[0]] * 3 + [0] + [ids[1]] * 2], dtype=dtype)
    pred = np.array([[1, 1, 1, 0, 2, 2]])
    assert (matching(truth, pred).tp, rand_scores(pred, truth).v_rand) == (2, 1.0)


def test_iou_equal_to_the_threshold_is_a_match():
    truth = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 0, 0]])  # IoU = 2/4
    assert matching(truth, pred, thresh=0.5).tp == 1


def test_matching_ratios_follow_their_definitions():
    truth = np.array([[1, 1, 0, 2, 2, 0, 3, 3, 0, 0, 0]])
    pred = np.array([[5, 5, 0, 9, 9, 0, 0, 0, 0, 4, 4]])  # two right, one missed, one extra
    result = matching(truth, pred)
    # TP = 2, FP = 1, FN = 1: precision = recall = F1 = 2/3, AP = 2/(2 + 1 + 1) = 1/2.
    assert (result.tp, result.fp, result.fn) == (2, 1, 1)
    assert (result.precision, result.recall, result.f1, result.ap) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 1 / 2))


def test_empty_prediction_finds_nothing():
    truth = np.array([[1, 1, 0, 2, 2]])
    result = matching(truth, np.zeros_like(truth))
    assert (result.tp, result.fp, result.fn, result.f1, result.ap) == (0, 0, 2, 0.0, 0.0)
    assert math.isnan(result.mean_matched_iou)


def test_empty_prediction_of_empty_truth_is_perfect():
    empty = np.zeros((4, 4), int)
    result = matching(empty, empty)
    assert (result.tp, result.precision, result.recall, result.f1, result.ap) == (0, 1.0, 1.0, 1.0, 1.0)


def test_cells_in_empty_truth_are_all_false_positives():
    result = matching(np.zeros((1, 4), int), np.array([[1, 1, 0, 2]]))
    assert (result.tp, result.fp, result.fn, result.precision, result.ap) == (0, 2, 0, 0.0, 0.0)


def test_threshold_sweep_matches_until_the_threshold_exceeds_the_iou():
    truth = np.array([[1] * 10 + [0] * 10])
    pred = np.array([[1] * 6 + [0] * 14])  # IoU = 6/10: a match at 0.5, 0.55, 0.6 only
    sweep = matching_sweep(truth, pred)
    assert [m.thresh for m in sweep] == list(IOU_THRESHOLDS)
    assert [m.tp for m in sweep] == [1, 1, 1] + [0] * 7


# --- cell counts and aggregation ---------------------------------------------------------


def test_cell_count_error_is_absolute_and_relative_to_the_true_count():
    truth = np.array([[1, 0, 2, 0, 3, 0, 4]])
    pred = np.array([[1, 1, 1, 0, 2, 0, 3]])
    assert cell_count_error(truth, pred) == (4, 3, 1, 0.25)


def test_cell_count_error_of_empty_truth_is_infinite_unless_nothing_was_found():
    empty = np.zeros((2, 2), int)
    assert cell_count_error(empty, empty).relative == 0.0
    assert cell_count_error(empty, np.ones((2, 2), int)).relative == math.inf


def test_evaluate_pair_reports_pixel_object_and_count_scores():
    truth = np.array([[1, 1, 0, 2, 2]])
    scores = evaluate_pair(np.array([[1, 1, 1, 1, 1]]), truth)
    assert (scores["v_rand"], scores["v_rand_merge"], scores["v_info"]) == pytest.approx((2 / 3, 0.5, 0.0))
    # The merged cell has IoU 2/5 with either true cell: no match at any threshold.
    assert (scores["tp"], scores["f1"], scores["ap_mean"], scores["count_error"]) == (0, 0.0, 0.0, 1)


def test_dataset_mean_skips_images_where_a_score_is_undefined():
    per_image = [{"v_rand": 0.5, "f1": 1.0}, {"v_rand": float("nan"), "f1": 0.0}]
    assert evaluate_dataset(per_image) == {"v_rand": 0.5, "f1": 0.5, "n_images": 2.0}


# --- properties --------------------------------------------------------------------------

label_images = arrays(np.int32, (6, 7), elements=st.integers(0, 4))
PIXEL_SCORES = ("v_rand", "v_rand_split", "v_rand_merge", "v_info", "v_info_split", "v_info_merge")
UNIT_SCORES = (*PIXEL_SCORES, "precision", "recall", "f1", "ap", "f1_mean", "ap_mean", "mean_matched_iou")


@settings(max_examples=60, deadline=None)
@given(truth=label_images, new_ids=st.permutations([11, 12, 13, 14]))
def test_same_cells_under_other_ids_score_one(truth, new_ids):
    assume(truth.any())
    pred = np.array([0, *new_ids])[truth]
    scores = evaluate_pair(pred, truth)
    assert [scores[key] for key in UNIT_SCORES] == pytest.approx([1.0] * len(UNIT_SCORES))


@settings(max_examples=60, deadline=None)
@given(pred=label_images, truth=label_images)
def test_every_score_lies_between_zero_and_one(pred, truth):
    scores = evaluate_pair(pred, truth)
    for key in UNIT_SCORES:
        assert math.isnan(scores[key]) or 0.0 <= scores[key] <= 1.0, key


@settings(max_examples=60, deadline=None)
@given(first=arrays(np.int32, (5, 6), elements=st.integers(1, 4)), second=arrays(np.int32, (5, 6), elements=st.integers(1, 4)))
def test_swapping_fully_labelled_images_swaps_split_and_merge(first, second):
    # Without 0 pixels there is no foreground restriction and no growth, so the scores
    # are symmetric up to the roles of split and merge.
    rand, swapped_rand = rand_scores(first, second), rand_scores(second, first)
    info, swapped_info = info_scores(first, second), info_scores(second, first)
    assert (swapped_rand.v_rand, swapped_rand.split, swapped_rand.merge) == pytest.approx((rand.v_rand, rand.merge, rand.split))
    assert (swapped_info.v_info, swapped_info.split, swapped_info.merge) == pytest.approx((info.v_info, info.merge, info.split))


@settings(max_examples=60, deadline=None)
@given(first=label_images, second=label_images)
def test_swapping_truth_and_prediction_swaps_false_positives_and_negatives(first, second):
    forward, backward = matching(first, second), matching(second, first)
    assert (backward.tp, backward.fp, backward.fn) == (forward.tp, forward.fn, forward.fp)
    assert (backward.precision, backward.recall, backward.f1) == pytest.approx((forward.recall, forward.precision, forward.f1))


@settings(max_examples=60, deadline=None)
@given(truth=label_images)
def test_splitting_cells_lowers_only_the_split_scores(truth):
    assume(truth.any())
    columns = np.indices(truth.shape)[1]
    pred = np.where(truth > 0, 2 * truth + columns % 2, 0)  # every cell cut into stripes
    assert rand_scores(pred, truth).merge == pytest.approx(1.0)
    assert info_scores(pred, truth).merge == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(truth=label_images)
def test_merging_cells_lowers_only_the_merge_scores(truth):
    assume(truth.any())
    pred = (truth + 1) // 2  # cells 1 and 2 merge, and 3 and 4
    assert rand_scores(pred, truth).split == pytest.approx(1.0)
    assert info_scores(pred, truth).split == pytest.approx(1.0)


# --- a real ISBI 2012 label --------------------------------------------------------------


@pytest.fixture(scope="module")
def isbi_cells():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return as_instance_labels(io.read_image(ISBI_LABEL))


def _two_neighbouring_cells(cells):
    """Return the ids of the two largest cells that touch across a thin membrane."""
    areas = np.bincount(cells.ravel())
    for cell in np.argsort(areas[1:])[::-1] + 1:
        grown = ndimage.binary_dilation(cells == cell, iterations=3)
        neighbours = set(np.unique(cells[grown])) - {0, cell}
        if neighbours:
            return int(cell), int(max(neighbours, key=lambda n: areas[n]))
    raise AssertionError("no neighbouring cells in the ISBI label")


def test_isbi_merge_of_two_neighbours_lowers_merge_by_the_closed_form(isbi_cells):
    first, second = _two_neighbouring_cells(isbi_cells)
    merged = np.where(isbi_cells == second, first, isbi_cells)
    areas = np.bincount(isbi_cells.ravel())[1:].astype(float)
    sum_t2 = np.sum(areas**2)
    # Merging cells of areas a and b raises sum s^2 by (a + b)^2 - a^2 - b^2 = 2ab only.
    expected_merge = sum_t2 / (sum_t2 + 2 * areas[first - 1] * areas[second - 1])
    assert rand_scores(merged, isbi_cells) == pytest.approx(
        (2 * expected_merge / (1 + expected_merge), 1.0, expected_merge)
    )


def test_isbi_cells_eroded_by_two_pixels_grow_back_nearly_perfectly(isbi_cells):
    eroded = isbi_cells * ndimage.binary_erosion(isbi_cells > 0, iterations=2)
    assert rand_scores(eroded, isbi_cells).v_rand > 0.99
    assert info_scores(eroded, isbi_cells).v_info > 0.99


def test_isbi_rand_agrees_with_scikit_image_adapted_rand(isbi_cells):
    from skimage.metrics import adapted_rand_error

    first, second = _two_neighbouring_cells(isbi_cells)
    merged = np.where(isbi_cells == second, first, isbi_cells)
    # scikit-image counts pixel pairs without replacement (n^2 - n instead of n^2), so the
    # two agree to about 1/(cell area). Its second value is our split: its contingency
    # table has the truth as rows (scikit-image issue #6485 on the names).
    error, truth_ratio, pred_ratio = adapted_rand_error(isbi_cells, merged)
    ours = rand_scores(merged, isbi_cells)
    assert (ours.v_rand, ours.split, ours.merge) == pytest.approx((1 - error, truth_ratio, pred_ratio), abs=1e-3)


def test_isbi_merged_neighbours_leave_one_true_cell_unmatched(isbi_cells):
    first, second = _two_neighbouring_cells(isbi_cells)
    merged = np.where(isbi_cells == second, first, isbi_cells)
    result = matching(isbi_cells, merged)
    # The merged cell covers the larger cell (the first), so it still matches it.
    assert (result.tp, result.fp, result.fn) == (result.n_true - 1, 0, 1)


# --- cellpipe evaluate -------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path):
    """Two predictions as ``cellpipe segment`` writes them, and their interior masks."""
    pred_dir, truth_dir = tmp_path / "pred", tmp_path / "truth"
    truth = np.zeros((8, 8), np.uint8)
    truth[1:4, 1:7] = 255
    truth[5:7, 1:7] = 255
    cells = as_instance_labels(truth)
    io.write_labels_tiff(pred_dir / "a_labels.tif", cells)
    io.write_labels_tiff(pred_dir / "b_labels.tif", (cells > 0).astype(np.uint32))  # merged
    io.write_png(pred_dir / "a_overlay.png", truth)
    for stem in "ab":
        io.write_png(truth_dir / f"{stem}.png", truth)
    return pred_dir, truth_dir


def _evaluate(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_evaluate_prints_a_row_per_image_and_their_mean(folders):
    result = _evaluate(*folders)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["a"], ["b"], ["mean"])}
    assert rows["a"][3] == "1.000" and float(rows["b"][3]) < 1.0 and "mean" in rows


def test_evaluate_json_gives_every_score_per_image_and_the_mean(folders):
    result = _evaluate(*folders, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"]["a"]["v_rand"] == 1.0
    assert report["mean"]["v_rand"] == pytest.approx((1.0 + report["images"]["b"]["v_rand"]) / 2)


def test_evaluate_fails_when_a_truth_has_no_prediction(folders):
    pred_dir, truth_dir = folders
    (pred_dir / "b_labels.tif").unlink()
    result = _evaluate(pred_dir, truth_dir)
    assert result.exit_code == 1
    assert "b.png" in result.stderr and "--allow-missing" in result.stderr


def test_evaluate_allow_missing_scores_only_the_predicted_images(folders):
    pred_dir, truth_dir = folders
    (pred_dir / "b_labels.tif").unlink()
    result = _evaluate(pred_dir, truth_dir, "--allow-missing", "--format", "json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["images"]) == ["a"]


def test_evaluate_fails_when_a_prediction_has_no_truth(folders):
    pred_dir, truth_dir = folders
    (truth_dir / "a.png").unlink()
    result = _evaluate(pred_dir, truth_dir)
    assert result.exit_code == 1 and "a_labels.tif" in result.stderr


def test_evaluate_fails_when_shapes_differ(folders):
    pred_dir, truth_dir = folders
    io.write_png(truth_dir / "a.png", np.full((8, 9), 255, np.uint8))
    result = _evaluate(pred_dir, truth_dir)
    assert result.exit_code == 1 and "a_labels.tif" in result.stderr and "a.png" in result.stderr
