"""Time synthetic sample generation, image reading and the contrast image on large images.

Usage: python benchmarks/bench_synthetic.py [--size 4096] [--repeat 2]

Prints the best wall-clock and CPU time of each step. Never run by the tests.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import tifffile

from cellpipe.io import read_image
from cellpipe.preprocess import contrast_gray, guess_invert
from cellpipe.synthetic import synthetic_cells


def best_time(step, repeat: int) -> tuple[float, float, object]:
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="side of the synthetic images")
    parser.add_argument("--read-size", type=int, default=8192, help="side of the uint16 TIFF read back")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    def report(name, wall, cpu):
        print(f"{name:<44} wall {wall:6.2f} s   cpu {cpu:6.2f} s")

    for kind in ("foam", "tissue"):
        wall, cpu, sample = best_time(lambda: synthetic_cells((args.size, args.size), kind=kind), args.repeat)
        report(f"synthetic_cells {args.size}^2 {kind} ({sample.n_cells} cells)", wall, cpu)

    side = args.read_size
    image = np.tile(sample.image.astype(np.uint16) * 257, (side // args.size + 1,) * 2)[:side, :side]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    data = buffer.getvalue()
    wall, cpu, loaded = best_time(lambda: read_image(data, name="bench.tif"), args.repeat)
    report(f"read_image {side}^2 uint16 TIFF (bytes)", wall, cpu)
    wall, cpu, _ = best_time(lambda: contrast_gray(loaded), args.repeat)
    report(f"contrast_gray {side}^2 uint16", wall, cpu)
    wall, cpu, _ = best_time(lambda: contrast_gray(loaded.astype(np.float32)), args.repeat)
    report(f"contrast_gray {side}^2 float32 (incl. cast)", wall, cpu)
    wall, cpu, _ = best_time(lambda: guess_invert(loaded), args.repeat)
    report(f"guess_invert {side}^2 (central 1024^2 crop)", wall, cpu)


if __name__ == "__main__":
    main()
