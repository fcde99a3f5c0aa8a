"""The default segmentation parameters keep whole cells whole, and meet the accuracy target.

The defaults of :class:`cellpipe.segment.SegmentParams` were tuned on out-of-fold edge
maps of ISBI 2012 slices 0–19 (``benchmarks/tune_segment.py --fold``); slices 20–24 are
held out.
"""

from pathlib import Path

import numpy as np
import pytest

from cellpipe.segment import SegmentParams, segment_edges

ISBI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isbi2012" / "train"
HELD_OUT = ("20", "21", "22", "23", "24")


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


@pytest.mark.slow
def test_shipped_model_reaches_v_rand_0_95_on_held_out_isbi_slices():
    if not ISBI.is_dir():
        pytest.skip(f"shared ISBI 2012 data not found at {ISBI}")
    from cellpipe.io import read_image
    from cellpipe.metrics import evaluate_pair
    from cellpipe.pipeline import CellSegmenter

    segmenter = CellSegmenter()
    scores = [
        evaluate_pair(
            segmenter(read_image(ISBI / "image" / f"{name}.png")).labels,
            read_image(ISBI / "label" / f"{name}.png"),
        )["v_rand"]
        for name in HELD_OUT
    ]
    assert np.mean(scores) >= 0.95
