"""The default segmentation parameters keep whole cells whole, and the shipped model meets its targets.

The library defaults of :class:`cellpipe.segment.SegmentParams` were tuned for the edge
model on out-of-fold edge maps of ISBI 2012 slices 0–19; the shipped generalist's own
values live in its card (``cellpipe model tune`` on the ``val`` splits). The scores below
are on the ``test`` splits of :func:`cellpipe.unet.mix.default_sources`, which no choice
ever saw.
"""

from pathlib import Path

import numpy as np
import pytest

from cellpipe.segment import SegmentParams, segment_edges

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Counts by eye, tests/data/README.md.
SEED_COUNTS = {"cell.jpg": 150, "polyurethane.jpg": 42}
#: What the shipped generalist must reach on held-out images: the level measured
#: (README's table) less a small margin, so that a regression fails. The issue's targets
#: (V_rand 0.97 / F1 0.85 on EM, F1 0.85 elsewhere) are not all reached yet.
TARGETS = {
    "isbi": {"v_rand": 0.78, "f1": 0.68, "v_rand@0.5x": 0.75, "v_rand@2x": 0.70},
    "dsb": {"f1": 0.79},
    "gowt1": {"f1": 0.72},
    "nuclei-synthetic": {"f1": 0.91},
    "tissue": {"f1": 0.95},
    "foam": {"f1": 0.79},
}


def walled_shape(inside: np.ndarray) -> np.ndarray:
    """Return an edge map that is 1 everywhere except on the ``inside`` pixels."""
    return np.where(inside, 0.0, 1.0)


def beaded_cell(n_beads=5, radius=12, spacing=18, margin=6) -> np.ndarray:
    """Return the mask of an elongated cell that bulges and narrows: a row of overlapping discs.

    Its distance map has one peak per bead, about 4 pixels above the necks between them.
    """
    height = 2 * (radius + margin)
    width = 2 * (radius + margin) + (n_beads - 1) * spacing
    rows, cols = np.mgrid[0:height, 0:width]
    inside = np.zeros((height, width), dtype=bool)
    for k in range(n_beads):
        inside |= np.hypot(rows - (radius + margin), cols - (radius + margin + k * spacing)) <= radius
    return inside


def test_default_parameters_keep_an_elongated_cell_with_several_bulges_whole():
    labels = segment_edges(walled_shape(beaded_cell()))
    assert labels.max() == 1


def test_default_parameters_split_two_large_cells_joined_through_a_narrow_gap():
    inside = np.zeros((110, 214), dtype=bool)
    inside[2:108, 2:106] = inside[2:108, 108:212] = True  # two 106 x 104 cells, one wall
    inside[50:56, 106:108] = True  # a 6-pixel hole in that wall
    labels = segment_edges(walled_shape(inside))
    assert labels.max() == 2
    assert labels[55, 50] != labels[55, 160]


def test_default_parameters_drop_specks_smaller_than_min_area():
    inside = np.zeros((60, 60), dtype=bool)
    inside[5:55, 5:30] = True  # a cell
    inside[10:12, 40:43] = True  # a 6-pixel speck
    labels = segment_edges(walled_shape(inside))
    assert SegmentParams().min_area > 6
    assert labels.max() == 1 and not labels[10:13, 40:44].any()


_SEGMENTER = {}


def shipped(name: str = "generalist"):
    """Return a segmenter of the shipped model ``name`` with its card's defaults (loaded once)."""
    from cellpipe.pipeline import CellSegmenter

    if not SHARED.is_dir():
        pytest.fail(f"shared data not found at {SHARED}: these tests need ../shared/data")
    if name not in _SEGMENTER:
        _SEGMENTER[name] = CellSegmenter(name)
    return _SEGMENTER[name]


def held_out_scores(source_name: str, factor: float = 1.0, model: str = "generalist") -> dict:
    """Return the mean scores of a shipped model on ``source_name``'s test items resampled by ``factor``."""
    from cellpipe.metrics import evaluate_dataset, evaluate_pair
    from cellpipe.scale import resampled_copy
    from cellpipe.unet.mix import default_sources, scored_items

    segmenter = shipped(model)
    source = next(s for s in default_sources(SHARED) if s.name == source_name)
    scores = []
    for _, image, truth in scored_items(source, "test"):
        image, truth = resampled_copy(image, truth, factor)
        scores.append(evaluate_pair(segmenter(image).labels, truth))
    return evaluate_dataset(scores)


@pytest.mark.slow
def test_the_default_edge_model_reaches_v_rand_0_95_on_held_out_isbi_slices():
    assert held_out_scores("isbi", model="default")["v_rand"] >= 0.95


@pytest.mark.slow
def test_shipped_model_on_held_out_em_slices_at_native_scale():
    scores = held_out_scores("isbi")
    assert scores["v_rand"] >= TARGETS["isbi"]["v_rand"] and scores["f1"] >= TARGETS["isbi"]["f1"]


@pytest.mark.slow
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_shipped_model_on_held_out_em_slices_at_half_and_twice_the_magnification(factor):
    assert held_out_scores("isbi", factor)["v_rand"] >= TARGETS["isbi"][f"v_rand@{factor:g}x"]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["dsb", "gowt1", "nuclei-synthetic", "tissue", "foam"])
def test_shipped_model_finds_the_cells_of_held_out_images_of_each_kind(source):
    assert held_out_scores(source)["f1"] >= TARGETS[source]["f1"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param("cell.jpg", marks=pytest.mark.xfail(
        strict=True, reason="the generalist finds 119 of the ~150 cells (thin walls missed; issue 14 stays open)")),
    pytest.param("polyurethane.jpg", marks=pytest.mark.xfail(
        strict=True, reason="the generalist finds 32 of the ~42 cells at half size (issue 14 stays open)")),
])
def test_shipped_model_counts_the_seed_samples_within_15_percent_of_the_count_by_eye(name):
    from cellpipe.io import read_image

    by_eye = SEED_COUNTS[name]  # tests/data/README.md
    found = shipped()(read_image(SHARED / "seed-samples" / name)).n_cells
    assert abs(found - by_eye) <= 0.15 * by_eye, f"{found} cells found, {by_eye} counted by eye"
