"""segment_edges turns membrane-style edge maps into one label per cell."""

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellpipe.segment import SegmentParams, cell_markers, quantise_edges, segment_edges


def voronoi_edges(shape=(160, 200), n_cells=30, min_spacing=22, noise=0.05, seed=0):
    """Return (edge_probability, true_cells): blurred noisy Voronoi walls, cell interiors.

    true_cells holds 1..n on each Voronoi cell minus its walls, 0 on walls.
    """
    rng = np.random.default_rng(seed)
    sites = []
    while len(sites) < n_cells:
        site = rng.uniform((4, 4), (shape[0] - 4, shape[1] - 4))
        if all(np.hypot(*(site - other)) >= min_spacing for other in sites):
            sites.append(site)
    not_site = np.ones(shape, dtype=bool)
    for row, col in np.round(sites).astype(int):
        not_site[row, col] = False
    _, (rows, cols) = ndi.distance_transform_edt(not_site, return_indices=True)
    owner = rows * shape[1] + cols
    walls = np.zeros(shape, dtype=bool)
    walls[:, 1:] |= owner[:, 1:] != owner[:, :-1]
    walls[1:, :] |= owner[1:, :] != owner[:-1, :]
    clean = np.clip(ndi.gaussian_filter(walls.astype(float), 1.0) * 2.5, 0, 1)
    edges = np.clip(clean + rng.normal(0, noise, shape), 0, 1)
    _, true_cells = np.unique(owner, return_inverse=True)
    true_cells = (true_cells.reshape(shape) + 1) * (clean < 0.5)
    return edges, true_cells


def grid_edges(n_rows=4, n_cols=5, pitch=20, wall=2):
    """Return an edge map of a square grid of walls: n_rows * n_cols closed cells."""
    edges = np.zeros((n_rows * pitch + wall, n_cols * pitch + wall))
    for k in range(n_rows + 1):
        edges[k * pitch : k * pitch + wall, :] = 1.0
    for k in range(n_cols + 1):
        edges[:, k * pitch : k * pitch + wall] = 1.0
    return edges


def iou_matrix(true_cells, found_cells):
    """Return IoU[i, j] between true cell i+1 and found cell j+1."""
    n_true, n_found = true_cells.max(), found_cells.max()
    pairs = np.bincount(
        true_cells.ravel() * (n_found + 1) + found_cells.ravel(),
        minlength=(n_true + 1) * (n_found + 1),
    ).reshape(n_true + 1, n_found + 1)
    true_area, found_area = pairs.sum(1, keepdims=True), pairs.sum(0, keepdims=True)
    union = true_area + found_area - pairs
    return (pairs / np.maximum(union, 1))[1:, 1:]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_as_many_cells_as_were_drawn(seed):
    edges, true_cells = voronoi_edges(seed=seed)
    assert segment_edges(edges).max() == true_cells.max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_drawn_cell_overlaps_exactly_one_found_cell(seed):
    edges, true_cells = voronoi_edges(seed=seed)
    iou = iou_matrix(true_cells, segment_edges(edges))
    assert ((iou > 0.8).sum(axis=1) == 1).all()
    assert ((iou > 0.8).sum(axis=0) == 1).all()


def test_a_grid_of_walls_gives_one_cell_per_square():
    labels = segment_edges(grid_edges(n_rows=4, n_cols=5))
    assert labels.max() == 20
    assert (np.bincount(labels.ravel())[1:] == 18 * 18).all()


def test_wall_pixels_are_zero_by_default():
    edges = grid_edges()
    labels = segment_edges(edges)
    assert not labels[edges >= 0.5].any()
    assert labels[edges < 0.5].all()


def test_label_walls_tiles_the_image_with_cells():
    labels = segment_edges(grid_edges(), SegmentParams(label_walls=True))
    assert labels.max() == 20
    assert labels.all()


def test_cells_touching_through_a_gap_in_their_wall_are_split():
    edges = grid_edges(n_rows=1, n_cols=2, pitch=40)
    edges[15:27, 40:42] = 0.3  # a 12-pixel hole in the wall between the two cells
    labels = segment_edges(edges)
    assert labels.max() == 2
    assert labels[20, 20] != labels[20, 62]


def test_the_split_through_a_gap_follows_the_faint_wall():
    edges = grid_edges(n_rows=1, n_cols=2, pitch=40)
    edges[15:27, 40:42] = 0.3
    labels = segment_edges(edges)
    assert (labels[2:40, 2:40] == labels[20, 20]).all()
    assert (labels[2:40, 42:80] == labels[20, 62]).all()


def test_min_area_drops_small_cells_to_zero():
    edges = grid_edges(n_rows=1, n_cols=2, pitch=20)
    edges[5:7, 2:10] = edges[2:7, 8:10] = 1.0  # walls off a corner of the first cell
    tiny = (slice(2, 5), slice(2, 8))  # a 3x6 = 18-pixel cell
    kept = segment_edges(edges, SegmentParams(min_area=18))
    dropped = segment_edges(edges, SegmentParams(min_area=19))
    assert kept.max() == 3 and np.unique(kept[tiny]).size == 1 and kept[tiny].all()
    assert dropped.max() == 2 and not dropped[tiny].any()


def test_labels_run_consecutively_from_one_after_dropping_cells():
    edges, _ = voronoi_edges(n_cells=12, seed=4)
    edges[8:16, 8:16] = 1.0
    edges[9:15, 9:15] = 0.0  # a walled 6x6 = 36-pixel cell
    all_cells = segment_edges(edges, SegmentParams(min_area=1))
    labels = segment_edges(edges, SegmentParams(min_area=40))
    assert all_cells[9:15, 9:15].all() and not labels[9:15, 9:15].any()
    np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))


def test_labels_are_int32_with_the_shape_of_the_map():
    edges = grid_edges()
    labels = segment_edges(edges.astype(np.float32))
    assert labels.dtype == np.int32 and labels.shape == edges.shape


def test_an_all_wall_image_has_no_cells():
    assert segment_edges(np.ones((30, 40))).max() == 0


def test_an_empty_image_has_no_cells():
    labels = segment_edges(np.zeros((0, 12)))
    assert labels.shape == (0, 12) and labels.dtype == np.int32


def test_an_image_without_walls_is_one_cell():
    labels = segment_edges(np.zeros((30, 40)))
    assert labels.max() == 1 and labels.all()


@pytest.mark.parametrize("shape", [(10,), (3, 10, 10)])
def test_maps_that_are_not_2d_are_rejected(shape):
    with pytest.raises(ValueError, match="2-D"):
        segment_edges(np.zeros(shape))


def test_maps_with_nan_are_rejected():
    edges = np.zeros((10, 10))
    edges[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        segment_edges(edges)


@pytest.mark.parametrize("bad_value", [-0.1, 1.5, 255])
def test_maps_outside_0_1_are_rejected(bad_value):
    edges = np.zeros((10, 10))
    edges[0, 0] = bad_value
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        segment_edges(edges)


@pytest.mark.parametrize(
    "field, value",
    [("threshold", 0.0), ("threshold", 1.5), ("marker_h", 0.0), ("min_area", -1),
     ("connectivity", 3)],
)
def test_out_of_range_parameters_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        SegmentParams(**{field: value})


def test_parameters_round_trip_through_as_dict_and_json():
    params = SegmentParams(threshold=0.4, marker_h=3.0, min_area=10, connectivity=2)
    recorded = json.loads(json.dumps(params.as_dict()))
    assert SegmentParams(**recorded) == params


def test_parameters_are_frozen():
    with pytest.raises(AttributeError):
        SegmentParams().threshold = 0.2


def test_one_marker_per_closed_cell():
    markers = cell_markers(grid_edges(n_rows=3, n_cols=4))
    assert markers.max() == 12
    assert markers.dtype == np.int32


def test_markers_are_the_cores_of_the_cells():
    markers = cell_markers(grid_edges(n_rows=1, n_cols=1, pitch=20), h=2.0)
    core = np.argwhere(markers == 1)
    # distance to the wall peaks at 9 in the middle of the 18x18 interior
    assert (np.abs(core - 10.5).max(axis=1) <= 3).all()


def test_two_disks_joined_by_a_narrow_neck_get_two_markers():
    rows, cols = np.mgrid[:40, :80]
    inside = ((rows - 20) ** 2 + (cols - 20) ** 2 < 15**2) | (
        (rows - 20) ** 2 + (cols - 58) ** 2 < 15**2
    )
    inside |= (np.abs(rows - 20) < 2) & (cols > 20) & (cols < 60)
    markers = cell_markers(np.where(inside, 0.1, 0.9))
    assert markers.max() == 2
    assert markers[20, 20] != markers[20, 58] and markers[20, 20] and markers[20, 58]


def test_a_large_h_keeps_a_waisted_cell_whole():
    rows, cols = np.mgrid[:40, :80]
    inside = ((rows - 20) ** 2 + (cols - 20) ** 2 < 15**2) | (
        (rows - 20) ** 2 + (cols - 58) ** 2 < 15**2
    )
    inside |= (np.abs(rows - 20) < 10) & (cols > 20) & (cols < 60)
    edges = np.where(inside, 0.1, 0.9)
    assert cell_markers(edges, h=2.0).max() == 2
    assert cell_markers(edges, h=8.0).max() == 1


def test_quantised_walls_lie_above_every_interior_level():
    edges = np.array([[0.0, 0.49, 0.499, 0.5, 0.51, 1.0]])
    levels = quantise_edges(edges, 0.5)
    assert levels.dtype == np.uint8
    assert levels[0, :3].max() < levels[0, 3:].min()
    np.testing.assert_array_equal(levels[0, [0, 5]], [0, 255])


# --- merging across weak boundaries (merge_threshold) ------------------------------------

MERGING = SegmentParams(threshold=0.5, marker_h=2.0, merge_threshold=0.5, min_area=16)


def test_with_merging_cells_touching_through_an_open_gap_keep_the_rest_of_their_wall():
    edges = grid_edges(n_rows=1, n_cols=2, pitch=40)
    edges[15:27, 40:42] = 0.0  # a 12-pixel opening: the interiors join
    assert segment_edges(edges, SegmentParams(marker_h=64.0)).max() == 1
    labels = segment_edges(edges, MERGING)
    assert labels.max() == 2
    assert labels[20, 20] != labels[20, 62]


def test_with_merging_a_cell_split_by_a_small_h_is_one_cell_again():
    # A waisted cell inside a 3-pixel wall, with more cell interior beyond the wall.
    rows, cols = np.mgrid[:60, :100]
    inside = ((rows - 30) ** 2 + (cols - 31) ** 2 < 15**2) | ((rows - 30) ** 2 + (cols - 69) ** 2 < 15**2)
    inside |= (np.abs(rows - 30) < 10) & (cols > 31) & (cols < 69)
    wall = ndi.binary_dilation(inside, iterations=3) & ~inside
    edges = np.where(wall, 0.9, 0.1)
    markers = cell_markers(edges, threshold=0.5, h=2.0)
    assert len(np.unique(markers[inside & (markers > 0)])) == 2  # h=2 splits it in two
    labels = segment_edges(edges, MERGING)
    cell = labels[30, 31]
    assert cell and (labels[inside] == cell).all()
    assert not (labels[~inside] == cell).any()


def test_with_merging_walls_are_zero_unless_label_walls():
    edges = grid_edges()
    labels = segment_edges(edges, MERGING)
    assert labels.max() == 20
    assert (labels[edges >= 0.5] == 0).all()
    tiled = segment_edges(edges, dataclasses.replace(MERGING, label_walls=True))
    assert tiled.max() == 20 and tiled.all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_merging_every_drawn_cell_overlaps_exactly_one_found_cell(seed):
    edges, true_cells = voronoi_edges(seed=seed)
    found = segment_edges(edges, MERGING)
    iou = iou_matrix(true_cells, found)
    assert (iou.max(axis=1) > 0.5).all()
    assert found.max() == true_cells.max()


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_merge_threshold_outside_0_1_is_rejected(value):
    with pytest.raises(ValueError, match="merge_threshold"):
        SegmentParams(merge_threshold=value)
