"""Speed of cellpipe.measure.regionprops_table against scikit-image and the memory-read floor.

Run from the repository root::

    .venv/bin/python benchmarks/bench_measure.py [--size 4096] [--cells 7000] [--repeat 9]

The label image is a Voronoi tessellation of random seeds (int32, labels 1..n, no
background), made with a Euclidean distance transform. The read floor is the time numpy
needs to go once over the label image's bytes, measured two ways: ``labels.sum()`` and
``np.copyto(buffer, labels)`` (the copy also writes the bytes). Every time is the best of
``--repeat`` runs, in wall-clock and in CPU time of this process (CPU time is the steadier
number on a shared machine). skimage runs once.
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


def best_times(function, repeat: int) -> tuple[float, float]:
    """Return the fastest wall-clock and CPU times of ``repeat`` calls, in seconds."""
    wall, cpu = [], []
    for _ in range(repeat):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        function()
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    return min(wall), min(cpu)


def report(name: str, times: tuple[float, float], floors: dict[str, tuple[float, float]]) -> None:
    wall, cpu = times
    ratios = ", ".join(
        f"{cpu / floor_cpu:.2f} x {floor}" for floor, (_, floor_cpu) in floors.items()
    )
    print(f"{name:34s} wall {wall * 1e3:7.1f} ms  cpu {cpu * 1e3:7.1f} ms  (cpu: {ratios})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--cells", type=int, default=7000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--skip-skimage", action="store_true", help="do not time skimage (slow)")
    args = parser.parse_args()

    labels = voronoi_labels(args.size, args.cells)
    intensity = np.random.default_rng(1).integers(0, 65535, labels.shape, dtype=np.uint16)
    print(f"labels: {labels.shape} {labels.dtype}, {len(np.unique(labels))} cells, "
          f"{labels.nbytes / 1e6:.0f} MB")

    buffer = np.empty_like(labels)
    floors = {
        "labels.sum()": best_times(labels.sum, args.repeat),
        "np.copyto": best_times(lambda: np.copyto(buffer, labels), args.repeat),
    }
    for name, (wall, cpu) in floors.items():
        print(f"read floor {name:23s} wall {wall * 1e3:7.1f} ms  cpu {cpu * 1e3:7.1f} ms "
              f"({labels.nbytes / 1e9 / cpu:.1f} GB/s)")

    ours = best_times(lambda: regionprops_table(labels), args.repeat)
    report("cellpipe regionprops_table", ours, floors)
    report("cellpipe + uint16 intensity", best_times(
        lambda: regionprops_table(labels, intensity), args.repeat), floors)

    if not args.skip_skimage:
        from skimage.measure import regionprops_table as skimage_regionprops_table

        reference = best_times(
            lambda: skimage_regionprops_table(labels, properties=SKIMAGE_PROPERTIES), 1
        )
        report("skimage regionprops_table (1 run)", reference, floors)
        print(f"cellpipe is {reference[0] / ours[0]:.0f} x faster than skimage (wall), "
              f"{reference[1] / ours[1]:.0f} x (cpu)")


if __name__ == "__main__":
    main()
