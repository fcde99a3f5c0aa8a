"""Persistent maxima of the distance to the walls: one marker label per cell interior.

Wrapped by :func:`cellpipe.segment.cell_markers`.

1. :func:`squared_distances`: exact squared Euclidean distance from each interior
   pixel to the nearest wall pixel (Felzenszwalb & Huttenlocher's separable lower
   envelope of parabolas; integers, so they sort exactly).
2. :func:`descending_order`: interior pixels, largest distance first (counting sort).
3. :func:`persistent_maxima`: pixels are joined into components with union-find in
   that order. A component is rooted at its peak (its first pixel). When a pixel
   touches two components, the one with the lower peak merges into the other if its
   peak rises less than ``h`` above that pixel (the saddle): its maximum is not
   persistent, a bump on the same cell rather than another cell. The components left
   are the cells; a cell's marker is its core, the pixels whose distance is within
   ``h`` of the cell's peak.
"""

cimport cython
cimport numpy as cnp
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t

import numpy as np

cnp.import_array()

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define CELLPIPE_PREFETCH(address) __builtin_prefetch(address)
    #else
    #define CELLPIPE_PREFETCH(address) ((void)0)
    #endif
    """
    void prefetch "CELLPIPE_PREFETCH" (const void *address) noexcept nogil

# How many places ahead in the visiting order a pixel's neighbourhood is prefetched.
cdef Py_ssize_t PREFETCH_DISTANCE = 16

# Squared distance of a pixel in a column without any wall.
cdef int32_t NO_WALL = 2147483647


@cython.boundscheck(False)
@cython.wraparound(False)
def squared_distances(const uint8_t[:, ::1] interior, int32_t[:, ::1] out):
    """Write the squared distance to the nearest wall into ``out``; return its maximum.

    Parameters
    ----------
    interior : (M, N) uint8 array
        1 inside cells, 0 on walls. The image border is not a wall.
    out : (M + 2, N + 2) int32 array
        Zeros on entry; receives the squared distances of the interior pixels at
        ``out[1:-1, 1:-1]`` (walls and the border stay 0).

    Returns
    -------
    int
        The largest squared distance, or -1 when the image has no wall at all.
    """
    cdef Py_ssize_t height = interior.shape[0], width = interior.shape[1]
    cdef Py_ssize_t row, col, k, site
    cdef int64_t maximum = 0
    cdef double crossing
    cdef int32_t[:, ::1] rows_to_wall = np.empty((height, width), dtype=np.int32)
    cdef int64_t[::1] squared = np.empty(width, dtype=np.int64)
    cdef Py_ssize_t[::1] sites = np.empty(width, dtype=np.intp)
    cdef double[::1] bounds = np.empty(width + 1, dtype=np.float64)
    cdef bint any_wall = False

    with nogil:
        # Down each column: distance in rows to the nearest wall, in two sweeps.
        for row in range(height):
            for col in range(width):
                if not interior[row, col]:
                    rows_to_wall[row, col] = 0
                    any_wall = True
                elif row == 0 or rows_to_wall[row - 1, col] == NO_WALL:
                    rows_to_wall[row, col] = NO_WALL
                else:
                    rows_to_wall[row, col] = rows_to_wall[row - 1, col] + 1
        for row in range(height - 2, -1, -1):
            for col in range(width):
                if rows_to_wall[row + 1, col] != NO_WALL and (
                    rows_to_wall[row + 1, col] + 1 < rows_to_wall[row, col]
                ):
                    rows_to_wall[row, col] = rows_to_wall[row + 1, col] + 1
    if not any_wall:
        return -1

    with nogil:
        # Along each row: lower envelope of the parabolas (col - site)^2 + f(site).
        for row in range(height):
            k = -1
            for col in range(width):
                if rows_to_wall[row, col] == NO_WALL:
                    continue
                squared[col] = <int64_t>rows_to_wall[row, col] * rows_to_wall[row, col]
                while True:
                    if k < 0:
                        crossing = -INFINITY
                        break
                    site = sites[k]
                    crossing = (
                        <double>(squared[col] + col * col - squared[site] - site * site)
                        / (2.0 * (col - site))
                    )
                    if crossing > bounds[k]:
                        break
                    k -= 1
                k += 1
                sites[k] = col
                bounds[k] = crossing
            bounds[k + 1] = INFINITY
            k = 0
            for col in range(width):
                while bounds[k + 1] < col:
                    k += 1
                site = sites[k]
                if interior[row, col]:
                    out[row + 1, col + 1] = <int32_t>((col - site) * (col - site) + squared[site])
                    if out[row + 1, col + 1] > maximum:
                        maximum = out[row + 1, col + 1]
    return maximum


@cython.boundscheck(False)
@cython.wraparound(False)
def descending_order(const int32_t[::1] squared_distance, Py_ssize_t max_key):
    """Return the indices of pixels with distance > 0, largest distance first.

    A stable counting sort, so equal distances keep raster order. ``max_key`` is the
    largest squared distance.
    """
    cdef Py_ssize_t n_pixels = squared_distance.shape[0]
    cdef Py_ssize_t p, key, n_interior = 0, position, count
    cdef cnp.intp_t[::1] start = np.zeros(max_key + 2, dtype=np.intp)
    cdef int32_t[::1] order

    with nogil:
        for p in range(n_pixels):
            if squared_distance[p] > 0:
                start[max_key - squared_distance[p]] += 1
                n_interior += 1
    order = np.empty(n_interior, dtype=np.int32)
    with nogil:
        position = 0
        for key in range(max_key + 1):
            count = start[key]
            start[key] = position
            position += count
        for p in range(n_pixels):
            if squared_distance[p] > 0:
                key = max_key - squared_distance[p]
                order[start[key]] = <int32_t>p
                start[key] += 1
    return np.asarray(order)


cdef inline int32_t find_root(int32_t[::1] parent, int32_t p) noexcept nogil:
    # Path halving keeps the trees flat.
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@cython.boundscheck(False)
@cython.wraparound(False)
def persistent_maxima(
    const int32_t[::1] squared_distance,
    const int32_t[::1] order,
    const cnp.intp_t[::1] offsets,
    double h,
    int32_t[::1] markers,
):
    """Write one label per persistent maximum of the distance into ``markers``.

    Parameters
    ----------
    squared_distance : 1-D int32 array
        Raveled squared distance to the walls, padded with a one-pixel border of
        zeros; 0 = wall.
    order : 1-D int32 array
        Interior pixels, largest distance first (see :func:`descending_order`).
    offsets : 1-D intp array
        Raveled neighbour offsets (4 or 8).
    h : float
        Minimum rise of a peak above its saddle for it to mark a separate cell.
    markers : 1-D int32 array
        Zeros on entry; receives labels 1..N on the cores, numbered in raster order.

    Returns
    -------
    int
        N, the number of markers.
    """
    cdef Py_ssize_t n_pixels = squared_distance.shape[0]
    cdef Py_ssize_t n_offsets = offsets.shape[0]
    cdef Py_ssize_t index, k, ahead, n_order = order.shape[0]
    cdef Py_ssize_t row_stride = offsets[3]  # the pixel below, in both neighbourhoods
    cdef int32_t p, q, root, other, higher, lower, n_labels = 0
    cdef int32_t[::1] parent = np.full(n_pixels, -1, dtype=np.int32)

    with nogil:
        for index in range(n_order):
            # The visiting order jumps across the image: fetch the rows ahead early.
            if index + PREFETCH_DISTANCE < n_order:
                ahead = order[index + PREFETCH_DISTANCE]
                prefetch(&parent[ahead - row_stride])
                prefetch(&parent[ahead])
                prefetch(&parent[ahead + row_stride])
            p = order[index]
            parent[p] = p
            root = p
            for k in range(n_offsets):
                q = <int32_t>(p + offsets[k])
                if parent[q] < 0:
                    continue
                other = find_root(parent, q)
                if other == root:
                    continue
                if root == p:
                    # p is no maximum: it joins the component it touches.
                    parent[p] = other
                    root = other
                    continue
                # Roots are peaks; the one visited first is the higher.
                if squared_distance[root] > squared_distance[other] or (
                    squared_distance[root] == squared_distance[other] and root < other
                ):
                    higher, lower = root, other
                else:
                    higher, lower = other, root
                if sqrt(squared_distance[lower]) - sqrt(squared_distance[p]) < h:
                    parent[lower] = higher
                    root = higher

        for index in range(n_pixels):
            if parent[index] < 0:
                continue
            root = find_root(parent, <int32_t>index)
            if sqrt(squared_distance[index]) >= sqrt(squared_distance[root]) - h:
                # A root is its own peak, hence in its core: it carries the label.
                if markers[root] == 0:
                    n_labels += 1
                    markers[root] = n_labels
                markers[index] = markers[root]
    return n_labels
