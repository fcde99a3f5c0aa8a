"""Seconds per image from file to per-cell table, with the shipped defaults, and what the scale estimate costs.

For each image (default: ISBI 2012 slices 20-24, 512 x 512) it times, after one warm-up
call, ``read_image`` + :class:`cellpipe.pipeline.CellSegmenter` (contrast, prediction,
segmentation, per-cell statistics) in one process, interleaved:

- the default: the cell diameter estimated per image (one native-scale pass, more when
  the cells are off the model's size);
- the same with ``cell_diameter`` given (the pass the estimate found, without the search),

and prints the median over ``--repeats`` rounds of each, their ratio, and the network
passes the estimate spent.

    .venv/bin/python benchmarks/bench_file_to_cells.py [--model M.keras] [--repeats 5] [IMAGE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012" / "train" / "image"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    images = args.images or [ISBI / f"{i}.png" for i in range(20, 25)]

    from cellpipe.io import read_image
    from cellpipe.pipeline import CellSegmenter

    segmenter = CellSegmenter(args.model)
    first = segmenter(read_image(images[0]))  # warm-up: traces the network once per tile size
    given = {}
    for path in images:
        scale = segmenter(read_image(path)).scale
        given[path] = segmenter.with_params(dataclasses.replace(segmenter.params, cell_diameter=scale.cell_diameter
                                                                 or segmenter.card.cell_diameter or 30.0))
    timings = {"estimated": [], "given": []}
    passes = []
    for _ in range(args.repeats):
        for path in images:
            started = time.perf_counter()
            result = segmenter(read_image(path))
            timings["estimated"].append(time.perf_counter() - started)
            passes.append(result.scale.passes)
            started = time.perf_counter()
            given[path](read_image(path))
            timings["given"].append(time.perf_counter() - started)
    estimated, fixed = statistics.median(timings["estimated"]), statistics.median(timings["given"])
    print(f"model {segmenter.model_path}; {len(images)} images like {images[0].name} {first.labels.shape}; "
          f"{os.cpu_count()} CPUs")
    print(f"file -> cells, diameter estimated: median {estimated:.3f} s (min {min(timings['estimated']):.3f}, "
          f"max {max(timings['estimated']):.3f}); {statistics.mean(passes):.2f} network passes per image")
    print(f"file -> cells, diameter given:     median {fixed:.3f} s")
    print(f"the estimate costs {estimated / fixed:.2f}x the given-diameter time")


if __name__ == "__main__":
    main()
