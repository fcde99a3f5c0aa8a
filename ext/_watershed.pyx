"""Watershed flood on integer elevations, label-identical to scikit-image 0.26.

Wrapped by :func:`cellpipe.segment.watershed`, which pads and ravels the arrays.

scikit-image's flood (``skimage/segmentation/_watershed_cy.pyx``, plain case: no
compactness, no watershed line) keeps one binary heap of ``(value, age)`` keys. Every
marker is pushed first, in raster order, with key ``(elevation[marker], 0)``. Popping
a pixel labels each free neighbour at once with the popped pixel's label and pushes it
with ``value = max(elevation[neighbour], popped value)`` and a fresh, increasing age.
(scikit-image's main branch pushes markers at ``-inf`` instead; when all markers lie
on the lowest level, as in :func:`cellpipe.segment.segment_edges`, both agree.)

Markers with equal elevation tie, and the binary heap's shape decides which of them
pops first (which matters when two labels reach for the same pixel, and for the ages
given to their neighbours). Every other key is distinct. So the kernel replays the
heap exactly while markers remain, then finishes with a bucket queue:

1. Marker phase, one of two replays:

   - all markers share one elevation (what :func:`cellpipe.segment.segment_edges`
     produces): they form one block of ties at the top of the heap and pop before
     anything else. Their order depends only on which heap slots hold markers, since
     finite elements never rise above a marker and never change those slots when they
     move among themselves. So only the marker slots are tracked (``slots``; ``-1`` is
     a finite element) and scikit-image's sift-down rule (strictly smaller child wins,
     left child on ties) is replayed on them: O(1) per pop while the heap's last slot
     holds a marker, one walk down the marker slots otherwise;
   - otherwise, the full binary heap is replayed, with inline integer keys, until the
     last marker pops: at heap speed, only a few times faster than scikit-image. For
     uint8 elevations of fewer than 2^26 pixels an item is one 64-bit word (key above
     the pixel index, which comparisons shift away, so equal keys still tie): half the
     memory, about 1.2 times faster than 16-byte items.

   Either replay stops as soon as every marker that touches a free pixel has popped:
   the remaining markers can push nothing. In the full replay a marker also leaves
   the frontier when its last free neighbour is labelled by another, so the replay ends
   once the markers still to pop are all enclosed, not when the highest one pops.
2. Flood phase: every key left or pushed later is distinct and every later push has a
   larger age, so one FIFO per grey level (a list of chunks) pops them in exactly
   the heap's ``(value, age)`` order, at O(1) per pixel.

The flood is bound by memory latency (the FIFO of one level visits every cell of the
image in turn), so each pixel's state and level share one array (``free_level``) and
the neighbourhoods of pixels a few places ahead in the FIFO are prefetched.
"""

cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort, realloc

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

# ``free_level`` holds a pixel's grey level while it is free (inside the mask and
# unlabelled); afterwards one of two sentinels above every level.
ctypedef fused avail_t:
    uint16_t             # for uint8 elevations
    uint32_t             # for uint16 elevations

ctypedef fused label_t:
    cnp.int8_t
    cnp.int16_t
    cnp.int32_t
    cnp.int64_t
    cnp.uint8_t
    cnp.uint16_t
    cnp.uint32_t
    cnp.uint64_t

cdef inline avail_t blocked_sentinel(avail_t[::1] free_level) noexcept nogil:
    # Labelled or outside the mask; one less marks a frontier marker. Both lie above
    # every grey level, so ``free_level[q] < frontier`` means "q is free".
    if avail_t is uint16_t:
        return 0xFFFF
    else:
        return 0xFFFFFFFF


cdef uint64_t AGE_MASK = 0xFFFFFFFF
# How many FIFO places ahead the flood prefetches a pixel's neighbourhood.
cdef Py_ssize_t PREFETCH_DISTANCE = 32


cdef struct HeapItem:
    uint64_t key         # value << 32 | age; markers have age 0
    Py_ssize_t index


cdef struct Heap:
    HeapItem *items
    Py_ssize_t size
    Py_ssize_t capacity


# Each grey level's FIFO is a linked list of fixed-size chunks drawn from a pool:
# pushes and pops stream through memory, and a consumed chunk is reused at once
# instead of going back to the system (fresh pages cost a page fault each).
cdef enum:
    CHUNK_SIZE = 4096


cdef struct Chunk:
    int32_t pixels[CHUNK_SIZE]
    Chunk *next


cdef struct Bucket:
    Chunk *head          # oldest chunk, read from ``read_position``
    Chunk *tail          # newest chunk, filled up to ``tail_size``
    Py_ssize_t read_position
    Py_ssize_t tail_size


cdef struct Buckets:
    Bucket *levels
    Chunk *spare         # consumed chunks, ready for reuse
    int failed           # set when no chunk can be allocated


cdef inline void bucket_push(Buckets *buckets, Py_ssize_t level, Py_ssize_t pixel) noexcept nogil:
    cdef Bucket *bucket = &buckets.levels[level]
    cdef Chunk *chunk
    if bucket.tail == NULL or bucket.tail_size == CHUNK_SIZE:
        chunk = buckets.spare
        if chunk != NULL:
            buckets.spare = chunk.next
        else:
            chunk = <Chunk *>malloc(sizeof(Chunk))
            if chunk == NULL:
                buckets.failed = 1
                return
        chunk.next = NULL
        if bucket.tail == NULL:
            bucket.head = chunk
            bucket.read_position = 0
        else:
            bucket.tail.next = chunk
        bucket.tail = chunk
        bucket.tail_size = 0
    bucket.tail.pixels[bucket.tail_size] = <int32_t>pixel
    bucket.tail_size += 1


cdef inline void release_chunks(Chunk *chunk) noexcept nogil:
    cdef Chunk *next_chunk
    while chunk != NULL:
        next_chunk = chunk.next
        free(chunk)
        chunk = next_chunk


cdef inline int heap_push(Heap *heap, uint64_t key, Py_ssize_t index) noexcept nogil:
    # scikit-image's heappush: append, then sift up while strictly smaller.
    cdef Py_ssize_t child, parent
    cdef HeapItem *grown
    cdef HeapItem item
    if heap.size == heap.capacity:
        grown = <HeapItem *>realloc(heap.items, 2 * heap.capacity * sizeof(HeapItem))
        if grown == NULL:
            return -1
        heap.items = grown
        heap.capacity *= 2
    item.key = key
    item.index = index
    child = heap.size
    heap.size += 1
    while child > 0:
        parent = (child - 1) >> 1
        if key < heap.items[parent].key:
            heap.items[child] = heap.items[parent]
            child = parent
        else:
            break
    heap.items[child] = item
    return 0


cdef inline HeapItem heap_pop(Heap *heap) noexcept nogil:
    # scikit-image's heappop: the last item replaces the root and sifts down; the
    # smaller child wins only if strictly smaller, the left one on ties.
    cdef HeapItem top = heap.items[0]
    cdef HeapItem moving
    cdef Py_ssize_t i = 0, smallest, left, right, size
    heap.size -= 1
    size = heap.size
    if size == 0:
        return top
    moving = heap.items[size]
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        right = left + 1
        smallest = i
        if heap.items[left].key < moving.key:
            smallest = left
        if right < size:
            if smallest == i:
                if heap.items[right].key < moving.key:
                    smallest = right
            elif heap.items[right].key < heap.items[left].key:
                smallest = right
        if smallest == i:
            break
        heap.items[i] = heap.items[smallest]
        i = smallest
    heap.items[i] = moving
    return top


# The heap of uint8 elevations packs an item in 64 bits: its key (value << AGE_BITS | age)
# above INDEX_BITS bits of pixel index, which comparisons shift away, so that markers of
# one level still tie. Half the memory of a HeapItem, for the heaps of large images.
cdef enum:
    INDEX_BITS = 26
    AGE_BITS = 30
cdef uint64_t PACKED_INDEX_MASK = (1 << INDEX_BITS) - 1
cdef uint64_t PACKED_AGE_MASK = (1 << AGE_BITS) - 1


cdef struct PackedHeap:
    uint64_t *items
    Py_ssize_t size
    Py_ssize_t capacity


cdef inline int packed_push(PackedHeap *heap, uint64_t item) noexcept nogil:
    # heap_push on packed items.
    cdef Py_ssize_t child, parent
    cdef uint64_t *grown
    cdef uint64_t key = item >> INDEX_BITS
    if heap.size == heap.capacity:
        grown = <uint64_t *>realloc(heap.items, 2 * heap.capacity * sizeof(uint64_t))
        if grown == NULL:
            return -1
        heap.items = grown
        heap.capacity *= 2
    child = heap.size
    heap.size += 1
    while child > 0:
        parent = (child - 1) >> 1
        if key < (heap.items[parent] >> INDEX_BITS):
            heap.items[child] = heap.items[parent]
            child = parent
        else:
            break
    heap.items[child] = item
    return 0


cdef inline uint64_t packed_pop(PackedHeap *heap) noexcept nogil:
    # heap_pop on packed items.
    cdef uint64_t top = heap.items[0]
    cdef uint64_t moving, moving_key, left_key, right_key
    cdef Py_ssize_t i = 0, smallest, left, right, size
    heap.size -= 1
    size = heap.size
    if size == 0:
        return top
    moving = heap.items[size]
    moving_key = moving >> INDEX_BITS
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        right = left + 1
        smallest = i
        left_key = heap.items[left] >> INDEX_BITS
        if left_key < moving_key:
            smallest = left
        if right < size:
            right_key = heap.items[right] >> INDEX_BITS
            if smallest == i:
                if right_key < moving_key:
                    smallest = right
            elif right_key < left_key:
                smallest = right
        if smallest == i:
            break
        heap.items[i] = heap.items[smallest]
        i = smallest
    heap.items[i] = moving
    return top


cdef int compare_packed(const void *a, const void *b) noexcept nogil:
    cdef uint64_t ka = (<uint64_t *>a)[0]
    cdef uint64_t kb = (<uint64_t *>b)[0]
    return (ka > kb) - (ka < kb)


cdef int compare_keys(const void *a, const void *b) noexcept nogil:
    cdef uint64_t ka = (<HeapItem *>a).key
    cdef uint64_t kb = (<HeapItem *>b).key
    return (ka > kb) - (ka < kb)


@cython.boundscheck(False)
@cython.wraparound(False)
def flood(
    avail_t[::1] free_level,
    label_t[::1] labels,
    const cnp.intp_t[::1] offsets,
    Py_ssize_t row_stride,
    Py_ssize_t n_levels,
):
    """Flood ``labels`` in place from its nonzero pixels.

    Parameters
    ----------
    free_level : 1-D uint16 (uint8 elevation) or uint32 (uint16 elevation) array
        Raveled, padded elevation where a pixel may be labelled (inside the mask), the
        dtype's maximum elsewhere, including the one-pixel padding border. Overwritten.
    labels : 1-D integer array
        Raveled, padded markers (0 = unlabelled, also outside the mask); receives the
        labels.
    offsets : 1-D intp array
        Raveled neighbour offsets in scikit-image's order (at most 8).
    row_stride : int
        Padded width: the raveled offset of the pixel below.
    n_levels : int
        Number of grey levels (256 or 65536).
    """
    cdef Py_ssize_t n_pixels = labels.shape[0]
    cdef Py_ssize_t n_offsets = offsets.shape[0]
    cdef Py_ssize_t p, k, i, level, n_markers = 0, n_frontier = 0
    cdef Py_ssize_t lowest_marker_level = n_levels, highest_marker_level = -1
    cdef Py_ssize_t offset[8]
    cdef avail_t blocked = blocked_sentinel(free_level), frontier = blocked - 1
    cdef Buckets buckets
    cdef Heap heap
    cdef PackedHeap packed

    if n_offsets > 8:
        raise ValueError("at most 8 neighbour offsets are supported")
    for k in range(n_offsets):
        offset[k] = offsets[k]

    with nogil:
        for p in range(n_pixels):
            if labels[p] != 0:
                n_markers += 1
    cdef int32_t[::1] markers = np.empty(max(n_markers, 1), dtype=np.int32)
    cdef int32_t[::1] marker_levels = np.empty(max(n_markers, 1), dtype=np.int32)

    with nogil:
        i = 0
        for p in range(n_pixels):
            if labels[p] != 0:
                level = free_level[p]
                markers[i] = <int32_t>p
                marker_levels[i] = <int32_t>level
                free_level[p] = blocked
                i += 1
                if level < lowest_marker_level:
                    lowest_marker_level = level
                if level > highest_marker_level:
                    highest_marker_level = level
        # A marker touching a free pixel is on the frontier; only those push anything.
        for i in range(n_markers):
            p = markers[i]
            for k in range(n_offsets):
                if free_level[p + offset[k]] < frontier:
                    free_level[p] = frontier
                    n_frontier += 1
                    break

    if n_frontier == 0:
        return
    buckets.failed = 0
    buckets.spare = NULL
    buckets.levels = <Bucket *>calloc(n_levels, sizeof(Bucket))
    if buckets.levels == NULL:
        raise MemoryError()
    try:
        if lowest_marker_level == highest_marker_level:
            with nogil:
                _replay_tied_markers(
                    free_level, labels, offset, n_offsets, markers, n_frontier,
                    lowest_marker_level, &buckets,
                )
        elif n_levels <= 256 and n_pixels <= PACKED_INDEX_MASK:
            packed.capacity = n_markers + 1024
            packed.size = 0
            packed.items = <uint64_t *>malloc(packed.capacity * sizeof(uint64_t))
            if packed.items == NULL:
                raise MemoryError()
            with nogil:
                if _replay_packed_heap(
                    free_level, labels, offset, n_offsets, markers, marker_levels,
                    n_frontier, &packed, &buckets,
                ):
                    buckets.failed = 1
            free(packed.items)
        else:
            heap.capacity = n_markers + 1024
            heap.size = 0
            heap.items = <HeapItem *>malloc(heap.capacity * sizeof(HeapItem))
            if heap.items == NULL:
                raise MemoryError()
            with nogil:
                if _replay_heap(
                    free_level, labels, offset, n_offsets, markers, marker_levels,
                    n_frontier, &heap, &buckets,
                ):
                    buckets.failed = 1
            free(heap.items)
        if not buckets.failed:
            with nogil:
                _flood_buckets(
                    free_level, labels, offset, n_offsets, row_stride, n_levels, &buckets
                )
    finally:
        for level in range(n_levels):
            release_chunks(buckets.levels[level].head)
        release_chunks(buckets.spare)
        free(buckets.levels)
    if buckets.failed:
        raise MemoryError()


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _replay_tied_markers(
    avail_t[::1] free_level,
    label_t[::1] labels,
    Py_ssize_t *offset,
    Py_ssize_t n_offsets,
    int32_t[::1] slots,
    Py_ssize_t n_frontier,
    Py_ssize_t marker_level,
    Buckets *buckets,
) noexcept nogil:
    # ``slots`` holds the markers in raster order: equal keys never sift up.
    cdef Py_ssize_t n_markers = slots.shape[0]
    cdef Py_ssize_t heap_size = n_markers, i, child, k, q, level
    cdef int32_t marker, last
    cdef avail_t blocked = blocked_sentinel(free_level), frontier = blocked - 1
    cdef label_t label
    while n_frontier > 0:
        marker = slots[0]
        heap_size -= 1
        if heap_size > 0:
            last = slots[heap_size] if heap_size < n_markers else -1
            if last >= 0:
                slots[0] = last
            else:
                # A finite element sinks; each marker on its path moves up a slot.
                i = 0
                while True:
                    child = 2 * i + 1
                    if child < heap_size and child < n_markers and slots[child] >= 0:
                        slots[i] = slots[child]
                        i = child
                        continue
                    child += 1
                    if child < heap_size and child < n_markers and slots[child] >= 0:
                        slots[i] = slots[child]
                        i = child
                        continue
                    break
                slots[i] = -1
        if free_level[marker] != frontier:
            continue
        n_frontier -= 1
        label = labels[marker]
        for k in range(n_offsets):
            q = marker + offset[k]
            level = free_level[q]
            if level < frontier:
                free_level[q] = blocked
                labels[q] = label
                if level < marker_level:
                    level = marker_level
                bucket_push(buckets, level, q)
                # The pushed finite element takes the last heap slot.
                if heap_size < n_markers:
                    slots[heap_size] = -1
                heap_size += 1


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t _enclose(
    avail_t[::1] free_level, Py_ssize_t q, Py_ssize_t *offset, Py_ssize_t n_offsets,
) noexcept nogil:
    # ``q`` was just labelled: a frontier marker beside it whose last free neighbour it
    # was can push nothing any more, so it leaves the frontier (it is skipped when it
    # pops, as it would have done nothing). Returns how many left.
    cdef Py_ssize_t k, j, r, enclosed = 0
    cdef avail_t blocked = blocked_sentinel(free_level), frontier = blocked - 1
    for k in range(n_offsets):
        r = q + offset[k]
        if free_level[r] != frontier:
            continue
        for j in range(n_offsets):
            if free_level[r + offset[j]] < frontier:
                break
        else:
            free_level[r] = blocked
            enclosed += 1
    return enclosed


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _replay_heap(
    avail_t[::1] free_level,
    label_t[::1] labels,
    Py_ssize_t *offset,
    Py_ssize_t n_offsets,
    int32_t[::1] markers,
    int32_t[::1] marker_levels,
    Py_ssize_t n_frontier,
    Heap *heap,
    Buckets *buckets,
) noexcept nogil:
    # Returns -1 when the heap cannot grow.
    cdef Py_ssize_t i, k, p, q
    cdef uint64_t value, level, age = 1
    cdef avail_t blocked = blocked_sentinel(free_level), frontier = blocked - 1
    cdef HeapItem item
    cdef label_t label
    for i in range(markers.shape[0]):
        if heap_push(heap, (<uint64_t>marker_levels[i]) << 32, markers[i]):
            return -1
    while n_frontier > 0:
        item = heap_pop(heap)
        p = item.index
        if (item.key & AGE_MASK) == 0:
            if free_level[p] != frontier:
                continue
            n_frontier -= 1
            free_level[p] = blocked  # off the frontier: _enclose must not count it again
        value = item.key >> 32
        label = labels[p]
        for k in range(n_offsets):
            q = p + offset[k]
            level = free_level[q]
            if level < frontier:
                free_level[q] = blocked
                labels[q] = label
                age += 1
                if level < value:
                    level = value
                if heap_push(heap, (level << 32) | age, q):
                    return -1
                n_frontier -= _enclose(free_level, q, offset, n_offsets)
    # The rest pops in key order; markers left can push nothing.
    qsort(heap.items, heap.size, sizeof(HeapItem), compare_keys)
    for i in range(heap.size):
        if heap.items[i].key & AGE_MASK:
            bucket_push(buckets, heap.items[i].key >> 32, heap.items[i].index)
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _replay_packed_heap(
    avail_t[::1] free_level,
    label_t[::1] labels,
    Py_ssize_t *offset,
    Py_ssize_t n_offsets,
    int32_t[::1] markers,
    int32_t[::1] marker_levels,
    Py_ssize_t n_frontier,
    PackedHeap *heap,
    Buckets *buckets,
) noexcept nogil:
    # _replay_heap on packed items (uint8 elevations, fewer than 2^INDEX_BITS pixels).
    cdef Py_ssize_t i, k, p, q
    cdef uint64_t item, key, value, level, age = 1
    cdef avail_t blocked = blocked_sentinel(free_level), frontier = blocked - 1
    cdef label_t label
    for i in range(markers.shape[0]):
        item = (((<uint64_t>marker_levels[i]) << AGE_BITS) << INDEX_BITS) | <uint64_t>markers[i]
        if packed_push(heap, item):
            return -1
    while n_frontier > 0:
        item = packed_pop(heap)
        p = <Py_ssize_t>(item & PACKED_INDEX_MASK)
        key = item >> INDEX_BITS
        if (key & PACKED_AGE_MASK) == 0:
            if free_level[p] != frontier:
                continue
            n_frontier -= 1
            free_level[p] = blocked  # off the frontier: _enclose must not count it again
        value = key >> AGE_BITS
        label = labels[p]
        for k in range(n_offsets):
            q = p + offset[k]
            level = free_level[q]
            if level < frontier:
                free_level[q] = blocked
                labels[q] = label
                age += 1
                if level < value:
                    level = value
                if packed_push(heap, (((level << AGE_BITS) | age) << INDEX_BITS) | <uint64_t>q):
                    return -1
                n_frontier -= _enclose(free_level, q, offset, n_offsets)
    # The rest pops in key order (distinct keys); markers left can push nothing.
    qsort(heap.items, heap.size, sizeof(uint64_t), compare_packed)
    for i in range(heap.size):
        key = heap.items[i] >> INDEX_BITS
        if key & PACKED_AGE_MASK:
            bucket_push(buckets, key >> AGE_BITS, <Py_ssize_t>(heap.items[i] & PACKED_INDEX_MASK))
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _flood_buckets(
    avail_t[::1] free_level,
    label_t[::1] labels,
    Py_ssize_t *offset,
    Py_ssize_t n_offsets,
    Py_ssize_t row_stride,
    Py_ssize_t n_levels,
    Buckets *buckets,
) noexcept nogil:
    cdef Py_ssize_t level, k, p, q, target, position, end, ahead
    cdef avail_t blocked = blocked_sentinel(free_level), frontier = blocked - 1
    cdef avail_t *free_at = &free_level[0]
    cdef label_t *label_at = &labels[0]
    cdef Bucket *bucket
    cdef Chunk *chunk
    cdef label_t label
    for level in range(n_levels):
        bucket = &buckets.levels[level]
        chunk = bucket.head
        position = 0
        while chunk != NULL:
            # Pushes to this level append to its tail while we read it.
            end = bucket.tail_size if chunk == bucket.tail else CHUNK_SIZE
            if position == end:
                if chunk == bucket.tail:
                    break
                bucket.head = chunk.next
                chunk.next = buckets.spare
                buckets.spare = chunk
                chunk = bucket.head
                position = 0
                continue
            if position + PREFETCH_DISTANCE < end:
                ahead = chunk.pixels[position + PREFETCH_DISTANCE]
                prefetch(free_at + ahead - row_stride)
                prefetch(free_at + ahead)
                prefetch(free_at + ahead + row_stride)
                prefetch(label_at + ahead)
            p = chunk.pixels[position]
            position += 1
            label = label_at[p]
            for k in range(n_offsets):
                q = p + offset[k]
                target = free_at[q]
                if target < frontier:
                    free_at[q] = blocked
                    label_at[q] = label
                    if target < level:
                        target = level
                    bucket_push(buckets, target, q)
            if buckets.failed:
                return
        # The level is done: its last chunk goes back to the pool.
        if bucket.head != NULL:
            bucket.head.next = buckets.spare
            buckets.spare = bucket.head
        bucket.head = bucket.tail = NULL
