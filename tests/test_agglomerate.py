"""Mean-boundary agglomeration (cellpipe.agglomerate) on toy cases with hand-computed answers."""

import numpy as np
import pytest

from cellpipe.agglomerate import boundary_statistics, merge_weak_boundaries

# Region 1 (top left pixel) and region 2 (the rest of the left column) beside region 3
# (the right column). Boundaries: 1|2 strength 0 (1 pixel pair), 1|3 strength 0.1 (1),
# 2|3 strength 0.6 (3 pairs).
THREE_REGIONS = np.array([[1, 3], [2, 3], [2, 3], [2, 3]])
THREE_EDGES = np.array([[0.0, 0.1], [0.0, 0.6], [0.0, 0.6], [0.0, 0.6]])


def test_boundaries_are_counted_per_pixel_pair_with_the_stronger_pixel():
    pairs, sums, lengths = boundary_statistics(THREE_REGIONS, THREE_EDGES)
    assert pairs.tolist() == [[1, 2], [1, 3], [2, 3]]
    assert sums == pytest.approx([0.0, 0.1, 1.8])
    assert lengths.tolist() == [1, 1, 3]


def test_label_0_is_no_region_and_has_no_boundary():
    labels = np.array([[1, 0, 2], [1, 0, 2]])
    pairs, _, _ = boundary_statistics(labels, np.zeros(labels.shape))
    assert pairs.shape == (0, 2)
    assert np.array_equal(merge_weak_boundaries(labels, np.zeros(labels.shape), 1.0), labels)


def test_weakest_first_and_a_merged_boundary_is_the_length_weighted_mean_of_its_parts():
    # 1 and 2 merge first (0); their boundary with 3 is then (0.1 + 3 * 0.6) / 4 = 0.475.
    kept = merge_weak_boundaries(THREE_REGIONS, THREE_EDGES, 0.45)
    assert kept.tolist() == [[1, 3], [1, 3], [1, 3], [1, 3]]
    merged = merge_weak_boundaries(THREE_REGIONS, THREE_EDGES, 0.48)
    assert (merged == 1).all()


def test_a_threshold_of_0_merges_nothing():
    assert np.array_equal(merge_weak_boundaries(THREE_REGIONS, THREE_EDGES, 0.0), THREE_REGIONS)


def test_a_chain_merges_into_its_smallest_label_keeping_dtype_and_zeros():
    labels = np.array([[4, 4, 2, 2, 0, 7, 7, 9]], dtype=np.uint16)
    merged = merge_weak_boundaries(labels, np.zeros(labels.shape), 0.5)
    assert merged.dtype == np.uint16
    assert merged.tolist() == [[2, 2, 2, 2, 0, 7, 7, 7]]


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="one shape"):
        boundary_statistics(np.ones((3, 3), int), np.zeros((3, 4)))
