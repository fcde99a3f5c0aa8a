"""Throughput of ``cellpipe run`` and where the time goes per image.

Writes N synthetic 512 x 512 foam/tissue images into a dated batch folder, runs the
nightly batch on them as a user would (``cellpipe run`` in a subprocess, a fresh SQLite
database), and prints:

- wall time of the command and images per second, model loading included,
- steady-state throughput, from the times the segmentations were stored, and its
  ratio to the pure predict time per image (the U-Net's share, the floor that reading
  ahead and writing less approach),
- mean, median and share of each stage per image, from the timings stored with every
  segmentation (read, pixel_size, contrast, predict, segment, measure, quality, write),
  and the share of the µm figures (pixel_size + quality: Feret diameters, chords, walls).

Usage::

    python benchmarks/bench_batch.py                       # 100 images, the shipped model
    python benchmarks/bench_batch.py --images 20 --model M.keras --workers 2
    python benchmarks/bench_batch.py --images 20 --overlay       # also render overlay PNGs (the old default)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from cellpipe.synthetic import TRUTH_FOLDER, write_samples

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2024, 6, 1)
STAGES = ("read", "pixel_size", "contrast", "predict", "segment", "measure", "quality", "write")
#: The stages that physical units and quality figures add (issue 15: under 5 % of the image's time).
UNIT_STAGES = ("pixel_size", "quality")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", help="U-Net .keras file (default: the shipped model)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--overlay", action="store_true", help="Also write an overlay PNG per image.")
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        work = args.keep or Path(scratch)
        return bench(work, args)


def bench(work: Path, args) -> int:
    batch = work / "input" / DAY.isoformat()
    started = time.perf_counter()
    write_samples(batch, args.images, size=(args.size, args.size), seed=1000, truth_dir=work / TRUTH_FOLDER)
    print(f"{args.images} synthetic {args.size}x{args.size} images written in {time.perf_counter() - started:.1f} s")

    db_url = f"sqlite:///{work / 'bench.sqlite'}"
    command = [sys.executable, "-m", "cellpipe.cli", "run", "--input", str(work / "input"), "--date",
               DAY.isoformat(), "--db", db_url, "--output", str(work / "results"), "--workers", str(args.workers),
               "--summary-json", str(work / "summary.json")]
    if args.model:
        command += ["--model", args.model]
    if args.overlay:
        command += ["--overlay"]
    environment = {**os.environ, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    print("$ " + " ".join(command))
    started = time.perf_counter()
    completed = subprocess.run(command, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        print(completed.stdout[-3000:], completed.stderr[-3000:], sep="\n")
        print(f"cellpipe run failed with exit code {completed.returncode}")
        return 1
    summary = json.loads((work / "summary.json").read_text())
    report(db_url, summary, wall, args)
    return 0


def report(db_url: str, summary: dict, wall: float, args) -> None:
    engine = create_engine(db_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT timings, stored_at, n_cells FROM segmentations")).all()
    engine.dispose()
    timings = [json.loads(row[0]) if isinstance(row[0], str) else row[0] for row in rows]
    stored_at = sorted(dt.datetime.fromisoformat(str(row[1])) for row in rows)
    n = len(rows)
    print(f"\nstored {n} images, {sum(row[2] for row in rows)} cells; workers: {args.workers}; "
          f"model loads: {summary['model_loads']}")
    print(f"wall time of `cellpipe run`: {wall:.1f} s → {n / wall:.2f} images/s (start-up and model load included)")
    if n > 1:
        span = (stored_at[-1] - stored_at[0]).total_seconds()
        steady = span / (n - 1)
        predict = statistics.mean(t.get("predict", 0.0) for t in timings)
        print(f"steady state (first to last stored): {(n - 1) / span:.2f} images/s, {steady * 1000:.0f} ms/image "
              f"= {steady / predict:.2f}x the mean predict time ({predict * 1000:.0f} ms)")
    per_image = [sum(t.get(stage, 0.0) for stage in STAGES) for t in timings]
    total = sum(per_image)
    print(f"\n{'stage':<10}{'mean ms':>10}{'median ms':>11}{'share':>8}")
    for stage in STAGES:
        values = [t.get(stage, 0.0) for t in timings]
        print(f"{stage:<10}{statistics.mean(values) * 1000:>10.1f}{statistics.median(values) * 1000:>11.1f}"
              f"{sum(values) / total:>8.1%}")
    print(f"{'total':<10}{statistics.mean(per_image) * 1000:>10.1f}{statistics.median(per_image) * 1000:>11.1f}")
    print("(store, the database transaction, is not in the stored timings; it is the rest of the steady-state time)")
    units = [sum(t.get(stage, 0.0) for stage in UNIT_STAGES) for t in timings]
    print(f"µm figures (pixel size read + Feret + quality): {statistics.mean(units) * 1000:.1f} ms/image, "
          f"{100 * sum(units) / sum(per_image):.2f} % of the per-image time")


if __name__ == "__main__":
    sys.exit(main())
