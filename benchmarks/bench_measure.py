"""Speed of cellpipe.measure.regionprops_table against scikit-image and the memory-read floor.

Run from the repository root::

    .venv/bin/python benchmarks/bench_measure.py [--size 4096] [--cells 7000] [--repeat 7]

The label image is a Voronoi tessellation of random seeds (int32, no background), made
with a Euclidean distance transform. The read floor is the time numpy needs to read the
label image once: the faster of ``labels.sum()`` and ``np.copyto(buffer, labels)``
(the copy also writes the bytes, so it is an upper bound of a pure read). Timings are the
best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi

from cellpipe.measure import regionprops_table

SKIMAGE_PROPERTIES = [
    "label", "area", "centroid", "bbox", "axis_major_length", "axis_minor_length",
    "eccentricity", "orientation", "equivalent_diameter_area", "perimeter",
]


def voronoi_labels(size: int, n_cells: int, seed: int = 0) -> np.ndarray:
    """Return a (size, size) int32 label image of ``n_cells`` Voronoi cells labelled 1..n."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), dtype=np.int32)
    rows, cols = rng.integers(0, size, (2, n_cells))
    seeds[rows, cols] = np.arange(1, n_cells + 1, dtype=np.int32)
    _, (nearest_row, nearest_col) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[nearest_row, nearest_col]


def best_time(function, repeat: int) -> float:
    """Return the fastest of ``repeat`` calls of ``function``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--cells", type=int, default=7000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-skimage", action="store_true", help="do not time skimage (slow)")
    args = parser.parse_args()

    labels = voronoi_labels(args.size, args.cells)
    intensity = np.random.default_rng(1).integers(0, 65535, labels.shape, dtype=np.uint16)
    n_cells = len(np.unique(labels))
    megabytes = labels.nbytes / 1e6
    print(f"labels: {labels.shape} {labels.dtype}, {n_cells} cells, {megabytes:.0f} MB")

    buffer = np.empty_like(labels)
    sum_time = best_time(labels.sum, args.repeat)
    copy_time = best_time(lambda: np.copyto(buffer, labels), args.repeat)
    floor = min(sum_time, copy_time)
    print(f"read floor: labels.sum() {sum_time * 1e3:.1f} ms ({megabytes / 1e3 / sum_time:.1f} GB/s), "
          f"np.copyto {copy_time * 1e3:.1f} ms; floor = {floor * 1e3:.1f} ms")

    ours = best_time(lambda: regionprops_table(labels), args.repeat)
    print(f"cellpipe regionprops_table:             {ours * 1e3:8.1f} ms = {ours / floor:.2f} x read floor")
    ours_intensity = best_time(lambda: regionprops_table(labels, intensity), args.repeat)
    print(f"cellpipe regionprops_table + intensity: {ours_intensity * 1e3:8.1f} ms = "
          f"{ours_intensity / floor:.2f} x read floor (labels only)")

    if not args.skip_skimage:
        from skimage.measure import regionprops_table as skimage_regionprops_table

        start = time.perf_counter()
        skimage_regionprops_table(labels, properties=SKIMAGE_PROPERTIES)
        reference = time.perf_counter() - start
        print(f"skimage regionprops_table (1 run):      {reference * 1e3:8.1f} ms = "
              f"{reference / ours:.0f} x slower than cellpipe")


if __name__ == "__main__":
    main()
