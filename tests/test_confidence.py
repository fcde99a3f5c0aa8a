"""Per-cell confidence: its features, its calibration, its ranking, and the pipeline's column."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from tiny_model import model_copy
from typer.testing import CliRunner

from cellpipe.cli import app
from cellpipe.cli import commands_segment  # noqa: F401  (registers the command)

from cellpipe.confidence import (
    FEATURES,
    Calibration,
    cell_confidence,
    cell_features,
    correct_cells,
    fit_calibration,
    roc_auc,
    write_calibrated_card,
)
from cellpipe.io import write_png
from cellpipe.matching import best_iou
from cellpipe.pipeline import CellSegmenter
from cellpipe.segment import SegmentParams, segment_edges
from cellpipe.synthetic import synthetic_cells

pytest_plugins = ["tiny_model"]

#: A calibration that trusts a strong weakest wall and a clear interior, as fitted ones do.
PLAUSIBLE = Calibration(FEATURES, (6.0, 4.0, 5.0, -0.5), -9.0)


def two_cells_one_cut_by_a_faint_wall() -> np.ndarray:
    """Return an edge map: a clean cell on the left, a cell on the right with a faint wall across it."""
    edges = np.full((40, 90), 0.05)
    edges[:, :3] = edges[:, -3:] = edges[:3, :] = edges[-3:, :] = 0.95
    edges[:, 30:33] = 0.95   # strong wall between the two cells
    edges[:, 60:62] = 0.55   # faint, but above the threshold: it cuts the right cell in two
    return edges


def segmented(edges: np.ndarray) -> np.ndarray:
    return segment_edges(edges, SegmentParams(threshold=0.5, marker_h=32, merge_threshold=0.0, min_area=4))


def test_a_clean_cell_is_more_confident_than_the_pieces_of_a_cell_cut_by_a_faint_wall():
    edges = two_cells_one_cut_by_a_faint_wall()
    labels = segmented(edges)
    clean, *pieces = (labels[20, 15], labels[20, 45], labels[20, 75])
    assert len({clean, *pieces}) == 3 and 0 not in (clean, *pieces)
    for calibration in (None, PLAUSIBLE):
        confidence = cell_confidence(labels, edges, [clean, *pieces], calibration=calibration)
        assert confidence[0] > confidence[1] and confidence[0] > confidence[2]


def test_the_weakest_wall_of_a_cut_cell_is_the_faint_wall():
    edges = two_cells_one_cut_by_a_faint_wall()
    labels = segmented(edges)
    features = cell_features(labels, edges, [labels[20, 15], labels[20, 45]])
    assert features["weakest_wall"][0] == pytest.approx(0.95)
    assert features["weakest_wall"][1] == pytest.approx(0.55)


def test_a_cell_alone_on_background_is_judged_by_its_ring():
    labels = np.zeros((30, 30), np.int32)
    labels[10:20, 10:20] = 1
    edges = np.where(labels > 0, 0.1, 0.8)
    features = cell_features(labels, edges, [1], background=labels == 0)
    assert features["interior_probability"][0] == pytest.approx(0.9)
    assert features["boundary_probability"][0] == pytest.approx(0.8)
    assert features["weakest_wall"][0] == pytest.approx(0.8)


def test_confidence_lies_between_zero_and_one_whatever_the_map_and_the_weights():
    rng = np.random.default_rng(3)
    edges = np.clip(rng.random((64, 64)) ** 3 + np.add.outer(np.arange(64) % 16 < 2, np.arange(64) % 16 < 2), 0, 1)
    labels = segmented(edges)
    cells = np.unique(labels[labels > 0])
    assert cells.size > 5
    extreme = Calibration(FEATURES, (500.0, -500.0, 500.0, 50.0), 40.0)
    for calibration in (None, PLAUSIBLE, extreme):
        confidence = cell_confidence(labels, edges, cells, calibration=calibration)
        assert confidence.shape == cells.shape
        assert np.all((confidence >= 0) & (confidence <= 1))


def test_roc_auc_counts_correct_cells_ranked_above_wrong_ones():
    correct = np.array([True, True, False, False])
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), correct) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), correct) == 0.0
    assert roc_auc(np.full(4, 0.5), correct) == 0.5
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([True, True])))


def test_a_fitted_calibration_ranks_by_the_feature_that_decides_correctness():
    rng = np.random.default_rng(0)
    n = 2000
    features = {name: rng.random(n) for name in FEATURES}
    correct = rng.random(n) < features["weakest_wall"]  # only the weakest wall matters
    calibration = fit_calibration(features, correct)
    weights = dict(zip(calibration.features, calibration.coefficients))
    assert weights["weakest_wall"] > 2 and all(abs(weights[name]) < 1 for name in FEATURES if name != "weakest_wall")
    assert roc_auc(calibration(features), correct) > 0.7
    # Calibrated: about as many correct cells as the confidences promise.
    assert calibration(features).mean() == pytest.approx(correct.mean(), abs=0.01)


def test_a_calibration_survives_the_card_and_a_card_without_one_has_none():
    card = PLAUSIBLE.as_card(roc_auc={"isbi": 0.9})
    assert json.loads(json.dumps(card))["roc_auc"] == {"isbi": 0.9}
    assert Calibration.from_card(json.loads(json.dumps(card))) == PLAUSIBLE
    assert Calibration.from_card({}) is None
    with pytest.raises(ValueError, match="unknown confidence features"):
        Calibration(("brightness",), (1.0,), 0.0)


def test_a_cell_is_correct_when_it_overlaps_a_true_cell_by_half_its_union():
    truth = np.zeros((10, 10), np.int32)
    truth[0:4, 0:4] = 1
    truth[6:10, 6:10] = 2
    pred = np.zeros_like(truth)
    pred[0:4, 0:3] = 7        # IoU 12/16 with cell 1
    pred[6:10, 6:8] = 9       # IoU 8/16: exactly one half
    pred[6:10, 8:10] = 3      # the other half of cell 2
    labels, iou = best_iou(truth, pred)
    assert labels.tolist() == [3, 7, 9]
    assert iou.tolist() == pytest.approx([0.5, 0.75, 0.5])
    assert correct_cells(pred, truth, [7, 9, 3]).tolist() == [True, True, True]
    assert correct_cells(pred, truth, [7, 9], iou=0.6).tolist() == [True, False]


def test_the_pipeline_gives_every_cell_a_confidence_from_the_card_when_it_has_a_calibration(tiny_model, tmp_path):
    image = synthetic_cells((128, 128), kind="tissue", seed=7, mean_cell_diameter=20).image
    plain = CellSegmenter(tiny_model)(image)
    assert plain.cells["confidence"].shape == plain.cells["label"].shape
    assert plain.n_cells > 5 and np.all((plain.cells["confidence"] >= 0) & (plain.cells["confidence"] <= 1))

    calibrated_model = model_copy(tiny_model, tmp_path / "calibrated")
    write_calibrated_card(calibrated_model, PLAUSIBLE.as_card(roc_auc={"tissue": 0.9}))
    calibrated = CellSegmenter(calibrated_model)(image)
    features = cell_features(calibrated.labels, calibrated.edge_probability, calibrated.cells["label"])
    np.testing.assert_allclose(calibrated.cells["confidence"], PLAUSIBLE(features))
    assert calibrated.cells["confidence"].tolist() != plain.cells["confidence"].tolist()
    assert json.loads(calibrated_model.with_suffix(".json").read_text())["confidence"]["roc_auc"] == {"tissue": 0.9}


def test_cellpipe_segment_writes_each_cells_confidence_in_its_csv(tiny_model, tmp_path):
    image = synthetic_cells((128, 128), kind="tissue", seed=8, mean_cell_diameter=20).image
    write_png(tmp_path / "in" / "tissue.png", image)
    result = CliRunner().invoke(app, ["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                                      "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "out" / "tissue_cells.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 5
    assert all(0.0 <= float(row["confidence"]) <= 1.0 for row in rows)
