"""Specification of cellpipe.measure.regionprops_table: skimage's numbers, one pass."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.measure import regionprops_table as skimage_regionprops_table

from cellpipe.measure import (
    BORDER_COLUMNS,
    CELL_COLUMNS,
    GEOMETRY_COLUMNS,
    INTENSITY_COLUMNS,
    cell_columns,
    regionprops_table,
)

SKIMAGE_PROPERTIES = [
    "label", "area", "centroid", "bbox", "axis_major_length", "axis_minor_length",
    "eccentricity", "orientation", "equivalent_diameter_area", "perimeter",
]
SKIMAGE_INTENSITY_PROPERTIES = ["intensity_mean", "intensity_min", "intensity_max"]
LABEL_DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int32, np.int64, np.int8, np.int16]

# Columns that skimage derives from a 2 x 2 eigenproblem; where the exact value is 0 (a
# line has no minor axis, a square no eccentricity) skimage returns rounding noise of
# about sqrt(1e-16 * major axis**2), hence the absolute tolerance.
NEAR_ZERO_ATOL = {"axis_minor_length": 1e-6, "eccentricity": 1e-6}


def skimage_table(labels, intensity=None):
    properties = SKIMAGE_PROPERTIES + (SKIMAGE_INTENSITY_PROPERTIES if intensity is not None else [])
    return skimage_regionprops_table(labels, intensity, properties=properties)


def skimage_table_of_any_labels(labels, intensity=None):
    """skimage's table; skimage allocates per label value up to the maximum, so images
    with huge label values are measured relabelled 1, 2, ... and the labels mapped back."""
    if labels.max(initial=0) < 10**5:
        return skimage_table(labels, intensity)
    values, dense = np.unique(labels, return_inverse=True)
    if values[0] != 0:
        values, dense = np.concatenate([[0], values]), dense + 1
    reference = skimage_table(dense.reshape(labels.shape), intensity)
    reference["label"] = values[reference["label"]]
    return reference


def assert_same_orientation(ours, reference, eccentricity):
    """Orientation is an axis: pi/2 and -pi/2 are the same one, and an isotropic cell
    (eccentricity 0) has none, so skimage's value there is whatever rounding gave."""
    anisotropic = eccentricity > 1e-6
    ours, reference = ours[anisotropic], reference[anisotropic]
    same = np.isclose(ours, reference, rtol=1e-9, atol=1e-9)
    vertical = np.isclose(np.abs(ours), np.pi / 2) & np.isclose(np.abs(reference), np.pi / 2)
    assert np.all(same | vertical), (ours[~(same | vertical)], reference[~(same | vertical)])


def assert_matches_skimage(labels, intensity=None):
    ours = regionprops_table(labels, intensity)
    reference = skimage_table_of_any_labels(labels, intensity)
    for name, expected in reference.items():
        if name == "orientation":
            assert_same_orientation(ours[name], expected, reference["eccentricity"])
        elif name in ("label", "area") or name.startswith("bbox"):
            np.testing.assert_array_equal(ours[name], expected, err_msg=name)
        else:
            np.testing.assert_allclose(
                ours[name], expected, rtol=1e-9, atol=NEAR_ZERO_ATOL.get(name, 0), err_msg=name
            )


def square_labels():
    labels = np.zeros((5, 6), dtype=np.int32)
    labels[0:3, 0:3] = 1
    return labels


# --- columns -------------------------------------------------------------------------

def test_columns_follow_skimage_names_in_order():
    assert list(CELL_COLUMNS) == [
        "label", "area", "centroid-0", "centroid-1", "bbox-0", "bbox-1", "bbox-2", "bbox-3",
        "axis_major_length", "axis_minor_length", "eccentricity", "orientation",
        "equivalent_diameter_area", "perimeter",
        "intensity_mean", "intensity_min", "intensity_max", "touches_border",
    ]
    assert CELL_COLUMNS == {**GEOMETRY_COLUMNS, **INTENSITY_COLUMNS, **BORDER_COLUMNS}


def test_table_without_intensity_has_geometry_and_border_columns_with_their_dtypes():
    table = regionprops_table(square_labels())
    assert list(table) == list(cell_columns(with_intensity=False))
    assert {name: column.dtype for name, column in table.items()} == cell_columns(False)


def test_table_with_intensity_has_every_column_with_its_dtype():
    labels = square_labels()
    table = regionprops_table(labels, labels.astype(np.uint8))
    assert {name: column.dtype for name, column in table.items()} == CELL_COLUMNS


@pytest.mark.parametrize("with_intensity", [False, True])
def test_image_without_cells_gives_empty_columns_of_the_right_dtype(with_intensity):
    labels = np.zeros((4, 7), dtype=np.uint16)
    table = regionprops_table(labels, np.ones((4, 7)) if with_intensity else None)
    assert {name: (len(column), column.dtype) for name, column in table.items()} == {
        name: (0, dtype) for name, dtype in cell_columns(with_intensity).items()
    }


def test_image_without_pixels_gives_empty_columns():
    table = regionprops_table(np.zeros((0, 5), dtype=np.int32))
    assert all(len(column) == 0 for column in table.values())


# --- hand-checked toy cells ------------------------------------------------------------

def test_square_of_nine_pixels():
    table = regionprops_table(square_labels())
    assert table["area"].tolist() == [9]
    assert (table["centroid-0"][0], table["centroid-1"][0]) == (1.0, 1.0)
    assert [table[f"bbox-{i}"][0] for i in range(4)] == [0, 0, 3, 3]
    # 8 border pixels, each with code 5 (corners) or 25 (edge middles), weight 1 each
    assert table["perimeter"][0] == 8.0
    # inertia tensor diag(6/9, 6/9): both axes 4 * sqrt(2/3), no eccentricity
    assert table["axis_major_length"][0] == pytest.approx(4 * math.sqrt(2 / 3), rel=1e-15)
    assert table["axis_minor_length"][0] == pytest.approx(4 * math.sqrt(2 / 3), rel=1e-15)
    assert table["eccentricity"][0] == 0.0
    assert table["equivalent_diameter_area"][0] == pytest.approx(math.sqrt(36 / math.pi))


def test_square_matches_skimage_including_isotropic_orientation():
    labels = square_labels()
    ours, reference = regionprops_table(labels), skimage_table(labels)
    assert ours["orientation"][0] == reference["orientation"][0] == -np.pi / 4
    assert ours["perimeter"][0] == reference["perimeter"][0]


def test_single_pixel_has_no_extent():
    labels = np.zeros((3, 3), dtype=np.uint8)
    labels[1, 1] = 4
    table = regionprops_table(labels)
    assert table["area"].tolist() == [1]
    assert table["perimeter"][0] == 0.0
    assert table["axis_major_length"][0] == table["axis_minor_length"][0] == 0.0
    assert table["eccentricity"][0] == 0.0
    assert table["orientation"][0] == skimage_table(labels)["orientation"][0] == -np.pi / 4


@pytest.mark.parametrize(
    "rows, cols, orientation",
    [
        (np.full(5, 2), np.arange(1, 6), np.pi / 2),     # horizontal
        (np.arange(1, 6), np.full(5, 3), 0.0),           # vertical
        (np.arange(5), np.arange(5), np.pi / 4),         # diagonal
        (np.arange(5), 4 - np.arange(5), -np.pi / 4),    # anti-diagonal
    ],
    ids=["horizontal", "vertical", "diagonal", "anti-diagonal"],
)
def test_line_has_eccentricity_one_no_minor_axis_and_skimage_orientation(rows, cols, orientation):
    labels = np.zeros((7, 9), dtype=np.int32)
    labels[rows, cols] = 1
    table = regionprops_table(labels)
    assert table["eccentricity"][0] == 1.0
    assert table["axis_minor_length"][0] == 0.0
    assert table["orientation"][0] == pytest.approx(orientation, abs=1e-15)
    assert table["orientation"][0] == pytest.approx(skimage_table(labels)["orientation"][0], abs=1e-15)


def test_touches_border_flags_cells_in_the_first_or_last_row_or_column():
    labels = np.zeros((6, 6), dtype=np.int32)
    labels[0, 2] = 1      # first row
    labels[2:4, 5] = 2    # last column
    labels[2:4, 2:4] = 3  # inside
    labels[5, 0] = 4      # last row and first column
    table = regionprops_table(labels)
    assert dict(zip(table["label"].tolist(), table["touches_border"].tolist())) == {
        1: True, 2: True, 3: False, 4: True,
    }


def test_rows_are_for_labels_present_sorted_ascending():
    labels = np.array([[9, 9, 0, 2], [0, 0, 0, 2], [40, 0, 0, 0]], dtype=np.uint16)
    assert regionprops_table(labels)["label"].tolist() == [2, 9, 40]


def test_a_cell_in_several_pieces_is_one_row():
    labels = np.zeros((5, 5), dtype=np.int32)
    labels[0, 0] = labels[4, 4] = 3
    table = regionprops_table(labels)
    assert table["area"].tolist() == [2]
    assert (table["centroid-0"][0], table["centroid-1"][0]) == (2.0, 2.0)


def test_intensity_statistics_of_a_cell():
    labels = np.array([[1, 1, 0], [1, 2, 2]], dtype=np.int32)
    intensity = np.array([[10, 20, 99], [30, 5, 7]], dtype=np.uint8)
    table = regionprops_table(labels, intensity)
    assert table["intensity_mean"].tolist() == [20.0, 6.0]
    assert table["intensity_min"].tolist() == [10.0, 5.0]
    assert table["intensity_max"].tolist() == [30.0, 7.0]


def test_float32_intensities_are_averaged_in_double_precision():
    labels = np.ones((1, 3), dtype=np.int32)
    intensity = np.array([[1.0, 2.0**-24, 2.0**-24]], dtype=np.float32)
    assert regionprops_table(labels, intensity)["intensity_mean"][0] == (1.0 + 2.0**-23) / 3


# --- agreement with skimage ----------------------------------------------------------

@pytest.mark.parametrize("dtype", LABEL_DTYPES, ids=lambda t: np.dtype(t).name)
def test_every_integer_label_dtype_gives_skimage_values(dtype):
    labels = voronoi_labels(np.random.default_rng(3), (40, 50), n_cells=12).astype(dtype)
    assert_matches_skimage(labels)


def test_big_endian_labels_give_skimage_values():
    labels = voronoi_labels(np.random.default_rng(4), (30, 30), n_cells=8)
    assert_matches_skimage(labels.astype(">i4"))


def test_strided_and_read_only_inputs_give_skimage_values():
    labels = voronoi_labels(np.random.default_rng(5), (30, 40), n_cells=9).T
    intensity = np.random.default_rng(6).random((40, 30))[::-1]
    labels.flags.writeable = False
    assert_matches_skimage(labels, intensity)


def test_label_values_beyond_the_lookup_table_give_skimage_values():
    labels = voronoi_labels(np.random.default_rng(7), (30, 30), n_cells=6).astype(np.int64)
    labels[labels > 0] = labels[labels > 0] * 10**12 + 17
    assert_matches_skimage(labels)


def test_sparse_label_values_come_out_sorted_and_give_skimage_values():
    # large enough that the lookup table holds these values but is too sparse to walk,
    # and the first label met in raster order is not the smallest
    labels = voronoi_labels(np.random.default_rng(9), (300, 300), n_cells=5).astype(np.int64)
    labels = np.array([0, 600_000, 400_001, 500_000, 123_457, 444_444])[labels]
    assert_matches_skimage(labels)


def test_uint64_labels_above_int64_are_rejected():
    labels = np.array([[0, 2**63 + 5]], dtype=np.uint64)
    with pytest.raises(ValueError, match="at most 2\\*\\*63 - 1"):
        regionprops_table(labels)


def test_cell_far_from_the_origin_keeps_full_precision():
    labels = np.zeros((4096, 4096), dtype=np.uint8)
    cell = np.random.default_rng(8).random((40, 31)) < 0.7
    labels[4050:4090, 4060:4091][cell] = 1
    at_origin = np.zeros((40, 31), dtype=np.uint8)
    at_origin[cell] = 1
    far, near = regionprops_table(labels), regionprops_table(at_origin)
    assert_matches_skimage(labels)
    for name in ("axis_major_length", "axis_minor_length", "eccentricity", "orientation", "perimeter"):
        assert far[name][0] == pytest.approx(near[name][0], rel=1e-13), name


def voronoi_labels(rng, shape, n_cells):
    """Label image of n_cells Voronoi cells with labels 1 .. n_cells (no background)."""
    seeds = np.zeros(shape, dtype=np.int32)
    seeds[rng.integers(0, shape[0], n_cells), rng.integers(0, shape[1], n_cells)] = np.arange(1, n_cells + 1)
    _, (rows, cols) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[rows, cols]


@st.composite
def label_images(draw):
    """Small label images: blobs, fragments, rectangles; sparse non-contiguous labels."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # up to 80 columns: rows of 34 or more take the vectorised path of 32-bit labels
    shape = (draw(st.integers(1, 24)), draw(st.integers(1, 80)))
    style = draw(st.sampled_from(["blobs", "fragments", "rectangles"]))
    n_labels = draw(st.integers(1, 8))
    if style == "blobs":
        labels = ndi.median_filter(rng.integers(0, n_labels + 1, shape), size=3, mode="nearest")
    elif style == "fragments":
        labels = rng.integers(0, n_labels + 1, shape)
    else:
        labels = np.zeros(shape, dtype=np.int64)
        for label in range(1, n_labels + 1):
            r0, c0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            labels[r0:r0 + rng.integers(1, 8), c0:c0 + rng.integers(1, 8)] = label
    dtype = draw(st.sampled_from(LABEL_DTYPES))
    top = min(np.iinfo(dtype).max, 2**40)
    values = np.concatenate([[0], np.sort(rng.choice(np.arange(1, min(top, 300)), n_labels, replace=False))])
    if draw(st.booleans()) and top > 10**6:  # far apart, beyond the dense lookup table
        values[1:] = 10**6 + np.cumsum(rng.integers(1, (top - 10**6) // 8, n_labels))
    return values[labels].astype(dtype)


@st.composite
def intensity_images(draw, shape):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["none", "uint8", "uint16", "float64"]))
    if kind == "none":
        return None
    if kind == "float64":
        return rng.random(shape) * 100
    return rng.integers(0, np.iinfo(kind).max, shape).astype(kind)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_label_images_give_skimage_values(data):
    labels = data.draw(label_images())
    intensity = data.draw(intensity_images(labels.shape))
    assert_matches_skimage(labels, intensity)


# --- rejected inputs -----------------------------------------------------------------

def test_negative_labels_are_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        regionprops_table(np.array([[0, -3], [1, 1]], dtype=np.int32))


def test_negative_labels_beyond_the_lookup_table_are_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        regionprops_table(np.array([[10**12, -3]], dtype=np.int64))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, bool])
def test_non_integer_labels_are_rejected(dtype):
    with pytest.raises(TypeError, match="integer dtype"):
        regionprops_table(np.ones((3, 3), dtype=dtype))


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_labels_that_are_not_2d_are_rejected(shape):
    with pytest.raises(ValueError, match="2-D"):
        regionprops_table(np.ones(shape, dtype=np.int32))


def test_intensity_of_another_shape_is_rejected():
    with pytest.raises(ValueError, match="shape of labels"):
        regionprops_table(np.ones((3, 3), dtype=np.int32), np.ones((3, 4)))


def test_complex_intensity_is_rejected():
    with pytest.raises(TypeError, match="numeric"):
        regionprops_table(np.ones((3, 3), dtype=np.int32), np.ones((3, 3), dtype=complex))
