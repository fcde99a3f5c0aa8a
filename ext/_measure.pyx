# cython: language_level=3
"""One pass over a label image: the per-cell sums behind ``cellpipe.measure``.

:func:`accumulate_cells` walks the label image row by row, with three rows of byte masks
in a rolling buffer (rows r-1, r, r+1):

1. comparisons of row r+1 with its right neighbours and with row r+2 (below, below-left,
   below-right), and from them its border pixels; these loops vectorise;
2. the perimeter weight of every pixel of row r, from the masks of rows r-1, r, r+1
   (byte arithmetic, vectorised; see ``_perimeter_weights``);
3. the runs of equal labels in row r, found 8 pixels at a time in the right-neighbour
   mask. Each run updates its cell's pixel count, bounding box and raw moments in closed
   form (sums of an arithmetic series) and adds up its perimeter weights 8 at a time.

Moments are accumulated in int64 relative to each cell's first pixel (in raster order),
which keeps them exact on large images. Everything that is O(number of cells) (sorting,
central moments, eigenvalues) happens afterwards in numpy, in ``cellpipe/measure.py``.
"""

from libc.stdint cimport (int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t,
                          uint32_t, uint64_t)
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset
from libc.math cimport INFINITY

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

ctypedef fused intensity_t:
    uint8_t
    uint16_t
    uint32_t
    int8_t
    int16_t
    int32_t
    float
    double


cdef struct CellSums:
    int64_t label
    int64_t area
    int64_t row0            # first pixel of the cell in raster order: the moment origin
    int64_t col0
    int64_t sum_r           # sums of (row - row0), (col - col0) and their products
    int64_t sum_c
    int64_t sum_rr
    int64_t sum_cc
    int64_t sum_rc
    int64_t row_stop        # bbox: rows [row0, row_stop), columns [col_min, col_stop)
    int64_t col_min
    int64_t col_stop
    int64_t perimeter_halves           # perimeter = (halves + sqrt(2) * diagonal_halves) / 2
    int64_t perimeter_diagonal_halves
    double intensity_sum
    double intensity_min
    double intensity_max


# Field order and types must match CellSums exactly (checked below at import).
CELL_SUMS_DTYPE = np.dtype(
    [(name, np.int64) for name in (
        "label", "area", "row0", "col0", "sum_r", "sum_c", "sum_rr", "sum_cc", "sum_rc",
        "row_stop", "col_min", "col_stop", "perimeter_halves", "perimeter_diagonal_halves")]
    + [(name, np.float64) for name in ("intensity_sum", "intensity_min", "intensity_max")]
)
if CELL_SUMS_DTYPE.itemsize != sizeof(CellSums):
    raise ImportError("cellpipe._measure: CellSums layout does not match CELL_SUMS_DTYPE")

# Intensity dtypes the kernel reads directly; cellpipe.measure converts any other to float64.
INTENSITY_KINDS = {
    np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.uint32): 3,
    np.dtype(np.int8): 4, np.dtype(np.int16): 5, np.dtype(np.int32): 6,
    np.dtype(np.float32): 7, np.dtype(np.float64): 8,
}

# Status codes returned by accumulate_cells.
OK = 0
NEGATIVE_LABEL = 1
LABEL_ABOVE_TABLE_LIMIT = 2
cdef int _OK = 0, _NEGATIVE = 1, _ABOVE_LIMIT = 2, _NO_MEMORY = 3


cdef struct Run:
    int64_t start
    int64_t stop
    int64_t cell


cdef struct Scan:
    CellSums* cells
    int64_t n_cells
    int64_t capacity
    int32_t* cell_of_label  # dense lookup table: label value -> index in cells, or -1
    int64_t table_size
    int64_t table_limit


cdef struct RowMasks:
    # One byte per pixel, 1 = true. Index -1 and n_cols .. n_cols + 7 are readable padding.
    uint8_t* border       # labelled, with a 4-neighbour of another label or outside
    uint8_t* right        # differs from the pixel to the right (1 in the last column)
    uint8_t* below        # differs from the pixel below (1 in the last row)
    uint8_t* below_left   # differs from the pixel below-left (1 in first column/last row)
    uint8_t* below_right  # differs from the pixel below-right (1 in last column/last row)


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(_MSC_VER)
    #include <intrin.h>
    #endif
    /* Index of the first nonzero byte of mask at or after ``start``. The caller
       guarantees that one exists and that 7 bytes past it are readable. */
    static inline Py_ssize_t cellpipe_next_set(const uint8_t *mask, Py_ssize_t start) {
        uint64_t word;
        for (;;) {
            memcpy(&word, mask + start, 8);
            if (word) {
    #if defined(_MSC_VER)
                unsigned long bit;
                _BitScanForward64(&bit, word);
    #elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
                int bit = __builtin_clzll(word);
    #else
                int bit = __builtin_ctzll(word);
    #endif
                return start + (Py_ssize_t)(bit >> 3);
            }
            start += 8;
        }
    }

    /* Sums of the low and of the high nibbles of the bytes mask[start:stop]
       (each nibble at most 2, so 8 of them fit in a byte). 7 bytes past stop are
       readable. */
    static inline void cellpipe_sum_nibbles(const uint8_t *mask, Py_ssize_t start,
                                            Py_ssize_t stop, int64_t *low, int64_t *high) {
        const uint64_t nibbles = 0x0F0F0F0F0F0F0F0FULL, ones = 0x0101010101010101ULL;
        uint64_t word, sum_low = 0, sum_high = 0;
        Py_ssize_t i;
        for (i = start; i < stop; i += 8) {
            memcpy(&word, mask + i, 8);
            if (stop - i < 8) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
                word &= ~(~0ULL >> (8 * (stop - i)));
    #else
                word &= ~(~0ULL << (8 * (stop - i)));
    #endif
            }
            sum_low += ((word & nibbles) * ones) >> 56;
            sum_high += (((word >> 4) & nibbles) * ones) >> 56;
        }
        *low += (int64_t)sum_low;
        *high += (int64_t)sum_high;
    }
    """
    Py_ssize_t _next_set "cellpipe_next_set" (const uint8_t* mask, Py_ssize_t start) noexcept nogil
    void _sum_nibbles "cellpipe_sum_nibbles" (const uint8_t* mask, Py_ssize_t start, Py_ssize_t stop,
                                              int64_t* low, int64_t* high) noexcept nogil


cdef void _compare_row(const label_t* row, const label_t* below, Py_ssize_t n_cols,
                       const uint8_t* above_differs, RowMasks* masks) noexcept nogil:
    """Fill ``masks`` for one row. ``below`` is the next row, or NULL for the last row;
    ``above_differs`` is the previous row's ``masks.below`` (all 1 for the first row)."""
    # Local pointers: a byte store may alias anything, so fields read through ``masks``
    # inside the loops would be reloaded at every pixel and the loops would not vectorise.
    cdef uint8_t* border = masks.border
    cdef uint8_t* right = masks.right
    cdef uint8_t* below_differs = masks.below
    cdef uint8_t* below_left = masks.below_left
    cdef uint8_t* below_right = masks.below_right
    cdef Py_ssize_t c
    if below != NULL:
        for c in range(n_cols):
            below_differs[c] = row[c] != below[c]
        for c in range(n_cols - 1):
            below_right[c] = row[c] != below[c + 1]
        for c in range(1, n_cols):
            below_left[c] = row[c] != below[c - 1]
        below_right[n_cols - 1] = 1
        below_left[0] = 1
    else:
        memset(below_differs, 1, n_cols)
        memset(below_right, 1, n_cols)
        memset(below_left, 1, n_cols)
    for c in range(n_cols - 1):
        right[c] = row[c] != row[c + 1]
    right[n_cols - 1] = 1
    for c in range(n_cols):
        border[c] = (row[c] != 0) & (right[c] | right[c - 1] | above_differs[c]
                                     | below_differs[c])


cdef void _perimeter_weights(const RowMasks* up, const RowMasks* row, const RowMasks* down,
                             Py_ssize_t n_cols, uint8_t* weights) noexcept nogil:
    """Write each pixel's perimeter weight, as ``halves + 16 * diagonal_halves``.

    skimage's perimeter gives each border pixel the code ``1 + 2 a + 10 d``, with ``a``
    (``d``) the number of its 4-neighbours (diagonal neighbours) that are border pixels of
    the same cell, and the weight 1 for codes 5, 7, 15, 17, 25, 27 (a in {2, 3}, d <= 2),
    sqrt(2) for 21, 33 (a = 0, d = 2 or a = 1, d = 3) and (1 + sqrt(2)) / 2 for 13, 23
    (a = 1, d in {1, 2}). In halves of 1 and of sqrt(2): (2, 0), (0, 2) and (1, 1).
    """
    cdef const uint8_t* border = row.border
    cdef const uint8_t* right = row.right
    cdef const uint8_t* below = row.below
    cdef const uint8_t* below_left = row.below_left
    cdef const uint8_t* below_right = row.below_right
    cdef const uint8_t* border_up = up.border
    cdef const uint8_t* up_below = up.below
    cdef const uint8_t* up_below_left = up.below_left
    cdef const uint8_t* up_below_right = up.below_right
    cdef const uint8_t* border_down = down.border
    cdef Py_ssize_t c
    cdef uint8_t a, d, straight, diagonal, mixed
    for c in range(n_cols):
        a = ((border[c - 1] & (right[c - 1] ^ 1)) + (border[c + 1] & (right[c] ^ 1))
             + (border_up[c] & (up_below[c] ^ 1)) + (border_down[c] & (below[c] ^ 1)))
        d = ((border_up[c - 1] & (up_below_right[c - 1] ^ 1))
             + (border_up[c + 1] & (up_below_left[c + 1] ^ 1))
             + (border_down[c - 1] & (below_left[c] ^ 1))
             + (border_down[c + 1] & (below_right[c] ^ 1)))
        straight = ((a == 2) | (a == 3)) & (d <= 2)
        mixed = (a == 1) & ((d == 1) | (d == 2))
        diagonal = ((a == 0) & (d == 2)) | ((a == 1) & (d == 3))
        weights[c] = border[c] * (2 * straight + mixed + 16 * (mixed + 2 * diagonal))


cdef inline int64_t _new_cell(Scan* scan, int64_t label, int64_t r, int64_t c) noexcept nogil:
    """Append a cell whose first pixel is (r, c); return its index, or -1 when out of memory."""
    cdef CellSums* grown
    cdef CellSums* cell
    if scan.n_cells == scan.capacity:
        grown = <CellSums*> realloc(scan.cells, 2 * scan.capacity * sizeof(CellSums))
        if grown == NULL:
            return -1
        scan.cells = grown
        scan.capacity *= 2
    cell = &scan.cells[scan.n_cells]
    memset(cell, 0, sizeof(CellSums))
    cell.label = label
    cell.row0 = r
    cell.col0 = c
    cell.col_min = c
    cell.intensity_min = INFINITY
    cell.intensity_max = -INFINITY
    scan.n_cells += 1
    return scan.n_cells - 1


cdef inline int _grow_table(Scan* scan, int64_t label) noexcept nogil:
    """Make the label lookup table cover ``label``; return a status code."""
    cdef int64_t size = scan.table_size
    cdef int32_t* grown
    cdef int64_t i
    while size <= label:
        size *= 2
    if size > scan.table_limit:
        size = scan.table_limit
    grown = <int32_t*> realloc(scan.cell_of_label, size * sizeof(int32_t))
    if grown == NULL:
        return _NO_MEMORY
    for i in range(scan.table_size, size):
        grown[i] = -1
    scan.cell_of_label = grown
    scan.table_size = size
    return _OK


cdef inline void _add_run(CellSums* cell, int64_t r, int64_t start, int64_t stop) noexcept nogil:
    """Add the pixels (r, start) .. (r, stop - 1) to the cell's count, bbox and moments."""
    cdef int64_t m = stop - start
    cdef int64_t dr = r - cell.row0
    cdef int64_t a = start - cell.col0
    # sum and sum of squares of a, a + 1, ..., a + m - 1
    cdef int64_t sum_c = m * a + m * (m - 1) // 2
    cdef int64_t sum_cc = m * a * a + a * m * (m - 1) + (m - 1) * m * (2 * m - 1) // 6
    cell.area += m
    cell.sum_r += m * dr
    cell.sum_rr += m * dr * dr
    cell.sum_c += sum_c
    cell.sum_cc += sum_cc
    cell.sum_rc += dr * sum_c
    cell.row_stop = r + 1
    if start < cell.col_min:
        cell.col_min = start
    if stop > cell.col_stop:
        cell.col_stop = stop


cdef inline void _row_intensity(const intensity_t* row, const Run* runs, Py_ssize_t n_runs,
                                CellSums* cells) noexcept nogil:
    """Add one row's intensities to the sum, min and max of the cells its runs belong to."""
    cdef Py_ssize_t i, c
    cdef double total, low, high, value
    cdef CellSums* cell
    for i in range(n_runs):
        cell = &cells[runs[i].cell]
        total = 0.0
        low = cell.intensity_min
        high = cell.intensity_max
        for c in range(runs[i].start, runs[i].stop):
            value = <double> row[c]
            total += value
            if value < low:
                low = value
            if value > high:
                high = value
        cell.intensity_sum += total
        cell.intensity_min = low
        cell.intensity_max = high


cdef void _dispatch_intensity(const char* intensity, int kind, Py_ssize_t offset,
                              const Run* runs, Py_ssize_t n_runs, CellSums* cells) noexcept nogil:
    """Call _row_intensity for the intensity dtype numbered ``kind`` (INTENSITY_KINDS)."""
    if kind == 1:
        _row_intensity((<const uint8_t*> intensity) + offset, runs, n_runs, cells)
    elif kind == 2:
        _row_intensity((<const uint16_t*> intensity) + offset, runs, n_runs, cells)
    elif kind == 3:
        _row_intensity((<const uint32_t*> intensity) + offset, runs, n_runs, cells)
    elif kind == 4:
        _row_intensity((<const int8_t*> intensity) + offset, runs, n_runs, cells)
    elif kind == 5:
        _row_intensity((<const int16_t*> intensity) + offset, runs, n_runs, cells)
    elif kind == 6:
        _row_intensity((<const int32_t*> intensity) + offset, runs, n_runs, cells)
    elif kind == 7:
        _row_intensity((<const float*> intensity) + offset, runs, n_runs, cells)
    elif kind == 8:
        _row_intensity((<const double*> intensity) + offset, runs, n_runs, cells)


cdef int _scan_image(const label_t* labels, Py_ssize_t n_rows, Py_ssize_t n_cols,
                     const char* intensity, int intensity_kind, Scan* scan) noexcept nogil:
    """Accumulate every cell of the label image into ``scan``; return a status code."""
    # 3 x 5 mask rows and one weight row, each with 8 bytes of padding on either side.
    cdef Py_ssize_t stride = n_cols + 16
    cdef uint8_t* buffer = <uint8_t*> calloc(16 * stride, 1)
    cdef Run* runs = <Run*> malloc(n_cols * sizeof(Run))
    cdef RowMasks rings[3]
    cdef RowMasks* up = &rings[0]
    cdef RowMasks* this = &rings[1]
    cdef RowMasks* down = &rings[2]
    cdef RowMasks* spare
    cdef uint8_t* weights
    cdef const label_t* row
    cdef const label_t* below
    cdef Py_ssize_t r, start, stop, n_runs, i
    cdef int64_t cell_index
    cdef CellSums* cell
    cdef label_t v
    cdef int status = _OK
    if buffer == NULL or runs == NULL:
        free(buffer)
        free(runs)
        return _NO_MEMORY
    for i in range(3):
        rings[i].border = buffer + 8 + (5 * i) * stride
        rings[i].right = rings[i].border + stride
        rings[i].below = rings[i].right + stride
        rings[i].below_left = rings[i].below + stride
        rings[i].below_right = rings[i].below_left + stride
        (rings[i].right - 1)[0] = 1  # the pixel left of the image differs
    weights = buffer + 8 + 15 * stride
    memset(up.below, 1, n_cols)  # the row above the image differs from row 0

    _compare_row(labels, labels + n_cols if n_rows > 1 else NULL, n_cols, up.below, this)
    for r in range(n_rows):
        row = labels + r * n_cols
        if r + 1 < n_rows:
            below = row + 2 * n_cols if r + 2 < n_rows else NULL
            _compare_row(row + n_cols, below, n_cols, this.below, down)
        else:
            memset(down.border, 0, n_cols)  # the row below the image has no border pixels
        _perimeter_weights(up, this, down, n_cols, weights)
        n_runs = 0
        start = 0
        while start < n_cols:
            stop = _next_set(this.right, start) + 1
            v = row[start]
            if v != 0:
                if label_t is int32_t or label_t is int64_t:
                    if v < 0:
                        status = _NEGATIVE
                        break
                if <uint64_t> v >= <uint64_t> scan.table_limit:
                    status = _ABOVE_LIMIT
                    break
                if <int64_t> v >= scan.table_size:
                    status = _grow_table(scan, <int64_t> v)
                    if status != _OK:
                        break
                cell_index = scan.cell_of_label[v]
                if cell_index < 0:
                    cell_index = _new_cell(scan, <int64_t> v, r, start)
                    if cell_index < 0:
                        status = _NO_MEMORY
                        break
                    scan.cell_of_label[v] = <int32_t> cell_index
                cell = &scan.cells[cell_index]
                _add_run(cell, r, start, stop)
                _sum_nibbles(weights, start, stop, &cell.perimeter_halves,
                             &cell.perimeter_diagonal_halves)
                runs[n_runs].start = start
                runs[n_runs].stop = stop
                runs[n_runs].cell = cell_index
                n_runs += 1
            start = stop
        if status != _OK:
            break
        if intensity_kind != 0:
            _dispatch_intensity(intensity, intensity_kind, r * n_cols, runs, n_runs,
                                scan.cells)
        spare = up
        up = this
        this = down
        down = spare
    free(buffer)
    free(runs)
    return status


def accumulate_cells(const label_t[:, ::1] labels, intensity, int intensity_kind,
                     int64_t table_limit):
    """Return ``(status, cells)``: per-cell sums of a label image, in first-seen order.

    Parameters
    ----------
    labels : (M, N) C-contiguous array of uint8, uint16, uint32, uint64, int32 or int64
        Label image; 0 is background. Must have at least one pixel.
    intensity : (M, N) C-contiguous ndarray or None
        Intensity image of the dtype numbered ``intensity_kind`` in INTENSITY_KINDS.
    intensity_kind : int
        0 when ``intensity`` is None, else INTENSITY_KINDS[intensity.dtype].
    table_limit : int
        Label values must be below this; the dense lookup table grows up to this size.

    Returns
    -------
    status : int
        OK, NEGATIVE_LABEL or LABEL_ABOVE_TABLE_LIMIT (then ``cells`` is None).
    cells : ndarray of CELL_SUMS_DTYPE or None
        One record per label present, in raster order of first appearance.
    """
    cdef Py_ssize_t n_rows = labels.shape[0]
    cdef Py_ssize_t n_cols = labels.shape[1]
    cdef const char* intensity_pixels = NULL
    cdef cnp.ndarray intensity_array
    cdef Scan scan
    cdef int status
    cdef cnp.ndarray cells
    if n_rows == 0 or n_cols == 0:
        raise ValueError("accumulate_cells needs at least one pixel")
    if table_limit < 1:
        raise ValueError("table_limit must be positive")
    if intensity_kind != 0:
        intensity_array = intensity
        if (intensity_array.ndim != 2 or intensity_array.shape[0] != n_rows
                or intensity_array.shape[1] != n_cols
                or not intensity_array.flags.c_contiguous
                or INTENSITY_KINDS.get(intensity_array.dtype) != intensity_kind):
            raise ValueError("intensity does not match labels or intensity_kind")
        intensity_pixels = <const char*> cnp.PyArray_DATA(intensity_array)
    scan.n_cells = 0
    scan.capacity = 1024
    scan.table_size = min(65536, table_limit)
    scan.table_limit = table_limit
    scan.cells = <CellSums*> malloc(scan.capacity * sizeof(CellSums))
    scan.cell_of_label = <int32_t*> malloc(scan.table_size * sizeof(int32_t))
    try:
        if scan.cells == NULL or scan.cell_of_label == NULL:
            raise MemoryError()
        memset(scan.cell_of_label, 0xFF, scan.table_size * sizeof(int32_t))  # all -1
        with nogil:
            status = _scan_image(&labels[0, 0], n_rows, n_cols, intensity_pixels,
                                 intensity_kind, &scan)
        if status == _NO_MEMORY:
            raise MemoryError("out of memory while measuring cells")
        if status != _OK:
            return status, None
        cells = np.empty(scan.n_cells, dtype=CELL_SUMS_DTYPE)
        if scan.n_cells:
            memcpy(cnp.PyArray_DATA(cells), scan.cells, scan.n_cells * sizeof(CellSums))
        return _OK, cells
    finally:
        free(scan.cells)
        free(scan.cell_of_label)
