"""Walls painted by hand → cells: black strokes on white, and on a copy of the image."""

import numpy as np
import pytest

from cellpipe.painted import fill_strokes, painted_canvas, painted_cells, painted_strokes
from cellpipe.synthetic import synthetic_cells


@pytest.fixture(scope="module")
def sample():
    return synthetic_cells((120, 150), kind="tissue", mean_cell_diameter=26, seed=7)


def walls_of(labels):
    return labels == 0


def matched_iou(truth, cells):
    """Return the smallest IoU of a true cell with the found cell that overlaps it most."""
    ious = []
    for cell in range(1, truth.max() + 1):
        mask = truth == cell
        found = cells[mask]
        found = found[found > 0]
        match = cells == np.bincount(found).argmax() if found.size else np.zeros_like(mask)
        ious.append((mask & match).sum() / (mask | match).sum())
    return min(ious)


def test_black_strokes_on_white_enclose_the_cells(sample):
    painting = np.where(walls_of(sample.labels), 0, 255).astype(np.uint8)
    found = painted_cells(painting)
    assert found.canvas == "white"
    assert found.n_cells == sample.n_cells
    assert matched_iou(sample.labels, found.cells) == 1.0


def test_anti_aliased_stroke_edges_on_white_count_as_wall():
    painting = np.full((20, 30), 255, np.uint8)
    painting[:, 14:16] = 0
    painting[:, 13] = painting[:, 16] = 100  # soft brush edge
    strokes = painted_strokes(painting)
    assert strokes[:, 13:17].all() and not strokes[:, 12].any() and not strokes[:, 17].any()


def test_black_strokes_painted_on_the_image_are_found_without_the_original(sample):
    painting = sample.image.copy()
    painting[walls_of(sample.labels)] = 0
    found = painted_cells(painting)
    assert found.canvas == "image"
    assert found.n_cells == sample.n_cells
    assert matched_iou(sample.labels, found.cells) == 1.0


def test_pure_black_spots_of_the_image_inside_a_cell_make_no_extra_cell(sample):
    painting = sample.image.copy()
    painting[walls_of(sample.labels)] = 0
    rows, cols = np.nonzero(sample.labels == sample.labels[60, 75])
    painting[rows[len(rows) // 2], cols[len(cols) // 2]] = 0  # a dark pore in the image itself
    assert painted_cells(painting).n_cells == sample.n_cells


def test_with_the_original_only_pixels_the_painting_changed_are_strokes(sample):
    original = sample.image.copy()
    original[:3, :3] = 0  # black in the image itself, not painted
    painting = original.copy()
    painting[walls_of(sample.labels)] = 0
    strokes = painted_strokes(painting, original)
    assert not strokes[:3, :3][sample.labels[:3, :3] > 0].any()
    assert strokes[walls_of(sample.labels) & (original > 8)].all()


def test_one_pixel_diagonal_stroke_separates_cells():
    painting = np.full((10, 10), 255, np.uint8)
    painting[np.arange(10), np.arange(10)] = 0
    assert painted_cells(painting, canvas="white").n_cells == 2


def test_specks_between_strokes_are_not_cells():
    painting = np.full((20, 20), 255, np.uint8)
    painting[:, 8:12] = 0
    painting[10, 10] = 255  # a gap inside the thick stroke
    assert painted_cells(painting, canvas="white").n_cells == 2


def test_a_mostly_white_painting_is_on_white_and_a_photo_is_not(sample):
    on_white = np.full((30, 30), 255, np.uint8)
    on_white[:, 15] = 0
    assert painted_canvas(on_white) == "white"
    assert painted_canvas(sample.image) == "image"


def test_filled_strokes_take_the_values_of_unpainted_neighbours():
    image = np.tile(np.arange(10, dtype=np.uint8) * 20, (6, 1))
    strokes = np.zeros(image.shape, bool)
    strokes[:, 4] = True
    painted = image.copy()
    painted[strokes] = 0
    filled = fill_strokes(painted, strokes)
    assert set(filled[:, 4]) <= {60, 100}
    np.testing.assert_array_equal(filled[~strokes], image[~strokes])


def test_original_of_another_size_is_rejected(sample):
    with pytest.raises(ValueError, match="original"):
        painted_strokes(sample.image, sample.image[:-1], canvas="image")
