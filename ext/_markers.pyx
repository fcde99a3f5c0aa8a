"""Persistent maxima of the distance to the walls: one marker label per cell interior.

Wrapped by :func:`cellpipe.segment.cell_markers`.

1. :func:`squared_distances`: exact squared Euclidean distance from each interior
   pixel to the nearest wall pixel, separably: down each column, then along each row
   the minimum of ``(col - k)^2 + column_distance(k)^2``, searched 16 columns at a time
   outward from each pixel until no nearer wall can exist (SSE2 when available; rows
   where a pixel lies 128 px or more from every wall use Felzenszwalb & Huttenlocher's
   lower envelope of parabolas instead). Integers, so they sort exactly.
2. :func:`persistent_maxima`, one connected interior component at a time (runs of
   each row, joined by union-find; pixels of different components never meet, so
   taking them one by one changes nothing but keeps each one's pixels in cache):

   - its pixels, largest distance first, equal distances in raster order (a counting
     sort over the levels it holds);
   - they are joined into components with union-find in that order. A component is
     rooted at its peak (its first pixel). When a pixel touches two components, the
     one with the lower peak merges into the other if its peak rises less than ``h``
     above that pixel (the saddle): its maximum is not persistent, a bump on the same
     cell rather than another cell. The components left are the cells; a cell's
     marker is its core, the pixels whose distance is within ``h`` of the cell's peak;
   - markers are numbered 1..N in raster order of each core's first pixel at the end.
"""

cimport cython
cimport numpy as cnp
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t

import numpy as np

cnp.import_array()

# Rows to the nearest wall of a pixel in a column without any wall.
cdef int32_t NO_WALL = 1 << 30
# No component (yet): an index that no pixel of the padded image has.
cdef int32_t NONE = -1


cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    #define CELLPIPE_ROW_LANES 16
    #define CELLPIPE_ROW_CAP 16383

    /* Squared distance to the nearest wall of each pixel of one row, or 0 when some
       pixel has no wall within sqrt(CELLPIPE_ROW_CAP) px. level[col]: squared distance
       to the nearest wall in col's own column, capped at CELLPIPE_ROW_CAP, with
       CELLPIPE_ROW_REACH capped entries on either side. Each block of 16 columns looks
       t = 1, 2, ... columns to each side while t^2 is below some pixel's best so far:
       no column farther away can hold a nearer wall. Sums stay below 2 * 16383, so
       int16 lanes never overflow. */
    static int cellpipe_row_search(const int16_t *level, const uint8_t *interior,
                                   int32_t *out, ptrdiff_t width)
    {
        for (ptrdiff_t start = 0; start < width; start += CELLPIPE_ROW_LANES) {
            ptrdiff_t lanes = width - start < CELLPIPE_ROW_LANES ? width - start : CELLPIPE_ROW_LANES;
            const int16_t *here = level + start;
            int16_t best[CELLPIPE_ROW_LANES];
            for (int lane = 0; lane < CELLPIPE_ROW_LANES; lane++)
                best[lane] = lane < lanes ? here[lane] : 0;
    #if defined(__SSE2__)
            __m128i low = _mm_loadu_si128((const __m128i *)best);
            __m128i high = _mm_loadu_si128((const __m128i *)(best + 8));
            for (int t = 1;; t++) {
                __m128i square = _mm_set1_epi16((int16_t)(t * t));
                if (!_mm_movemask_epi8(_mm_or_si128(_mm_cmpgt_epi16(low, square),
                                                    _mm_cmpgt_epi16(high, square))))
                    break;
                __m128i nearest_low = _mm_min_epi16(_mm_loadu_si128((const __m128i *)(here - t)),
                                                    _mm_loadu_si128((const __m128i *)(here + t)));
                __m128i nearest_high = _mm_min_epi16(_mm_loadu_si128((const __m128i *)(here + 8 - t)),
                                                     _mm_loadu_si128((const __m128i *)(here + 8 + t)));
                low = _mm_min_epi16(low, _mm_add_epi16(nearest_low, square));
                high = _mm_min_epi16(high, _mm_add_epi16(nearest_high, square));
            }
            _mm_storeu_si128((__m128i *)best, low);
            _mm_storeu_si128((__m128i *)(best + 8), high);
    #else
            for (int t = 1;; t++) {
                int16_t square = (int16_t)(t * t), widest = 0;
                for (int lane = 0; lane < CELLPIPE_ROW_LANES; lane++)
                    widest = best[lane] > widest ? best[lane] : widest;
                if (square >= widest)
                    break;
                for (int lane = 0; lane < CELLPIPE_ROW_LANES; lane++) {
                    int16_t nearest = here[lane - t] < here[lane + t] ? here[lane - t] : here[lane + t];
                    int16_t candidate = (int16_t)(square + nearest);
                    if (candidate < best[lane])
                        best[lane] = candidate;
                }
            }
    #endif
            for (ptrdiff_t lane = 0; lane < lanes; lane++) {
                if (best[lane] >= CELLPIPE_ROW_CAP)
                    return 0;
                out[start + lane] = interior[start + lane] ? best[lane] : 0;
            }
        }
        return 1;
    }
    """
    bint row_search "cellpipe_row_search" (
        const int16_t *level, const uint8_t *interior, int32_t *out, Py_ssize_t width
    ) noexcept nogil
    int16_t ROW_CAP "CELLPIPE_ROW_CAP"
    int ROW_LANES "CELLPIPE_ROW_LANES"

# The row search reads this many columns beyond each end of a row (ROW_CAP < REACH^2).
cdef Py_ssize_t REACH = 128


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _row_envelope(
    const int32_t *rows_to_wall,
    const uint8_t *interior,
    int32_t *out,
    Py_ssize_t width,
    int64_t *squared,
    Py_ssize_t *sites,
    double *bounds,
) noexcept nogil:
    # Lower envelope of the parabolas (col - site)^2 + rows_to_wall(site)^2.
    cdef Py_ssize_t col, k = -1, site
    cdef double crossing
    for col in range(width):
        if rows_to_wall[col] >= NO_WALL:
            continue
        squared[col] = <int64_t>rows_to_wall[col] * rows_to_wall[col]
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
        if interior[col]:
            out[col] = <int32_t>((col - site) * (col - site) + squared[site])


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
    cdef Py_ssize_t row, col
    cdef int64_t maximum = 0
    cdef int32_t distance, row_maximum = 0
    cdef int32_t *out_row
    cdef int32_t[:, ::1] rows_to_wall = np.empty((height, width), dtype=np.int32)
    cdef int64_t[::1] squared = np.empty(width, dtype=np.int64)
    cdef Py_ssize_t[::1] sites = np.empty(width, dtype=np.intp)
    cdef double[::1] bounds = np.empty(width + 1, dtype=np.float64)
    # One row of capped column distances, REACH capped entries on either side.
    cdef int16_t[::1] levels = np.full(width + 2 * REACH + ROW_LANES, ROW_CAP, dtype=np.int16)
    cdef int16_t *level = &levels[REACH]
    cdef bint any_wall = False

    with nogil:
        for row in range(height):
            for col in range(width):
                any_wall |= not interior[row, col]
    if not any_wall:
        return -1

    with nogil:
        # Down each column: distance in rows to the nearest wall, in two sweeps
        # (NO_WALL + 1 cannot overflow; branch-free, so the compiler vectorises them).
        for col in range(width):
            rows_to_wall[0, col] = NO_WALL if interior[0, col] else 0
        for row in range(1, height):
            for col in range(width):
                rows_to_wall[row, col] = min(rows_to_wall[row - 1, col] + 1, NO_WALL) if (
                    interior[row, col]
                ) else 0
        for row in range(height - 2, -1, -1):
            for col in range(width):
                rows_to_wall[row, col] = min(rows_to_wall[row, col], rows_to_wall[row + 1, col] + 1)

    with nogil:
        # Along each row: the nearest (col - k)^2 + rows_to_wall(k)^2.
        for row in range(height):
            out_row = &out[row + 1, 1]
            for col in range(width):
                distance = min(rows_to_wall[row, col], <int32_t>REACH)
                level[col] = <int16_t>min(distance * distance, <int32_t>ROW_CAP)
            if not row_search(level, &interior[row, 0], out_row, width):
                _row_envelope(
                    &rows_to_wall[row, 0], &interior[row, 0], out_row, width,
                    &squared[0], &sites[0], &bounds[0],
                )
            for col in range(width):
                row_maximum = max(row_maximum, out_row[col])
    maximum = row_maximum
    return maximum

cdef inline int32_t find_root(int32_t *parent, int32_t p) noexcept nogil:
    # Path halving keeps the trees flat; most pixels hang right below their root.
    cdef int32_t up = parent[p]
    if parent[up] == up:
        return up
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


cdef inline double distance_of(const double *table, int32_t level) noexcept nogil:
    return table[level] if table != NULL else sqrt(level)


cdef struct Components:
    # Runs of interior pixels, [start, end) in row ``row`` of the padded image, listed
    # component after component (components in raster order of their first pixel,
    # each one's runs in raster order).
    int32_t *start
    int32_t *end
    int32_t *row
    cnp.intp_t *first_run      # of each component, and one past the last
    Py_ssize_t n_components
    Py_ssize_t largest         # pixels of the largest component
    Py_ssize_t n_interior


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _components(const int32_t[:, ::1] squared_distance, int connectivity, Components *out):
    # Fills ``out`` with pointers into the arrays it returns (keep them alive).
    cdef Py_ssize_t height = squared_distance.shape[0], width = squared_distance.shape[1]
    cdef const int32_t *distance = &squared_distance[0, 0]
    cdef Py_ssize_t row, col, base, run, i, j, n_runs = 0, n_interior = 0, n_components = 0
    cdef Py_ssize_t component, size, largest = 0
    cdef int32_t above_root, below_root, reach = 1 if connectivity == 2 else 0

    with nogil:
        for row in range(1, height - 1):
            base = row * width
            for col in range(1, width - 1):
                if distance[base + col] > 0 and distance[base + col - 1] == 0:
                    n_runs += 1
    cdef int32_t[::1] run_start = np.empty(n_runs + 1, dtype=np.int32)
    cdef int32_t[::1] run_end = np.empty(n_runs + 1, dtype=np.int32)
    cdef int32_t[::1] run_row = np.empty(n_runs + 1, dtype=np.int32)
    cdef int32_t[::1] run_parent = np.empty(n_runs + 1, dtype=np.int32)
    cdef int32_t[::1] first_run = np.zeros(height + 1, dtype=np.int32)
    with nogil:
        run = 0
        for row in range(height):
            first_run[row] = <int32_t>run
            if row == 0 or row == height - 1:
                continue
            base = row * width
            col = 1
            while col < width - 1:
                if distance[base + col] > 0:
                    run_start[run] = <int32_t>col
                    while distance[base + col] > 0:
                        col += 1
                    run_end[run] = <int32_t>col
                    run_row[run] = <int32_t>row
                    run_parent[run] = <int32_t>run
                    n_interior += run_end[run] - run_start[run]
                    run += 1
                col += 1
        first_run[height] = <int32_t>run
        # Runs of consecutive rows that overlap (or touch diagonally, with
        # connectivity 2) join; each component is rooted at its first run.
        for row in range(2, height - 1):
            i = first_run[row - 1]
            j = first_run[row]
            while i < first_run[row] and j < first_run[row + 1]:
                if run_start[i] < run_end[j] + reach and run_start[j] < run_end[i] + reach:
                    above_root = find_root(&run_parent[0], <int32_t>i)
                    below_root = find_root(&run_parent[0], <int32_t>j)
                    if above_root < below_root:
                        run_parent[below_root] = above_root
                    elif below_root < above_root:
                        run_parent[above_root] = below_root
                if run_end[i] <= run_end[j]:
                    i += 1
                else:
                    j += 1

    cdef int32_t[::1] component_of = np.empty(n_runs + 1, dtype=np.int32)
    with nogil:
        for run in range(n_runs):
            if run_parent[run] == run:
                component_of[run] = <int32_t>n_components
                n_components += 1
            else:
                component_of[run] = component_of[find_root(&run_parent[0], <int32_t>run)]
    cdef cnp.intp_t[::1] first_of_component = np.zeros(n_components + 1, dtype=np.intp)
    cdef cnp.intp_t[::1] fill = np.empty(n_components + 1, dtype=np.intp)
    cdef cnp.intp_t[::1] pixels = np.zeros(n_components + 1, dtype=np.intp)
    cdef int32_t[::1] sorted_start = np.empty(n_runs + 1, dtype=np.int32)
    cdef int32_t[::1] sorted_end = np.empty(n_runs + 1, dtype=np.int32)
    cdef int32_t[::1] sorted_row = np.empty(n_runs + 1, dtype=np.int32)
    with nogil:
        for run in range(n_runs):
            first_of_component[component_of[run] + 1] += 1
            pixels[component_of[run]] += run_end[run] - run_start[run]
        for component in range(n_components):
            first_of_component[component + 1] += first_of_component[component]
            fill[component] = first_of_component[component]
            if pixels[component] > largest:
                largest = pixels[component]
        for run in range(n_runs):
            i = fill[component_of[run]]
            fill[component_of[run]] += 1
            sorted_start[i] = run_start[run]
            sorted_end[i] = run_end[run]
            sorted_row[i] = run_row[run]
    out.start = &sorted_start[0]
    out.end = &sorted_end[0]
    out.row = &sorted_row[0]
    out.first_run = &first_of_component[0]
    out.n_components = n_components
    out.largest = largest
    out.n_interior = n_interior
    return (sorted_start, sorted_end, sorted_row, first_of_component)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _descending_order(
    const Components *components,
    Py_ssize_t component,
    const int32_t *distance,
    Py_ssize_t width,
    int32_t *start,
    int32_t *order,
) noexcept nogil:
    # Writes the component's pixels into ``order``, largest distance first, equal
    # distances in raster order; returns how many. ``start``: zeros over every level,
    # left so.
    cdef Py_ssize_t i, p, base, level, low = 2147483647, high = 0, count, position = 0, n = 0
    for i in range(components.first_run[component], components.first_run[component + 1]):
        base = components.row[i] * width
        for p in range(base + components.start[i], base + components.end[i]):
            level = distance[p]
            start[level] += 1
            n += 1
            if level < low:
                low = level
            if level > high:
                high = level
    # A counting sort over the levels the component holds (a level L needs a disc of
    # about L pixels around it, so there are never many more levels than pixels).
    level = high
    while level >= low:
        count = start[level]
        start[level] = <int32_t>position
        position += count
        level -= 1
    for i in range(components.first_run[component], components.first_run[component + 1]):
        base = components.row[i] * width
        for p in range(base + components.start[i], base + components.end[i]):
            order[start[distance[p]]] = <int32_t>p
            start[distance[p]] += 1
    for level in range(low, high + 1):
        start[level] = 0
    return n


@cython.boundscheck(False)
@cython.wraparound(False)
def persistent_maxima(
    const int32_t[:, ::1] squared_distance,
    Py_ssize_t max_key,
    const cnp.intp_t[::1] offsets,
    int connectivity,
    double h,
    int32_t[:, ::1] markers,
):
    """Write one label per persistent maximum of the distance into ``markers``.

    Parameters
    ----------
    squared_distance : (M + 2, N + 2) int32 array
        Squared distance to the walls (see :func:`squared_distances`), with a
        one-pixel border of zeros; 0 = wall.
    max_key : int
        The largest squared distance.
    offsets : 1-D intp array
        Raveled neighbour offsets in the padded image (4 or 8).
    connectivity : {1, 2}
        The neighbourhood that ``offsets`` describe.
    h : float
        Minimum rise of a peak above its saddle for it to mark a separate cell.
    markers : (M, N) int32 array
        Zeros on entry; receives labels 1..N on the cores, numbered in raster order
        of each core's first pixel.

    Returns
    -------
    int
        N, the number of markers.
    """
    cdef Py_ssize_t padded_width = squared_distance.shape[1]
    cdef Py_ssize_t width = markers.shape[1]
    cdef Py_ssize_t n_offsets = offsets.shape[0]
    cdef Py_ssize_t component, index, n, k, n_ids = 0, n_core = 0
    cdef Py_ssize_t offset[8]
    cdef int32_t p, q, root, other, higher, lower, at
    cdef const int32_t *level = &squared_distance[0, 0]
    cdef int32_t *marker = &markers[0, 0]
    cdef Components components
    if n_offsets > 8:
        raise ValueError("at most 8 neighbour offsets are supported")
    for k in range(n_offsets):
        offset[k] = offsets[k]
    keep_alive = _components(squared_distance, connectivity, &components)
    if components.n_interior == 0:
        return 0

    # -1: a wall, or a pixel not visited yet.
    cdef int32_t[::1] parents = np.full(squared_distance.size, -1, dtype=np.int32)
    cdef int32_t *parent = &parents[0]
    cdef int32_t[::1] order = np.empty(components.largest, dtype=np.int32)
    cdef int32_t[::1] start = np.zeros(max_key + 1, dtype=np.int32)
    # Square roots of the levels, looked up (the same correctly rounded values).
    cdef double[::1] root_of_level = np.sqrt(np.arange(max_key + 1, dtype=np.float64)) if (
        max_key <= squared_distance.size
    ) else np.empty(0)
    cdef const double *table = &root_of_level[0] if root_of_level.shape[0] else NULL
    # Each marker's provisional id is numbered as its component is done; first_core:
    # its first pixel in raster order; core: every marker pixel (unpadded index).
    cdef int32_t[::1] first_core = np.empty(components.n_interior + 1, dtype=np.int32)
    cdef int32_t[::1] core = np.empty(components.n_interior, dtype=np.int32)

    with nogil:
        for component in range(components.n_components):
            n = _descending_order(
                &components, component, level, padded_width, &start[0], &order[0]
            )
            for index in range(n):
                p = order[index]
                root = NONE
                for k in range(n_offsets):
                    q = <int32_t>(p + offset[k])
                    if parent[q] < 0:  # a wall, or not visited yet
                        continue
                    other = find_root(parent, q)
                    if root == NONE:
                        # p is no maximum: it joins the first component it touches.
                        root = other
                        continue
                    if other == root:
                        continue
                    # Roots are peaks; the one visited first is the higher.
                    if level[root] > level[other] or (level[root] == level[other] and root < other):
                        higher, lower = root, other
                    else:
                        higher, lower = other, root
                    if distance_of(table, level[lower]) - distance_of(table, level[p]) < h:
                        parent[lower] = higher
                        root = higher
                parent[p] = p if root == NONE else root
            # In visiting order every parent comes first: one step finds the root.
            for index in range(n):
                p = order[index]
                root = parent[parent[p]]
                parent[p] = root
                if distance_of(table, level[p]) < distance_of(table, level[root]) - h:
                    continue
                at = <int32_t>((p // padded_width - 1) * width + p % padded_width - 1)
                core[n_core] = at
                n_core += 1
                if root == p:  # a root is visited first and lies in its own core
                    n_ids += 1
                    first_core[n_ids] = at
                    marker[at] = <int32_t>n_ids
                else:
                    marker[at] = marker[(root // padded_width - 1) * width + root % padded_width - 1]
                    if at < first_core[marker[at]]:
                        first_core[marker[at]] = at

    # Labels 1..N in raster order of each marker's first pixel.
    cdef int32_t[::1] label_of = np.zeros(n_ids + 1, dtype=np.int32)
    cdef cnp.intp_t[::1] by_first = np.argsort(np.asarray(first_core)[1:n_ids + 1], kind="stable")
    with nogil:
        for index in range(n_ids):
            label_of[by_first[index] + 1] = <int32_t>(index + 1)
        for index in range(n_core):
            marker[core[index]] = label_of[marker[core[index]]]
    return n_ids
