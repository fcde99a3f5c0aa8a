"""Time cellpipe's watershed against scikit-image's on a cell-like 4096² edge map.

Usage::

    .venv/bin/python benchmarks/bench_watershed.py [--size 4096] [--cells 6000] [--repeat 3]

The edge map is a Voronoi tessellation with blurred, noisy walls (about 50 px cells).
Markers come from :func:`cellpipe.segment.cell_markers` and the elevation is the uint8
map that :func:`cellpipe.segment.segment_edges` floods (markers at level 0). A second
line times the general case, where marker pixels keep their own elevation. Each line
prints the best wall-clock and CPU times of ``--repeat`` runs of each (both floods are
single-threaded; on a shared machine the CPU time is the steadier measure) and the
speed-ups; the labels are checked to be identical.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import skimage.segmentation
from scipy import ndimage as ndi

from cellpipe.segment import cell_markers, quantise_edges, watershed


def voronoi_edge_map(size: int, n_cells: int, seed: int = 0) -> np.ndarray:
    """Return a float32 membrane-style edge map: Voronoi walls, blurred, with noise."""
    rng = np.random.default_rng(seed)
    sites = np.ones((size, size), dtype=bool)
    sites.flat[rng.choice(size * size, n_cells, replace=False)] = False
    _, (rows, cols) = ndi.distance_transform_edt(sites, return_indices=True)
    owner = rows * size + cols
    walls = np.zeros((size, size), dtype=bool)
    walls[:, 1:] |= owner[:, 1:] != owner[:, :-1]
    walls[1:, :] |= owner[1:, :] != owner[:-1, :]
    edges = ndi.gaussian_filter(walls.astype(np.float32), 1.0) * 2.5
    edges += rng.normal(0.0, 0.05, edges.shape).astype(np.float32)
    return np.clip(edges, 0.0, 1.0)


def best_times(function, repeat: int) -> tuple[float, float, np.ndarray]:
    """Return the best wall and CPU seconds of ``repeat`` calls, and the last result."""
    best_wall = best_cpu = np.inf
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu, result


def compare(name: str, elevation: np.ndarray, markers: np.ndarray, repeat: int) -> None:
    ours_wall, ours_cpu, ours = best_times(lambda: watershed(elevation, markers), repeat)
    theirs_wall, theirs_cpu, theirs = best_times(
        lambda: skimage.segmentation.watershed(elevation, markers), repeat
    )
    identical = np.array_equal(ours, theirs) and ours.dtype == theirs.dtype
    print(
        f"{name}:\n"
        f"  wall  cellpipe {ours_wall:7.3f} s  scikit-image {theirs_wall:7.3f} s  "
        f"speed-up {theirs_wall / ours_wall:5.1f}x\n"
        f"  CPU   cellpipe {ours_cpu:7.3f} s  scikit-image {theirs_cpu:7.3f} s  "
        f"speed-up {theirs_cpu / ours_cpu:5.1f}x\n"
        f"  identical labels: {identical}"
    )
    if not identical:
        raise SystemExit("labels differ from scikit-image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--cells", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    edges = voronoi_edge_map(args.size, args.cells)
    markers = cell_markers(edges)
    elevation = quantise_edges(edges, 0.5)
    print(
        f"{args.size}x{args.size} uint8 elevation, {markers.max()} markers covering "
        f"{np.count_nonzero(markers) / markers.size:.1%} of the pixels"
    )
    product = elevation.copy()
    product[markers != 0] = 0
    compare("segment_edges' flood (markers at level 0)", product, markers, args.repeat)
    compare("markers keep their levels", elevation, markers, args.repeat)


if __name__ == "__main__":
    main()
