"""Post-processing speed: scikit-image's path against cellpipe's, stage by stage.

For each size (default 512², 2048², 4096²; ~7,000 cells at 4096²) it makes one
synthetic edge map with :mod:`cellpipe.synthetic` and times, side by side, in one run:

- markers:     scikit-image: distance transform + ``peak_local_max`` + ``ndi.label``
               cellpipe:     :func:`cellpipe.segment.cell_markers` (distance transform +
                             persistent maxima in Cython)
- watershed:   ``skimage.segmentation.watershed`` and :func:`cellpipe.segment.watershed`
               on the SAME uint8 elevation, markers and mask (labels checked identical)
- merge:       mean-boundary agglomeration of the whole-map flood at
               ``merge_threshold`` (the default's, else 0.6): ``skimage.graph.rag_boundary``
               + ``merge_hierarchical`` (its documented recipe) and
               :func:`cellpipe.agglomerate.merge_weak_boundaries` (partitions checked equal)
- statistics:  ``skimage.measure.regionprops_table`` and
               :func:`cellpipe.measure.regionprops_table` on the SAME labels and intensity
               image (values checked equal)

and prints, per stage, the best-of-N time of each, the ratio, ms per megapixel, and for
the statistics pass the memory-read floor: bytes it must read (labels + intensity image)
divided by the read bandwidth measured on the same buffers with a numpy reduction.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_postprocess.py [--sizes 512 2048]``.
Never run by the tests.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi
from skimage import graph as skimage_graph
from skimage.feature import peak_local_max
from skimage.measure import regionprops_table as skimage_regionprops_table
from skimage.segmentation import watershed as skimage_watershed

from cellpipe.agglomerate import merge_weak_boundaries
from cellpipe.measure import regionprops_table
from cellpipe.segment import SegmentParams, cell_markers, quantise_edges, watershed
from cellpipe.synthetic import synthetic_cells

PROPERTIES = (
    "label", "area", "centroid", "bbox", "axis_major_length", "axis_minor_length",
    "eccentricity", "orientation", "equivalent_diameter_area", "perimeter",
    "intensity_mean", "intensity_min", "intensity_max",
)


def best_time(function, repeats: int) -> tuple[float, object]:
    """Return the best wall time of ``repeats`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def skimage_markers(interior: np.ndarray) -> np.ndarray:
    """The textbook scikit-image marker recipe: EDT peaks, one label per peak."""
    distance = ndi.distance_transform_edt(interior)
    components, _ = ndi.label(interior)
    peaks = peak_local_max(distance, footprint=np.ones((3, 3)), labels=components, exclude_border=False)
    markers = np.zeros(interior.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return markers


def skimage_merge(labels: np.ndarray, edges: np.ndarray, threshold: float) -> np.ndarray:
    """Mean-boundary hierarchical merging, scikit-image's recipe (its RAG merging example)."""

    def weight_boundary(rag, src, dst, neighbour):
        default = {"weight": 0.0, "count": 0}
        src_edge, dst_edge = rag[src].get(neighbour, default), rag[dst].get(neighbour, default)
        count = src_edge["count"] + dst_edge["count"]
        weight = (src_edge["count"] * src_edge["weight"] + dst_edge["count"] * dst_edge["weight"]) / count
        return {"count": count, "weight": weight}

    rag = skimage_graph.rag_boundary(labels, edges)
    return skimage_graph.merge_hierarchical(labels, rag, threshold, rag_copy=False, in_place_merge=True,
                                            merge_func=lambda rag, src, dst: None, weight_func=weight_boundary)


def same_partition(first: np.ndarray, second: np.ndarray) -> bool:
    """Return whether two label images group the pixels the same way, whatever the label values."""
    pairs = np.unique(np.stack([first.ravel(), second.ravel()]), axis=1).shape[1]
    return pairs == np.unique(first).size == np.unique(second).size


def read_bandwidth(*buffers: np.ndarray, repeats: int) -> float:
    """Return bytes/s of reading ``buffers`` once with numpy's vectorised sum."""
    total = sum(b.nbytes for b in buffers)
    seconds, _ = best_time(lambda: [np.add.reduce(b.reshape(-1).view(np.uint64)) for b in buffers], repeats)
    return total / seconds


def bench_size(side: int, repeats: int) -> list[tuple[str, float, float]]:
    sample = synthetic_cells((side, side), kind="tissue", mean_cell_diameter=55.0, seed=side)
    params = SegmentParams()
    edges = sample.edges
    interior = edges < params.threshold
    megapixels = side * side / 1e6

    t_sk_markers, _ = best_time(lambda: skimage_markers(interior), repeats)
    t_markers, markers = best_time(lambda: cell_markers(edges, params.threshold, params.marker_h), repeats)

    elevation = quantise_edges(edges, params.threshold)
    elevation[markers != 0] = 0  # as segment_edges floods markers from level 0
    t_sk_ws, sk_labels = best_time(lambda: skimage_watershed(elevation, markers, mask=interior), repeats)
    t_ws, labels = best_time(lambda: watershed(elevation, markers, mask=interior), repeats)
    if not np.array_equal(sk_labels, labels):
        raise SystemExit(f"{side}²: watershed labels differ from scikit-image's")

    merge_threshold = params.merge_threshold or 0.6
    flooded = watershed(elevation, markers)
    t_sk_merge, sk_merged = best_time(lambda: skimage_merge(flooded, edges, merge_threshold), 1)
    t_merge, merged = best_time(lambda: merge_weak_boundaries(flooded, edges, merge_threshold), repeats)
    if not same_partition(sk_merged, merged):
        raise SystemExit(f"{side}²: merged regions differ from scikit-image's")

    intensity = sample.image
    t_sk_stats, sk_table = best_time(
        lambda: skimage_regionprops_table(labels, intensity, properties=PROPERTIES), max(1, repeats // 2)
    )
    t_stats, table = best_time(lambda: regionprops_table(labels, intensity), repeats)
    for name, values in sk_table.items():
        np.testing.assert_allclose(table[name], values, rtol=1e-9, atol=1e-9, err_msg=name)
    bandwidth = read_bandwidth(labels, intensity, repeats=repeats)
    floor = (labels.nbytes + intensity.nbytes) / bandwidth

    n_cells = len(table["label"])
    print(f"\n{side}×{side}  ({megapixels:.1f} MP, {n_cells} cells, labels {labels.dtype}, "
          f"intensity {intensity.dtype})")
    print(f"  {'stage':<11} {'scikit-image':>13} {'cellpipe':>10} {'ratio':>7} {'cellpipe ms/MP':>15}")
    rows = [("markers", t_sk_markers, t_markers), ("watershed", t_sk_ws, t_ws), ("merge", t_sk_merge, t_merge),
            ("statistics", t_sk_stats, t_stats)]
    for stage, theirs, ours in rows:
        print(f"  {stage:<11} {theirs * 1e3:>10.1f} ms {ours * 1e3:>7.1f} ms {theirs / ours:>6.1f}× "
              f"{ours * 1e3 / megapixels:>15.2f}")
    total_theirs = sum(r[1] for r in rows)
    total_ours = sum(r[2] for r in rows)
    print(f"  {'total':<11} {total_theirs * 1e3:>10.1f} ms {total_ours * 1e3:>7.1f} ms "
          f"{total_theirs / total_ours:>6.1f}×")
    print(f"  statistics pass vs memory-read floor: {t_stats * 1e3:.1f} ms vs {floor * 1e3:.1f} ms "
          f"({(labels.nbytes + intensity.nbytes) / 1e6:.0f} MB at {bandwidth / 1e9:.1f} GB/s) = "
          f"{t_stats / floor:.2f}× the floor")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for side in args.sizes:
        bench_size(side, args.repeats)


if __name__ == "__main__":
    main()
