"""Quality figures on small hand-made label images: chords and anisotropy against an
independent count, Feret calipers against a convex hull, wall thickness, size percentiles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import ConvexHull
from skimage.measure import label as connected_components
from skimage.measure import regionprops

from cellpipe.feret import feret_diameters
from cellpipe.measure import regionprops_table
from cellpipe.quality import (
    D3576_CHORD_PER_CELL_SIZE,
    cells_and_quality,
    image_quality,
    mean_chords,
    mean_wall_thickness,
    quality_in_micrometres,
)


def wall_grid(pitch_x: int, pitch_y: int, n_x: int, n_y: int, wall: int = 2) -> np.ndarray:
    """Return cells of pitch_x x pitch_y pixels (walls included), walls on every side, one label each."""
    height, width = n_y * pitch_y + wall, n_x * pitch_x + wall
    interior = np.ones((height, width), bool)
    for k in range(n_x + 1):
        interior[:, k * pitch_x : k * pitch_x + wall] = False
    for k in range(n_y + 1):
        interior[k * pitch_y : k * pitch_y + wall, :] = False
    return connected_components(interior, connectivity=1).astype(np.int32)


def crossings_by_walking(line: np.ndarray) -> list[float]:
    """Crossing positions along one line, counted pixel by pixel (the independent count)."""
    positions, previous_cell, previous_end = [], 0, None
    for index, value in enumerate(line.tolist()):
        if value == 0:
            continue
        if previous_cell and value != previous_cell:
            positions.append((previous_end + index) / 2)
        previous_cell, previous_end = value, index + 1
    return positions


def chord_by_walking(labels: np.ndarray) -> float:
    length = intervals = 0.0
    for line in labels:
        positions = crossings_by_walking(line)
        if len(positions) >= 2:
            length += positions[-1] - positions[0]
            intervals += len(positions) - 1
    return length / intervals


def test_chord_of_a_regular_grid_is_its_pitch():
    labels = wall_grid(10, 10, 6, 6)
    chord_x, chord_y, crossings_x, crossings_y = mean_chords(labels)
    assert chord_x == pytest.approx(10.0) and chord_y == pytest.approx(10.0)
    # Rows through cells cross 5 walls between 6 cells; rows on a wall cross none.
    assert crossings_x == 5 * 6 * 8


def test_anisotropy_of_a_grid_stretched_in_y():
    labels = wall_grid(12, 18, 6, 4)
    figures = image_quality(labels, regionprops_table(labels))
    assert figures["mean_chord_x_px"] == pytest.approx(12.0)
    assert figures["mean_chord_y_px"] == pytest.approx(18.0)
    assert figures["anisotropy"] == pytest.approx(1.5)
    assert figures["apparent_cell_size_px"] == pytest.approx(15.0 / D3576_CHORD_PER_CELL_SIZE)


def test_chords_agree_with_a_pixel_by_pixel_count_on_irregular_cells():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, (30, 40)).astype(np.int32)  # cells 1..3, wall 0, anything goes
    labels[rng.random(labels.shape) < 0.3] = 0
    chord_x, chord_y, crossings_x, crossings_y = mean_chords(labels)
    assert chord_x == pytest.approx(chord_by_walking(labels))
    assert chord_y == pytest.approx(chord_by_walking(labels.T))
    assert crossings_x == sum(len(crossings_by_walking(line)) for line in labels)
    assert crossings_y == sum(len(crossings_by_walking(line)) for line in labels.T)


def test_touching_cells_cross_without_a_wall_and_a_cell_seen_twice_does_not():
    labels = np.array([[1, 1, 2, 2, 0, 2, 0, 3, 3]])
    assert crossings_by_walking(labels[0]) == [2.0, 6.5]
    assert mean_chords(labels)[0] == pytest.approx(4.5)


def test_a_line_with_one_crossing_has_no_chord():
    assert mean_chords(np.array([[1, 1, 0, 2, 2]]))[0] is None


def test_wall_thickness_of_odd_widths_is_exact():
    for width in (1, 3, 5):
        labels = np.ones((9, 20), np.int32)
        labels[:, 10:] = 2
        labels[:, 10 - width // 2 : 10 + width // 2 + 1] = 0
        assert mean_wall_thickness(labels) == pytest.approx(width), width


def test_wall_thickness_needs_walls_and_cells():
    assert mean_wall_thickness(np.ones((4, 4), np.int32)) is None
    assert mean_wall_thickness(np.zeros((4, 4), np.int32)) is None


def test_wall_fraction_counts_wall_pixels():
    labels = wall_grid(10, 10, 3, 3, wall=2)  # 32 x 32, walls 2 px
    expected = np.count_nonzero(labels == 0) / labels.size
    assert image_quality(labels, regionprops_table(labels))["wall_fraction"] == pytest.approx(expected)
    assert expected == pytest.approx(1 - 9 * 8 * 8 / 1024)  # nine 8 x 8 cell interiors


def test_size_percentiles_with_and_without_border_cells():
    labels = np.zeros((40, 40), np.int32)
    labels[0:10, 0:10] = 1          # touches the border, 100 px
    labels[15:19, 15:19] = 2        # 16 px
    labels[22:28, 22:28] = 3        # 36 px
    labels[30:38, 2:10] = 4         # 64 px
    cells = regionprops_table(labels)
    figures = image_quality(labels, cells)
    inside = cells["equivalent_diameter_area"][~cells["touches_border"]]
    assert figures["n_border_cells"] == 1
    assert figures["d50_px"] == pytest.approx(np.sqrt(4 * 36 / np.pi))
    assert figures["d10_px"] == pytest.approx(np.percentile(inside, 10))
    assert figures["d90_all_px"] == pytest.approx(np.percentile(cells["equivalent_diameter_area"], 90))
    assert figures["d90_all_px"] > figures["d90_px"]  # the big border cell is in _all only


def test_micrometre_figures_and_density():
    labels = wall_grid(10, 10, 4, 4)  # 16 cells on 42 x 42 px
    figures = image_quality(labels, regionprops_table(labels))
    um = quality_in_micrometres(figures, 5.0)
    assert um["cells_per_mm2"] == pytest.approx(16 / (42 * 42 * 25.0) * 1e6)
    assert um["mean_chord_x_um"] == pytest.approx(50.0)
    assert all(value is None for value in quality_in_micrometres(figures, None).values())


def test_feret_of_rectangles_and_a_single_pixel():
    labels = np.zeros((12, 14), np.int32)
    labels[1:4, 1:9] = 5            # 3 x 8
    labels[6, 6] = 9                # one pixel
    labels[8:11, 10:13] = 7         # 3 x 3, touching the border? no: rows 8-10, cols 10-12
    cells = regionprops_table(labels)
    feret = feret_diameters(labels, cells)
    by_label = dict(zip(cells["label"].tolist(), zip(feret["feret_diameter_max"], feret["feret_diameter_min"])))
    assert by_label[5] == pytest.approx((np.hypot(3, 8), 3.0))
    assert by_label[9] == pytest.approx((np.sqrt(2), 1.0))
    assert by_label[7] == pytest.approx((np.hypot(3, 3), 3.0))


def hull_calipers(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    corners = np.concatenate([np.column_stack([cols + dx, rows + dy]) for dx in (0, 1) for dy in (0, 1)])
    hull = corners[ConvexHull(corners).vertices].astype(float)
    maximum = max(np.hypot(*(a - b)) for a in hull for b in hull)
    widths = []
    for a, b in zip(hull, np.roll(hull, -1, axis=0)):
        edge = (b - a) / np.hypot(*(b - a))
        widths.append(np.abs((hull - a) @ np.array([-edge[1], edge[0]])).max())
    return maximum, min(widths)


def test_feret_agrees_with_a_convex_hull_of_the_pixel_corners():
    rng = np.random.default_rng(11)
    labels = np.zeros((60, 60), np.int32)
    for value in range(1, 9):
        row, col = rng.integers(5, 55, 2)
        axes = rng.integers(2, 9, 2)
        angle = rng.uniform(0, np.pi)
        rr, cc = np.mgrid[0:60, 0:60]
        u = (cc - col) * np.cos(angle) + (rr - row) * np.sin(angle)
        v = -(cc - col) * np.sin(angle) + (rr - row) * np.cos(angle)
        labels[((u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1) & (labels == 0)] = value
    labels[20:40, 30] = 3 * (labels[20:40, 30] == 3)  # cut one cell: a label need not be connected
    cells = regionprops_table(labels)
    feret = feret_diameters(labels, cells)
    for index, value in enumerate(cells["label"]):
        expected = hull_calipers(labels == value)
        assert (feret["feret_diameter_max"][index], feret["feret_diameter_min"][index]) == pytest.approx(expected)


def test_feret_max_is_within_a_pixel_of_scikit_image():
    labels = wall_grid(9, 13, 3, 3)
    ours = feret_diameters(labels, regionprops_table(labels))["feret_diameter_max"]
    theirs = np.array([region.feret_diameter_max for region in regionprops(labels)])
    assert np.all(np.abs(ours - theirs) <= 1.5) and np.all(ours >= theirs)


def test_feret_handles_large_label_values():
    labels = np.zeros((5, 5), np.int64)
    labels[1:3, 1:4] = 2**40
    feret = feret_diameters(labels, regionprops_table(labels))
    assert feret["feret_diameter_max"] == pytest.approx([np.hypot(2, 3)])


def test_cells_and_quality_adds_feret_before_touches_border():
    labels = wall_grid(10, 10, 2, 2)
    cells, figures = cells_and_quality(labels, regionprops_table(labels))
    assert list(cells)[-3:] == ["feret_diameter_max", "feret_diameter_min", "touches_border"]
    assert figures["n_cells"] == 4
