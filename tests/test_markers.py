"""cell_markers' Cython kernel gives exactly the markers of a plain reference.

The reference takes scipy's exact Euclidean distance transform (the same one that
scikit-image's marker recipe uses) and runs the algorithm of
:func:`cellpipe.segment.cell_markers` as documented, in plain Python: one global order,
largest distance first and raster order on ties, union-find, cores numbered in
raster order. The kernel takes components one at a time and searches distances
along rows; both must change nothing.
"""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellpipe._ext import load_extension
from cellpipe.segment import cell_markers
from cellpipe.synthetic import synthetic_cells

NEIGHBOURS = {1: [(-1, 0), (0, -1), (0, 1), (1, 0)],
              2: [(-1, 0), (0, -1), (0, 1), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)]}


def reference_squared_distances(interior):
    """Return the exact squared distance of each interior pixel to the nearest wall pixel."""
    _, (rows, cols) = ndi.distance_transform_edt(interior, return_indices=True)
    grid_rows, grid_cols = np.indices(interior.shape)
    return ((grid_rows - rows) ** 2 + (grid_cols - cols) ** 2) * interior


def reference_markers(interior, h, connectivity):
    """Return cell_markers' labels for a boolean interior, computed the slow, obvious way."""
    if interior.all():
        return interior.astype(np.int32)
    height, width = interior.shape
    squared = reference_squared_distances(interior).ravel()
    order = sorted(np.flatnonzero(squared), key=lambda p: (-squared[p], p))
    parent = {}

    def find(p):
        while parent[p] != p:
            p = parent[p]
        return p

    for p in order:
        row, col = divmod(p, width)
        root = None
        for d_row, d_col in NEIGHBOURS[connectivity]:
            r, c = row + d_row, col + d_col
            if not (0 <= r < height and 0 <= c < width) or r * width + c not in parent:
                continue
            other = find(r * width + c)
            if root is None:
                root = other
                continue
            if other == root:
                continue
            higher, lower = sorted((root, other), key=lambda q: (-squared[q], q))
            if math.sqrt(squared[lower]) - math.sqrt(squared[p]) < h:
                parent[lower] = higher
                root = higher
        parent[p] = p if root is None else root

    markers = np.zeros(height * width, dtype=np.int32)
    label_of_root = {}
    for p in sorted(parent):
        root = find(p)
        if math.sqrt(squared[p]) >= math.sqrt(squared[root]) - h:
            markers[p] = label_of_root.setdefault(root, len(label_of_root) + 1)
    return markers.reshape(height, width)


def random_interiors(n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        shape = tuple(rng.integers(1, 36, 2))
        interior = rng.random(shape) > rng.choice([0.02, 0.1, 0.3, 0.6])
        if rng.random() < 0.5:  # blobs: distances of several pixels, plateaus
            interior = ndi.binary_closing(interior, iterations=int(rng.integers(1, 3)))
        yield interior


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("h", [0.5, 2.0, 6.0])
def test_markers_equal_the_reference_on_random_images(connectivity, h):
    for interior in random_interiors(60, seed=int(h * 10) + connectivity):
        edges = np.where(interior, 0.1, 0.9)
        np.testing.assert_array_equal(
            cell_markers(edges, h=h, connectivity=connectivity),
            reference_markers(interior, h, connectivity),
        )


@pytest.mark.parametrize("connectivity", [1, 2])
def test_markers_equal_the_reference_on_synthetic_tissue(connectivity):
    sample = synthetic_cells((96, 128), kind="tissue", mean_cell_diameter=24.0, seed=3)
    interior = sample.edges < 0.5
    np.testing.assert_array_equal(
        cell_markers(sample.edges, connectivity=connectivity),
        reference_markers(interior, 2.0, connectivity),
    )


def test_markers_equal_the_reference_with_walls_far_apart():
    # Pixels 128 px and more from every wall: the kernel's rows take the envelope path.
    interior = np.ones((150, 290), dtype=bool)
    interior[[0, 149, 75], [0, 289, 3]] = False
    np.testing.assert_array_equal(cell_markers(np.where(interior, 0.1, 0.9), h=4.0),
                                  reference_markers(interior, 4.0, 1))


@pytest.mark.parametrize("shape, wall_fraction", [((40, 50), 0.3), ((300, 260), 0.0005), ((1, 700), 0.01),
                                                 ((700, 1), 0.01), ((260, 33), 0.002)])
def test_squared_distances_equal_scipys_exact_transform(shape, wall_fraction):
    rng = np.random.default_rng(shape[0])
    interior = rng.random(shape) >= wall_fraction
    interior.flat[rng.integers(interior.size)] = False
    out = np.zeros((shape[0] + 2, shape[1] + 2), dtype=np.int32)
    maximum = load_extension("_markers").squared_distances(interior.view(np.uint8), out)
    expected = reference_squared_distances(interior)
    np.testing.assert_array_equal(out[1:-1, 1:-1], expected)
    assert maximum == expected.max()
