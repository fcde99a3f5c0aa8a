"""Persistent maxima of a distance map: one marker label per cell interior.

Wrapped by :func:`cellpipe.segment.cell_markers`, which computes the distance map and
pads and ravels it.

Interior pixels (distance > 0) are visited from the largest distance down, and joined
into components with union-find. A component is rooted at its peak (the pixel visited
first). When a pixel touches two components, the one with the lower peak is merged
into the other if its peak rises less than ``h`` above that pixel (the saddle): its
maximum is not persistent, so it is a bump on the same cell rather than another
cell. Components that survive are the cells. A cell's marker is its core: the pixels
whose distance is within ``h`` of the cell's peak.
"""

cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t

import numpy as np

cnp.import_array()


@cython.boundscheck(False)
@cython.wraparound(False)
def descending_order(const double[::1] distance, Py_ssize_t max_key):
    """Return the indices of pixels with distance > 0, largest distance first.

    A stable counting sort on the squared distance (an integer for a Euclidean
    distance transform), so equal distances keep raster order. ``max_key`` bounds the
    squared distance.
    """
    cdef Py_ssize_t n_pixels = distance.shape[0]
    cdef Py_ssize_t p, key, n_interior = 0, position, count
    cdef cnp.intp_t[::1] start = np.zeros(max_key + 2, dtype=np.intp)
    cdef int32_t[::1] order

    with nogil:
        for p in range(n_pixels):
            if distance[p] > 0:
                start[max_key - <Py_ssize_t>(distance[p] * distance[p] + 0.5)] += 1
                n_interior += 1
    order = np.empty(n_interior, dtype=np.int32)
    with nogil:
        position = 0
        for key in range(max_key + 1):
            count = start[key]
            start[key] = position
            position += count
        for p in range(n_pixels):
            if distance[p] > 0:
                key = max_key - <Py_ssize_t>(distance[p] * distance[p] + 0.5)
                order[start[key]] = <int32_t>p
                start[key] += 1
    return np.asarray(order)


cdef inline int32_t find_root(int32_t[::1] parent, int32_t p) noexcept nogil:
    # Path halving keeps the trees flat.
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


cdef inline bint is_higher(const double[::1] distance, int32_t a, int32_t b) noexcept nogil:
    # Visiting order: larger distance first, then raster order.
    return distance[a] > distance[b] or (distance[a] == distance[b] and a < b)


@cython.boundscheck(False)
@cython.wraparound(False)
def persistent_maxima(
    const double[::1] distance,
    const int32_t[::1] order,
    const cnp.intp_t[::1] offsets,
    double h,
    int32_t[::1] markers,
):
    """Write one label per persistent maximum of ``distance`` into ``markers``.

    Parameters
    ----------
    distance : 1-D float64 array
        Raveled distance map, padded with a one-pixel border of zeros; 0 = wall.
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
    cdef Py_ssize_t n_pixels = distance.shape[0]
    cdef Py_ssize_t n_offsets = offsets.shape[0]
    cdef Py_ssize_t index, k
    cdef int32_t p, q, root, other, higher, lower, n_labels = 0
    cdef int32_t[::1] parent = np.full(n_pixels, -1, dtype=np.int32)
    cdef int32_t[::1] label_of_root = np.zeros(n_pixels, dtype=np.int32)

    with nogil:
        for index in range(order.shape[0]):
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
                if is_higher(distance, root, other):
                    higher, lower = root, other
                else:
                    higher, lower = other, root
                if distance[lower] - distance[p] < h:
                    parent[lower] = higher
                    root = higher

        for index in range(n_pixels):
            if parent[index] < 0:
                continue
            root = find_root(parent, <int32_t>index)
            if distance[index] >= distance[root] - h:
                if label_of_root[root] == 0:
                    n_labels += 1
                    label_of_root[root] = n_labels
                markers[index] = label_of_root[root]
    return n_labels
