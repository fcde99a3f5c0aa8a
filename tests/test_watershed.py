"""cellpipe.segment.watershed gives exactly scikit-image's labels, on any integer input."""

import numpy as np
import pytest
import skimage.segmentation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi

from cellpipe.segment import cell_markers, quantise_edges, watershed

MARKER_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
SMALL_EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def assert_same_as_skimage(elevation, markers, mask=None, connectivity=1):
    ours = watershed(elevation, markers, mask=mask, connectivity=connectivity)
    theirs = skimage.segmentation.watershed(
        elevation, markers, mask=mask, connectivity=connectivity
    )
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


@st.composite
def flood_inputs(draw, max_side=12):
    """Elevation, markers, mask and connectivity, rich in ties and touching labels."""
    shape = draw(st.tuples(st.integers(1, max_side), st.integers(1, max_side)))
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    top = np.iinfo(dtype).max
    n_levels = draw(st.sampled_from([1, 2, 3, 6, top + 1]))
    scale = draw(st.sampled_from([1, top // max(n_levels - 1, 1)]))
    steps = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, n_levels - 1)))
    elevation = (steps * scale).clip(0, top).astype(dtype)

    n_labels = draw(st.integers(1, 4))
    density = draw(st.sampled_from([0.05, 0.2, 0.6, 0.95]))
    marker_dtype = draw(st.sampled_from(MARKER_DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    seeds = rng.random(shape) < density
    if draw(st.booleans()):  # blobs rather than scattered pixels
        seeds = ndi.binary_dilation(seeds, iterations=draw(st.integers(1, 2)))
    labels = rng.integers(1, n_labels + 1, shape)
    if np.issubdtype(marker_dtype, np.signedinteger) and draw(st.booleans()):
        labels = -labels  # negative labels are labels too
    markers = (seeds * labels).astype(marker_dtype)
    if draw(st.booleans()):
        # all markers at one level: the kernel's tied-marker replay
        elevation[markers != 0] = draw(st.integers(0, n_levels - 1)) * scale % (top + 1)

    mask = None
    if draw(st.booleans()):
        mask = rng.random(shape) < draw(st.sampled_from([0.5, 0.8, 1.0]))
    connectivity = draw(st.sampled_from([1, 2]))
    return elevation, markers, mask, connectivity


@SMALL_EXAMPLES
@given(flood_inputs())
def test_labels_equal_skimage_on_random_inputs(inputs):
    elevation, markers, mask, connectivity = inputs
    assert_same_as_skimage(elevation, markers, mask, connectivity)


@SMALL_EXAMPLES
@given(flood_inputs(max_side=3))
def test_labels_equal_skimage_on_tiny_images(inputs):
    elevation, markers, mask, connectivity = inputs
    assert_same_as_skimage(elevation, markers, mask, connectivity)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.booleans(),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 2]),
)
def test_labels_equal_skimage_on_single_rows_and_columns(length, as_column, seed, connectivity):
    rng = np.random.default_rng(seed)
    shape = (length, 1) if as_column else (1, length)
    elevation = rng.integers(0, 3, shape).astype(np.uint8)
    markers = (rng.random(shape) < 0.3) * rng.integers(1, 3, shape)
    assert_same_as_skimage(elevation, markers, None, connectivity)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tied", [True, False], ids=["markers-tied", "markers-at-own-level"])
def test_labels_equal_skimage_with_many_blob_markers(seed, tied):
    # Deep heaps: hundreds of markers, many touching, on a noisy low-contrast image.
    rng = np.random.default_rng(seed)
    shape = (60 + seed, 90 - seed)
    elevation = rng.integers(0, 4, shape).astype(np.uint8)
    blobs = ndi.binary_dilation(rng.random(shape) < 0.03, iterations=2)
    markers, _ = ndi.label(blobs)
    markers[blobs & (rng.random(shape) < 0.2)] += 1  # touching, different labels
    if tied:
        elevation[markers != 0] = 1
    mask = rng.random(shape) < 0.9 if seed % 2 else None
    assert_same_as_skimage(elevation, markers, mask, connectivity=1 + seed % 2)


@pytest.mark.parametrize("tied", [True, False], ids=["markers-at-level-0", "markers-at-own-level"])
def test_labels_equal_skimage_on_a_cell_like_edge_map(tied):
    # What segment_edges floods: blurred noisy walls, markers at the cell centres.
    rng = np.random.default_rng(11)
    sites = np.ones((128, 160), dtype=bool)
    sites.flat[rng.choice(sites.size, 40, replace=False)] = False
    distance, (rows, cols) = ndi.distance_transform_edt(sites, return_indices=True)
    owner = rows * sites.shape[1] + cols
    walls = np.zeros(sites.shape)
    walls[:, 1:] += owner[:, 1:] != owner[:, :-1]
    walls[1:, :] += owner[1:, :] != owner[:-1, :]
    edges = np.clip(ndi.gaussian_filter(walls, 1.0) * 2 + rng.normal(0, 0.05, walls.shape), 0, 1)
    elevation = np.rint(edges * 255).astype(np.uint8)
    markers = (distance < 3) * (owner + 1)
    if tied:
        elevation[markers != 0] = 0
    assert_same_as_skimage(elevation, markers)


def test_labels_equal_skimage_for_uint16_plateaus():
    rng = np.random.default_rng(7)
    elevation = (rng.integers(0, 3, (40, 50)) * 30000).astype(np.uint16)
    markers = (rng.random((40, 50)) < 0.05) * rng.integers(1, 5, (40, 50))
    assert_same_as_skimage(elevation, markers)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int16])
def test_bool_and_signed_elevations_are_flooded_like_skimage(dtype):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if dtype != np.bool_ else None
    low, high = (0, 2) if info is None else (info.min, info.max + 1)
    elevation = rng.integers(low, high, (30, 30)).astype(dtype)
    markers = (rng.random((30, 30)) < 0.05) * rng.integers(1, 4, (30, 30))
    assert_same_as_skimage(elevation, markers)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint32])
def test_other_elevation_dtypes_are_passed_to_skimage(dtype):
    rng = np.random.default_rng(4)
    elevation = rng.integers(0, 1000, (20, 25)).astype(dtype)
    markers = (rng.random((20, 25)) < 0.05) * rng.integers(1, 4, (20, 25))
    assert_same_as_skimage(elevation, markers)


def test_markers_outside_the_mask_are_ignored():
    elevation = np.zeros((1, 5), dtype=np.uint8)
    markers = np.array([[1, 0, 0, 0, 2]])
    mask = np.array([[True, True, True, True, False]])
    labels = watershed(elevation, markers, mask=mask)
    np.testing.assert_array_equal(labels, [[1, 1, 1, 1, 0]])


def test_pixels_unreachable_from_any_marker_stay_zero():
    elevation = np.zeros((3, 3), dtype=np.uint8)
    markers = np.zeros((3, 3), dtype=np.int32)
    markers[0, 0] = 5
    mask = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 1]], dtype=bool)
    labels = watershed(elevation, markers, mask=mask)
    np.testing.assert_array_equal(labels, [[5, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_no_markers_gives_all_zero_labels():
    labels = watershed(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int32))
    assert not labels.any()


def test_empty_image_gives_empty_labels():
    labels = watershed(np.zeros((0, 7), np.uint8), np.zeros((0, 7), np.int16))
    assert labels.shape == (0, 7) and labels.dtype == np.int16


def test_inputs_are_left_unchanged():
    elevation = np.array([[0, 5, 0]], dtype=np.uint8)
    markers = np.array([[1, 0, 2]])
    watershed(elevation, markers)
    np.testing.assert_array_equal(elevation, [[0, 5, 0]])
    np.testing.assert_array_equal(markers, [[1, 0, 2]])


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_non_2d_images_are_rejected(shape):
    with pytest.raises(ValueError, match="2-D"):
        watershed(np.zeros(shape, np.uint8), np.zeros(shape, np.int32))


def test_markers_of_another_shape_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        watershed(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.int32))


def test_mask_of_another_shape_is_rejected():
    with pytest.raises(ValueError, match="mask"):
        watershed(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int32), mask=np.ones((3, 4)))


@pytest.mark.parametrize("connectivity", [0, 3, 1.5, True])
def test_connectivity_other_than_1_or_2_is_rejected(connectivity):
    elevation, markers = np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match="connectivity"):
        watershed(elevation, markers, connectivity=connectivity)


@pytest.mark.parametrize("dtype", [np.float64, np.bool_])
def test_non_integer_markers_are_rejected(dtype):
    with pytest.raises(TypeError, match="integer"):
        watershed(np.zeros((4, 4), np.uint8), np.zeros((4, 4), dtype))


@pytest.mark.parametrize("connectivity", [1, 2])
def test_labels_equal_skimage_when_cell_cores_keep_their_own_levels(connectivity):
    # The general case at a size where the replayed heap holds thousands of markers and pixels.
    rng = np.random.default_rng(5)
    sites = np.ones((384, 448), dtype=bool)
    sites.flat[rng.choice(sites.size, 120, replace=False)] = False
    _, (rows, cols) = ndi.distance_transform_edt(sites, return_indices=True)
    owner = rows * sites.shape[1] + cols
    walls = np.zeros(sites.shape)
    walls[:, 1:] += owner[:, 1:] != owner[:, :-1]
    walls[1:, :] += owner[1:, :] != owner[:-1, :]
    edges = np.clip(ndi.gaussian_filter(walls, 1.0) * 2.5 + rng.normal(0, 0.05, walls.shape), 0, 1)
    markers = cell_markers(edges)
    assert_same_as_skimage(quantise_edges(edges, 0.5), markers, connectivity=connectivity)
