# cython: language_level=3
"""One pass over a label image: the per-cell sums behind ``cellpipe.measure``.

:func:`accumulate_cells` walks the label image row by row, with byte masks of rows r-1,
r and r+1 in a rolling buffer of three. For each row r it

1. compares row r+1 with its neighbours to the right and in row r+2 (below, below-left,
   below-right) and flags its border pixels (labelled pixels with a 4-neighbour of
   another label or outside the image). This is the only work done for every pixel; it
   runs in the C loops of the ``cdef extern`` block below (AVX2 where the CPU has it);
2. gives every pixel of row r skimage's perimeter code, from the masks of rows r-1, r and
   r+1 (byte arithmetic, vectorised as well);
3. walks the runs of equal labels of row r, 64 pixels at a time through a bitmap of label
   changes. A run updates its cell's pixel count, bounding box and moments in closed form
   (sums of an arithmetic series) and adds the perimeter weights of its border pixels:
   its two ends, and the rare border pixels in between (another bitmap).

Moments are exact int64 sums of absolute coordinates. Everything that is O(number of
cells) (sorting, central moments, eigenvalues) happens afterwards in numpy, in
``cellpipe/measure.py``.
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
    int64_t row_min         # bbox: rows [row_min, row_stop), columns [col_min, col_stop)
    int64_t col_min
    int64_t row_stop
    int64_t col_stop
    int64_t sum_r           # sums of row, column and their products over the cell's pixels
    int64_t sum_c
    int64_t sum_rr
    int64_t sum_cc
    int64_t sum_rc
    int64_t perimeter_halves           # perimeter = (halves + sqrt(2) * diagonal_halves) / 2
    int64_t perimeter_diagonal_halves
    double intensity_sum
    double intensity_min
    double intensity_max


# Field order and types must match CellSums exactly (checked below at import).
CELL_SUMS_DTYPE = np.dtype(
    [(name, np.int64) for name in (
        "label", "area", "row_min", "col_min", "row_stop", "col_stop", "sum_r", "sum_c",
        "sum_rr", "sum_cc", "sum_rc", "perimeter_halves", "perimeter_diagonal_halves")]
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

# skimage's perimeter weight of a border pixel by its code 1 + 2 a + 10 d, where a (d) is
# the number of its 4-neighbours (diagonal neighbours) that are border pixels of the same
# cell: 1 for codes 5, 7, 15, 17, 25, 27; sqrt(2) for 21, 33; (1 + sqrt(2)) / 2 for 13, 23.
# Kept exact as a count of halves of 1 (low 32 bits) and of halves of sqrt(2) (high 32
# bits), so that one addition per pixel adds both; a run's sum fits in each half.
cdef int64_t WEIGHT_HALVES[50]
memset(WEIGHT_HALVES, 0, sizeof(WEIGHT_HALVES))
cdef int64_t _ONE = 2, _SQRT2 = 2LL << 32, _MIXED = 1 + (1LL << 32)
for _code in (5, 7, 15, 17, 25, 27):
    WEIGHT_HALVES[_code] = _ONE
for _code in (21, 33):
    WEIGHT_HALVES[_code] = _SQRT2
for _code in (13, 23):
    WEIGHT_HALVES[_code] = _MIXED


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
    # Bytes, one per pixel, 0 or 1; index -1 and n_cols are readable and 0 for border.
    uint8_t* border       # labelled, with a 4-neighbour of another label or outside
    uint8_t* right        # differs from the pixel to the right (1 in the last column)
    uint8_t* below        # differs from the pixel below (1 in the last row)
    uint8_t* below_left   # differs from the pixel below-left (1 in first column/last row)
    uint8_t* below_right  # differs from the pixel below-right (1 in last column/last row)
    # Bitmaps, 64 pixels per word: ``right`` and the border pixels that are neither the
    # first nor the last of their run (rare: most runs have border pixels at both ends).
    uint64_t* right_bits
    uint64_t* inner_border_bits


cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    #if defined(_MSC_VER)
    #include <intrin.h>
    #define CELLPIPE_RESTRICT __restrict
    #else
    #define CELLPIPE_RESTRICT __restrict__
    #endif
    /* Byte masks that alias nothing else, so that the compiler vectorises the loops. */
    typedef const uint8_t *CELLPIPE_RESTRICT cellpipe_mask_in;
    typedef uint8_t *CELLPIPE_RESTRICT cellpipe_mask_out;

    /* Pack 64 * n_words bytes, each 0 or 1, into n_words bitmaps (pixel c is bit c % 64). */
    static void cellpipe_pack_bits(const uint8_t *bytes, uint64_t *bits, Py_ssize_t n_words) {
        Py_ssize_t k;
        int j;
        for (k = 0; k < n_words; k++) {
            const uint8_t *p = bytes + 64 * k;
            uint64_t word = 0;
    #if defined(__SSE2__)
            const __m128i zero = _mm_setzero_si128();
            for (j = 0; j < 4; j++) {
                __m128i chunk = _mm_loadu_si128((const __m128i *)(p + 16 * j));
                word |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpgt_epi8(chunk, zero))
                        << (16 * j);
            }
    #else
            for (j = 0; j < 64; j++) {
                word |= (uint64_t)(p[j] != 0) << j;
            }
    #endif
            bits[k] = word;
        }
    }

    /* Index of the lowest set bit of a nonzero word. */
    static inline int cellpipe_lowest_bit(uint64_t word) {
    #if defined(_MSC_VER)
        unsigned long bit;
        _BitScanForward64(&bit, word);
        return (int)bit;
    #else
        return __builtin_ctzll(word);
    #endif
    }

    /* Ask for the cache line at address ahead of its use (a hint; no-op elsewhere). */
    static inline void cellpipe_prefetch(const void *address) {
    #if defined(__GNUC__)
        __builtin_prefetch(address);
    #endif
    }

    /* The per-pixel loop of _compare_row, over columns 1 .. n_cols - 2 of a row with a
       row below: which pixels differ from the pixel below and from the pixel to the
       right, and which are border pixels. It is most of the time spent per pixel, so:

       - for 32-bit labels (what watershed gives) on x86 CPUs with AVX2, it runs in the
         hand-vectorised cellpipe_compare_pixels_avx2_32, 3 times faster than what the
         compiler makes of the portable loop;
       - elsewhere, the portable loop below is compiled twice where GCC can pick the
         better at load time (ifunc): for AVX2 and for the baseline instruction set.
       Defining CELLPIPE_PORTABLE (CFLAGS=-DCELLPIPE_PORTABLE) builds the portable loops
       only, to test them on a machine with AVX2. */
    #if defined(__GNUC__) && defined(__x86_64__) && !defined(CELLPIPE_PORTABLE)
    #include <immintrin.h>

    static int cellpipe_cpu_has_avx2(void) {
        static int has_avx2 = -1;
        if (has_avx2 < 0) {
            __builtin_cpu_init();
            has_avx2 = __builtin_cpu_supports("avx2") != 0;
        }
        return has_avx2;
    }

    /* 32 pixels at a time from column 1; returns the first column left to do. */
    __attribute__((target("avx2")))
    static Py_ssize_t cellpipe_compare_pixels_avx2_32(
            const void *row_pixels, const void *below_pixels, Py_ssize_t n_cols,
            const uint8_t *above_differs, uint8_t *below_differs, uint8_t *below_left,
            uint8_t *below_right, uint8_t *right, uint8_t *border) {
        const int32_t *row = (const int32_t *)row_pixels;
        const int32_t *below = (const int32_t *)below_pixels;
        const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi8(1);
        const __m256i in_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        Py_ssize_t c;
        int j;
        for (c = 1; c + 32 <= n_cols - 1; c += 32) {
            __m256i same_below[4], same_right[4], same_left[4], unlabelled[4];
            __m256i same_below_left[4], same_below_right[4];
            for (j = 0; j < 4; j++) {
                const int32_t *at = row + c + 8 * j;
                __m256i x = _mm256_loadu_si256((const __m256i *)at);
                const int32_t *under = below + c + 8 * j;
                same_below[j] = _mm256_cmpeq_epi32(x, _mm256_loadu_si256((const __m256i *)under));
                same_below_left[j] = _mm256_cmpeq_epi32(
                    x, _mm256_loadu_si256((const __m256i *)(under - 1)));
                same_below_right[j] = _mm256_cmpeq_epi32(
                    x, _mm256_loadu_si256((const __m256i *)(under + 1)));
                same_right[j] = _mm256_cmpeq_epi32(
                    x, _mm256_loadu_si256((const __m256i *)(at + 1)));
                same_left[j] = _mm256_cmpeq_epi32(x, _mm256_loadu_si256((const __m256i *)(at - 1)));
                unlabelled[j] = _mm256_cmpeq_epi32(x, zero);
            }
            /* 4 x 8 lanes of 0 / -1 to 32 bytes of 0 / -1, in pixel order */
            #define CELLPIPE_TO_BYTES(v) _mm256_permutevar8x32_epi32(_mm256_packs_epi16( \
                _mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3])), in_order)
            __m256i below_same = CELLPIPE_TO_BYTES(same_below);
            __m256i below_left_same = CELLPIPE_TO_BYTES(same_below_left);
            __m256i below_right_same = CELLPIPE_TO_BYTES(same_below_right);
            __m256i right_same = CELLPIPE_TO_BYTES(same_right);
            __m256i left_same = CELLPIPE_TO_BYTES(same_left);
            __m256i no_label = CELLPIPE_TO_BYTES(unlabelled);
            #undef CELLPIPE_TO_BYTES
            __m256i above_same = _mm256_cmpeq_epi8(
                _mm256_loadu_si256((const __m256i *)(above_differs + c)), zero);
            __m256i inside = _mm256_and_si256(_mm256_and_si256(below_same, above_same),
                                              _mm256_and_si256(right_same, left_same));
            _mm256_storeu_si256((__m256i *)(below_differs + c),
                                _mm256_andnot_si256(below_same, one));
            _mm256_storeu_si256((__m256i *)(below_left + c),
                                _mm256_andnot_si256(below_left_same, one));
            _mm256_storeu_si256((__m256i *)(below_right + c),
                                _mm256_andnot_si256(below_right_same, one));
            _mm256_storeu_si256((__m256i *)(right + c), _mm256_andnot_si256(right_same, one));
            _mm256_storeu_si256((__m256i *)(border + c),
                                _mm256_andnot_si256(_mm256_or_si256(inside, no_label), one));
        }
        return c;
    }
    #define CELLPIPE_SIMD_32(...) \
        (cellpipe_cpu_has_avx2() ? cellpipe_compare_pixels_avx2_32(__VA_ARGS__) : 1)
    #else
    #define CELLPIPE_SIMD_32(...) 1
    #endif

    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
        && !defined(CELLPIPE_PORTABLE)
    #define CELLPIPE_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define CELLPIPE_CLONES
    #endif
    /* Equality does not depend on signedness, so one loop per label width. */
    #define CELLPIPE_COMPARE_PIXELS(T)                                                    \
    static CELLPIPE_CLONES void cellpipe_compare_pixels_##T(                              \
            const T *CELLPIPE_RESTRICT row, const T *CELLPIPE_RESTRICT below,             \
            Py_ssize_t n_cols, cellpipe_mask_in above_differs,                            \
            cellpipe_mask_out below_differs, cellpipe_mask_out below_left,                \
            cellpipe_mask_out below_right, cellpipe_mask_out right,                       \
            cellpipe_mask_out border) {                                                   \
        Py_ssize_t c = 1;                                                                 \
        if (sizeof(T) == 4) {                                                             \
            c = CELLPIPE_SIMD_32(row, below, n_cols, above_differs, below_differs,        \
                                 below_left, below_right, right, border);                 \
        }                                                                                 \
        for (; c < n_cols - 1; c++) {                                                     \
            T x = row[c];                                                                 \
            uint8_t differs_below = x != below[c], differs_right = x != row[c + 1];       \
            below_differs[c] = differs_below;                                             \
            below_left[c] = x != below[c - 1];                                            \
            below_right[c] = x != below[c + 1];                                           \
            right[c] = differs_right;                                                     \
            border[c] = (x != 0) & (differs_right | (x != row[c - 1]) | above_differs[c]  \
                                    | differs_below);                                     \
        }                                                                                 \
    }
    CELLPIPE_COMPARE_PIXELS(uint8_t)
    CELLPIPE_COMPARE_PIXELS(uint16_t)
    CELLPIPE_COMPARE_PIXELS(uint32_t)
    CELLPIPE_COMPARE_PIXELS(uint64_t)

    static void cellpipe_compare_pixels(
            size_t label_size, const void *row, const void *below, Py_ssize_t n_cols,
            const uint8_t *above_differs, uint8_t *below_differs, uint8_t *below_left,
            uint8_t *below_right, uint8_t *right, uint8_t *border) {
        #define CELLPIPE_CALL(T) cellpipe_compare_pixels_##T(                             \
            (const T *)row, (const T *)below, n_cols, above_differs, below_differs,       \
            below_left, below_right, right, border)
        switch (label_size) {
            case 1: CELLPIPE_CALL(uint8_t); break;
            case 2: CELLPIPE_CALL(uint16_t); break;
            case 4: CELLPIPE_CALL(uint32_t); break;
            default: CELLPIPE_CALL(uint64_t); break;
        }
        #undef CELLPIPE_CALL
    }

    /* skimage's perimeter code of every pixel of a row (0 where it is no border pixel):
       1 + 2 * (4-neighbours that are border pixels of the same cell)
         + 10 * (diagonal neighbours that are border pixels of the same cell).
       Masks as in RowMasks, for the rows above (up_*), at (no prefix) and below. */
    static CELLPIPE_CLONES void cellpipe_perimeter_codes(
            cellpipe_mask_in up_border, cellpipe_mask_in up_below,
            cellpipe_mask_in up_below_left, cellpipe_mask_in up_below_right,
            cellpipe_mask_in border, cellpipe_mask_in right, cellpipe_mask_in below,
            cellpipe_mask_in below_left, cellpipe_mask_in below_right,
            cellpipe_mask_in down_border, Py_ssize_t n_cols, cellpipe_mask_out codes) {
        Py_ssize_t c;
        for (c = 0; c < n_cols; c++) {
            uint8_t straight = (border[c - 1] & (right[c - 1] ^ 1))
                               + (border[c + 1] & (right[c] ^ 1))
                               + (up_border[c] & (up_below[c] ^ 1))
                               + (down_border[c] & (below[c] ^ 1));
            uint8_t diagonal = (up_border[c - 1] & (up_below_right[c - 1] ^ 1))
                               + (up_border[c + 1] & (up_below_left[c + 1] ^ 1))
                               + (down_border[c - 1] & (below_left[c] ^ 1))
                               + (down_border[c + 1] & (below_right[c] ^ 1));
            codes[c] = border[c] * (uint8_t)(1 + 2 * straight + 10 * diagonal);
        }
    }
    """
    void _pack_bits "cellpipe_pack_bits" (const uint8_t* bytes, uint64_t* bits,
                                          Py_ssize_t n_words) noexcept nogil
    int _lowest_bit "cellpipe_lowest_bit" (uint64_t word) noexcept nogil
    void _prefetch "cellpipe_prefetch" (const void* address) noexcept nogil
    void _perimeter_codes "cellpipe_perimeter_codes" (
        const uint8_t* up_border, const uint8_t* up_below, const uint8_t* up_below_left,
        const uint8_t* up_below_right, const uint8_t* border, const uint8_t* right,
        const uint8_t* below, const uint8_t* below_left, const uint8_t* below_right,
        const uint8_t* down_border, Py_ssize_t n_cols, uint8_t* codes) noexcept nogil
    void _compare_pixels "cellpipe_compare_pixels" (
        size_t label_size, const void* row, const void* below, Py_ssize_t n_cols,
        const uint8_t* above_differs, uint8_t* below_differs, uint8_t* below_left,
        uint8_t* below_right, uint8_t* right, uint8_t* border) noexcept nogil
    ctypedef uint8_t* mask_out "cellpipe_mask_out"


cdef void _compare_last_row(const label_t* row, Py_ssize_t n_cols, mask_out right,
                            mask_out border) noexcept nogil:
    """The loop of _compare_row for the last row, whose pixels are all border pixels."""
    cdef Py_ssize_t c
    cdef label_t x
    for c in range(1, n_cols - 1):
        x = row[c]
        right[c] = x != row[c + 1]
        border[c] = x != 0


cdef void _compare_row(const label_t* row, const label_t* below, Py_ssize_t n_cols,
                       Py_ssize_t n_words, const uint8_t* above_differs,
                       RowMasks* masks) noexcept nogil:
    """Fill ``masks`` for one row. ``below`` is the next row, or NULL for the last row;
    ``above_differs`` is the previous row's ``masks.below`` (all 1 for the first row)."""
    cdef Py_ssize_t last = n_cols - 1, word
    cdef uint64_t run_starts, last_of_previous_word = 1  # column 0 starts a run
    if below == NULL:
        _compare_last_row(row, n_cols, masks.right, masks.border)
        memset(masks.below, 1, n_cols)
        memset(masks.below_left, 1, n_cols)
        memset(masks.below_right, 1, n_cols)
    else:
        _compare_pixels(sizeof(label_t), row, below, n_cols, above_differs, masks.below,
                        masks.below_left, masks.below_right, masks.right, masks.border)
        # The first and last columns; a neighbour outside the image differs.
        masks.below[0] = row[0] != below[0]
        masks.below[last] = row[last] != below[last]
        masks.below_left[0] = 1
        masks.below_right[last] = 1
        if last > 0:
            masks.below_right[0] = row[0] != below[1]
            masks.below_left[last] = row[last] != below[last - 1]
    masks.right[last] = 1
    if last > 0:
        masks.right[0] = row[0] != row[1]
    masks.border[0] = row[0] != 0
    masks.border[last] = row[last] != 0
    _pack_bits(masks.right, masks.right_bits, n_words)
    _pack_bits(masks.border, masks.inner_border_bits, n_words)
    for word in range(n_words):
        run_starts = (masks.right_bits[word] << 1) | last_of_previous_word
        last_of_previous_word = masks.right_bits[word] >> 63
        masks.inner_border_bits[word] &= ~(masks.right_bits[word] | run_starts)


cdef inline void _add_run_perimeter(CellSums* cell, Py_ssize_t start, Py_ssize_t stop,
                                    const uint8_t* codes,
                                    const uint64_t* inner_border_bits) noexcept nogil:
    """Add the perimeter weights of the border pixels of the run [start, stop)."""
    cdef int64_t halves
    cdef Py_ssize_t word, first = start + 1, last = stop - 2
    cdef uint64_t bits
    # The first and last pixels of a run are border pixels: their row neighbour differs.
    halves = WEIGHT_HALVES[codes[start]]
    if stop - start > 1:
        halves += WEIGHT_HALVES[codes[stop - 1]]
    # Pixels in between are border pixels where the row above or below differs.
    if first <= last:
        for word in range(first >> 6, (last >> 6) + 1):
            bits = inner_border_bits[word]
            if bits == 0:
                continue
            if word == first >> 6:
                bits &= ~0ULL << (first & 63)
            if word == last >> 6:
                bits &= ~0ULL >> (63 - (last & 63))
            while bits != 0:
                halves += WEIGHT_HALVES[codes[(word << 6) + _lowest_bit(bits)]]
                bits &= bits - 1
    cell.perimeter_halves += halves & <int64_t> 0xFFFFFFFF
    cell.perimeter_diagonal_halves += halves >> 32


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
    cell.row_min = r
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


cdef inline int64_t _sum_of_squares_below(uint64_t n) noexcept nogil:
    """Return 0**2 + 1**2 + ... + (n - 1)**2 (n >= 0; unsigned, for a cheaper division)."""
    return <int64_t> ((n - 1) * n * (2 * n - 1) // 6) if n > 0 else 0


cdef inline void _add_run(CellSums* cell, int64_t r, int64_t start, int64_t stop) noexcept nogil:
    """Add the pixels (r, start) .. (r, stop - 1) to the cell's count, bbox and moments."""
    cdef int64_t m = stop - start
    cdef int64_t sum_c = (m * (start + stop - 1)) >> 1  # the product is even and >= 0
    cell.area += m
    cell.sum_r += m * r
    cell.sum_rr += m * r * r
    cell.sum_c += sum_c
    cell.sum_cc += _sum_of_squares_below(stop) - _sum_of_squares_below(start)
    cell.sum_rc += r * sum_c
    cell.row_stop = r + 1
    cell.col_min = min(cell.col_min, start)
    cell.col_stop = max(cell.col_stop, stop)


cdef inline void _row_intensity(const intensity_t* row, const Run* runs, Py_ssize_t n_runs,
                                CellSums* cells) noexcept nogil:
    """Add one row's intensities to the sum, min and max of the cells its runs belong to.

    Integer intensities are summed exactly in int64; floating-point ones in four partial
    sums, so that the additions of a run overlap instead of waiting on one another.
    """
    cdef Py_ssize_t i, c, start, stop
    cdef intensity_t low, high, value
    cdef int64_t integer_total
    cdef double total
    cdef double partial[4]
    cdef CellSums* cell
    for i in range(n_runs):
        start = runs[i].start
        stop = runs[i].stop
        low = high = row[start]
        if intensity_t is float or intensity_t is double:
            partial[0] = partial[1] = partial[2] = partial[3] = 0.0
            for c in range(start, stop):
                value = row[c]
                partial[c & 3] += value
                low = min(low, value)
                high = max(high, value)
            total = (partial[0] + partial[1]) + (partial[2] + partial[3])
        else:
            integer_total = 0
            for c in range(start, stop):
                value = row[c]
                integer_total += value
                low = min(low, value)
                high = max(high, value)
            total = <double> integer_total
        cell = &cells[runs[i].cell]
        cell.intensity_sum += total
        cell.intensity_min = min(cell.intensity_min, <double> low)
        cell.intensity_max = max(cell.intensity_max, <double> high)


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
    cdef Py_ssize_t n_words = (n_cols + 63) // 64
    # Byte rows are padded to whole words, plus 16 bytes on either side.
    cdef Py_ssize_t stride = 64 * n_words + 32
    cdef uint8_t* bytes = <uint8_t*> calloc(16 * stride, 1)
    cdef uint8_t* codes
    cdef uint64_t* words = <uint64_t*> calloc(6 * n_words, sizeof(uint64_t))
    cdef Run* runs = <Run*> malloc(n_cols * sizeof(Run))
    cdef RowMasks rings[3]
    cdef RowMasks* masks_up = &rings[0]
    cdef RowMasks* masks = &rings[1]
    cdef RowMasks* masks_down = &rings[2]
    cdef RowMasks* spare
    cdef const label_t* row
    cdef const label_t* down
    cdef Py_ssize_t r, start, stop, n_runs, i, word
    cdef uint64_t bits
    cdef int64_t cell_index
    cdef CellSums* cell
    # Local copies of scan's table and cells (reloaded when they grow): stores to a cell
    # could alias scan's fields, so reading those through ``scan`` costs a load each run.
    cdef int32_t* cell_of_label = scan.cell_of_label
    cdef int64_t table_size = scan.table_size
    cdef CellSums* cells = scan.cells
    cdef label_t v
    cdef int status = _OK
    if bytes == NULL or words == NULL or runs == NULL:
        free(bytes)
        free(words)
        free(runs)
        return _NO_MEMORY
    for i in range(3):
        rings[i].border = bytes + 16 + (5 * i) * stride
        rings[i].right = rings[i].border + stride
        rings[i].below = rings[i].right + stride
        rings[i].below_left = rings[i].below + stride
        rings[i].below_right = rings[i].below_left + stride
        rings[i].right_bits = words + (2 * i) * n_words
        rings[i].inner_border_bits = rings[i].right_bits + n_words
        (rings[i].right - 1)[0] = 1  # the pixel left of the image differs
    codes = bytes + 16 + 15 * stride
    memset(masks_up.below, 1, n_cols)  # the row above the image differs from row 0

    _compare_row(labels, labels + n_cols if n_rows > 1 else NULL, n_cols, n_words,
                 masks_up.below, masks)
    for r in range(n_rows):
        row = labels + r * n_cols
        down = row + n_cols
        if r + 1 < n_rows:
            _compare_row(down, down + n_cols if r + 2 < n_rows else NULL, n_cols, n_words,
                         masks.below, masks_down)
        else:
            memset(masks_down.border, 0, n_cols)  # no border pixels below the image
        _perimeter_codes(masks_up.border, masks_up.below, masks_up.below_left,
                         masks_up.below_right, masks.border, masks.right, masks.below,
                         masks.below_left, masks.below_right, masks_down.border, n_cols, codes)
        n_runs = 0
        start = 0
        for word in range(n_words):
            if r + 3 < n_rows:
                # Fetch row r + 3 while this row is walked: its compare loop then finds it
                # in cache instead of stalling on memory.
                for i in range(<Py_ssize_t> sizeof(label_t)):
                    _prefetch(<const char*> (row + 3 * n_cols + 64 * word) + 64 * i)
            bits = masks.right_bits[word]
            while bits != 0:
                stop = (word << 6) + _lowest_bit(bits) + 1
                bits &= bits - 1
                v = row[start]
                if v != 0:
                    if <uint64_t> v >= <uint64_t> table_size:  # rare: grow the table or stop
                        if label_t is int32_t or label_t is int64_t:
                            if v < 0:
                                status = _NEGATIVE
                                break
                        if <uint64_t> v >= <uint64_t> scan.table_limit:
                            status = _ABOVE_LIMIT
                            break
                        status = _grow_table(scan, <int64_t> v)
                        if status != _OK:
                            break
                        cell_of_label = scan.cell_of_label
                        table_size = scan.table_size
                    cell_index = cell_of_label[v]
                    if cell_index < 0:
                        cell_index = _new_cell(scan, <int64_t> v, r, start)
                        if cell_index < 0:
                            status = _NO_MEMORY
                            break
                        cell_of_label[v] = <int32_t> cell_index
                        cells = scan.cells
                    cell = &cells[cell_index]
                    _add_run(cell, r, start, stop)
                    _add_run_perimeter(cell, start, stop, codes, masks.inner_border_bits)
                    runs[n_runs].start = start
                    runs[n_runs].stop = stop
                    runs[n_runs].cell = cell_index
                    n_runs += 1
                start = stop
            if status != _OK:
                break
        if status != _OK:
            break
        if intensity_kind != 0:
            _dispatch_intensity(intensity, intensity_kind, r * n_cols, runs, n_runs,
                                scan.cells)
        spare = masks_up
        masks_up = masks
        masks = masks_down
        masks_down = spare
    free(bytes)
    free(words)
    free(runs)
    return status


cdef void _copy_in_label_order(const Scan* scan, CellSums* out) noexcept nogil:
    """Copy the cells to ``out``: in label order by walking the lookup table when that
    is cheap (sorting afterwards costs more than the whole walk), else as they are."""
    cdef int64_t label, n = 0
    cdef int32_t index
    if scan.table_size > 16 * scan.n_cells + 65536:
        memcpy(out, scan.cells, scan.n_cells * sizeof(CellSums))
        return
    for label in range(scan.table_size):
        index = scan.cell_of_label[label]
        if index >= 0:
            out[n] = scan.cells[index]
            n += 1


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
        One record per label present, sorted by label when the lookup table is small
        enough to walk (at most 16 entries per cell), else in raster order of first
        appearance.
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
        _copy_in_label_order(&scan, <CellSums*> cnp.PyArray_DATA(cells))
        return _OK, cells
    finally:
        free(scan.cells)
        free(scan.cell_of_label)
