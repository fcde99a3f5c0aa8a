# cython: language_level=3
"""Feret (caliper) diameters of every cell of a label image, behind ``cellpipe.feret``.

A cell is the union of its unit pixel squares. The convex hull of that union has its
vertices among the corners of the leftmost and rightmost pixel of each row, so one pass
over the image records, per cell and row of its bounding box, the leftmost column and
the rightmost column + 1. Per cell, the points (min x, y) and (max x, y) of every pixel
edge row y are then run through Andrew's monotone chain (they come sorted by y), and the
hull's vertices give

- the maximum Feret diameter: the largest distance between two vertices;
- the minimum Feret diameter (minimum caliper width): the smallest, over the hull's
  edges, of the largest distance of a vertex to the edge's line (the minimum width of
  a convex polygon is attained with one caliper flush with an edge).

Both are O(n^2) in the hull's n vertices, which is a few dozen for cells of a hundred
pixels across: simpler than rotating calipers and as fast at these sizes.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.math cimport sqrt, fabs

import numpy as np
cimport numpy as cnp

cnp.import_array()

ctypedef fused label_t:
    uint8_t
    uint16_t
    uint32_t
    uint64_t
    int32_t
    int64_t


cdef inline double _cross(double ox, double oy, double ax, double ay, double bx, double by) nogil:
    return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox)


def feret_diameters(const label_t[:, ::1] labels, const int32_t[::1] cell_of_label,
                    const int64_t[::1] row_start, const int64_t[::1] row_stop):
    """Return ``(maximum, minimum)`` Feret diameters (float64 arrays) of cells 1..n.

    ``cell_of_label[v]`` is the cell number (1..n) of label value ``v`` (0: none);
    ``row_start[k - 1]``, ``row_stop[k - 1]`` are the first row and the last row + 1 of
    cell ``k``. Label values beyond the table are ignored.
    """
    cdef Py_ssize_t n_rows = labels.shape[0], n_cols = labels.shape[1]
    cdef Py_ssize_t n_cells = row_start.shape[0], table_size = cell_of_label.shape[0]
    cdef Py_ssize_t r, c, k, i, total = 0, height, offset, n_points, n_hull, lower
    cdef Py_ssize_t j, m, largest_height = 0
    cdef int64_t value
    cdef int32_t cell
    cdef double best, width, widest, dx, dy, length, distance
    maximum = np.zeros(n_cells, np.float64)
    minimum = np.zeros(n_cells, np.float64)
    cdef double[::1] maximum_view = maximum, minimum_view = minimum
    cdef int64_t* offsets = <int64_t*>malloc((n_cells + 1) * sizeof(int64_t))
    if offsets == NULL:
        raise MemoryError()
    for k in range(n_cells):
        offsets[k] = total
        height = row_stop[k] - row_start[k]
        total += height
        if height > largest_height:
            largest_height = height
    offsets[n_cells] = total
    cdef int64_t* left = <int64_t*>malloc((total + 1) * sizeof(int64_t))
    cdef int64_t* right = <int64_t*>malloc((total + 1) * sizeof(int64_t))
    # (largest height + 1) edge rows, two points each; the hull needs one more slot.
    cdef double* px = <double*>malloc((2 * largest_height + 4) * sizeof(double))
    cdef double* py = <double*>malloc((2 * largest_height + 4) * sizeof(double))
    cdef double* hx = <double*>malloc((4 * largest_height + 8) * sizeof(double))
    cdef double* hy = <double*>malloc((4 * largest_height + 8) * sizeof(double))
    cdef int64_t lo, hi, lo_above, hi_above
    try:
        if left == NULL or right == NULL or px == NULL or py == NULL or hx == NULL or hy == NULL:
            raise MemoryError()
        with nogil:
            for i in range(total):
                left[i] = n_cols + 1
                right[i] = -1
            for r in range(n_rows):
                for c in range(n_cols):
                    value = <int64_t>labels[r, c]
                    if value <= 0 or value >= table_size:
                        continue
                    cell = cell_of_label[value]
                    if cell == 0:
                        continue
                    i = offsets[cell - 1] + r - row_start[cell - 1]
                    if c < left[i]:
                        left[i] = c
                    if c + 1 > right[i]:
                        right[i] = c + 1
            for k in range(n_cells):
                offset = offsets[k]
                height = offsets[k + 1] - offset
                # Edge row y = row_start + j (j = 0..height) touches pixel rows j - 1 and j.
                n_points = 0
                for j in range(height + 1):
                    lo = n_cols + 1
                    hi = -1
                    if j > 0:
                        lo = left[offset + j - 1]
                        hi = right[offset + j - 1]
                    if j < height:
                        if left[offset + j] < lo:
                            lo = left[offset + j]
                        if right[offset + j] > hi:
                            hi = right[offset + j]
                    if hi < 0:
                        continue  # no pixel of the cell on either side of this edge row
                    px[n_points] = <double>lo
                    py[n_points] = <double>(row_start[k] + j)
                    n_points += 1
                    px[n_points] = <double>hi
                    py[n_points] = <double>(row_start[k] + j)
                    n_points += 1
                if n_points < 3:
                    continue
                # Andrew's monotone chain over points sorted by (y, x): lower then upper chain.
                n_hull = 0
                for j in range(n_points):
                    while n_hull >= 2 and _cross(hx[n_hull - 2], hy[n_hull - 2], hx[n_hull - 1], hy[n_hull - 1],
                                                 px[j], py[j]) <= 0:
                        n_hull -= 1
                    hx[n_hull] = px[j]
                    hy[n_hull] = py[j]
                    n_hull += 1
                lower = n_hull + 1
                for j in range(n_points - 2, -1, -1):
                    while n_hull >= lower and _cross(hx[n_hull - 2], hy[n_hull - 2], hx[n_hull - 1], hy[n_hull - 1],
                                                     px[j], py[j]) <= 0:
                        n_hull -= 1
                    hx[n_hull] = px[j]
                    hy[n_hull] = py[j]
                    n_hull += 1
                n_hull -= 1  # the last point repeats the first
                best = 0.0
                for j in range(n_hull):
                    for m in range(j + 1, n_hull):
                        dx = hx[j] - hx[m]
                        dy = hy[j] - hy[m]
                        if dx * dx + dy * dy > best:
                            best = dx * dx + dy * dy
                maximum_view[k] = sqrt(best)
                width = -1.0
                for j in range(n_hull):
                    m = j + 1 if j + 1 < n_hull else 0
                    dx = hx[m] - hx[j]
                    dy = hy[m] - hy[j]
                    length = sqrt(dx * dx + dy * dy)
                    widest = 0.0
                    for i in range(n_hull):
                        distance = fabs(_cross(hx[j], hy[j], hx[m], hy[m], hx[i], hy[i])) / length
                        if distance > widest:
                            widest = distance
                    if width < 0 or widest < width:
                        width = widest
                minimum_view[k] = width
    finally:
        free(offsets)
        free(left)
        free(right)
        free(px)
        free(py)
        free(hx)
        free(hy)
    return maximum, minimum
