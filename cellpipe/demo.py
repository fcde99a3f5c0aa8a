"""``make demo``: sample images → the nightly batch → cells in SQLite → an example query.

Run it as ``python -m cellpipe.demo --out DIR``. It

1. writes synthetic foam and tissue images (512 x 512) and one corrupt PNG into
   ``DIR/input/<today>/`` (their ground truth into ``DIR/truth/<today>/``),
2. runs ``cellpipe run --input DIR/input --date <today>`` with the shipped model into an
   embedded SQLite database, ``DIR/cellpipe.sqlite`` by default (``--db URL`` for
   another one): the demo's synthetic images never mix with a real database, and
   ``make clean`` removes everything,
3. prints the batch summary (the corrupt file is reported as failed) and the answer of
   ``cellpipe query`` to an example SQL query: cells per image and their mean area.

The steps are the commands a user types, run as subprocesses and printed first; this
module only orchestrates them and imports neither Luigi nor the database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cellpipe.synthetic import TRUTH_FOLDER, write_samples

#: The model ``cellpipe run`` uses when none is given (``cellpipe.unet.DEFAULT_MODEL_PATH``).
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "default" / "model.keras"

EXAMPLE_QUERY = (
    "SELECT batch_date, status, n_cells, round(area_mean, 1) AS mean_area_px, source_uri "
    "FROM image_summary ORDER BY source_uri"
)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit code (0 when it worked as intended)."""
    parser = argparse.ArgumentParser(prog="python -m cellpipe.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for images, results and the database.")
    parser.add_argument("--images", type=int, default=6, help="Images to generate, the corrupt one included.")
    parser.add_argument("--size", type=int, default=512, help="Side of the images in pixels.")
    parser.add_argument("--db", help="Database URL (default: sqlite:///OUT/cellpipe.sqlite).")
    parser.add_argument("--model", type=Path, help="U-Net .keras file (default: the shipped model).")
    args = parser.parse_args(argv)
    if args.images < 2:
        parser.error("--images must be at least 2 (one good image and the corrupt one)")
    if args.model is None and not SHIPPED_MODEL.is_file():
        print(f"error: the shipped U-Net model {SHIPPED_MODEL} is missing; the demo segments with it.\n"
              "Train it with `cellpipe model train` (see README.md), pull a checkout that has it, "
              "or give --model PATH.", file=sys.stderr)
        return 2
    model = ["--model", str(args.model.resolve())] if args.model else []

    out = args.out.resolve()
    today = dt.date.today().isoformat()
    batch = out / "input" / today
    db_url = args.db or f"sqlite:///{out / 'cellpipe.sqlite'}"
    summary = out / "summary.json"

    print(f"1. writing {args.images - 1} synthetic foam/tissue images and one corrupt PNG to {batch}")
    truth = out / TRUTH_FOLDER / today  # ground truth is not input
    shutil.rmtree(truth, ignore_errors=True)
    written = write_samples(batch, args.images - 1, size=(args.size, args.size), corrupt=True, truth_dir=truth)
    for path in written:
        print(f"   {path.relative_to(out)}")

    print("\n2. the nightly batch")
    status = _command("run", "--input", str(out / "input"), "--date", today, "--db", db_url,
                      "--output", str(out / "results"), "--summary-json", str(summary), *model)
    if not summary.is_file():
        print(f"error: cellpipe run failed (exit code {status}) before it could summarise", file=sys.stderr)
        return status or 1
    counts = json.loads(summary.read_text())["counts"]
    failed = [line["name"] for line in json.loads(summary.read_text())["images"] if line["category"] == "failed"]
    expected_failure = all("corrupt" in name for name in failed)
    if status != 0 and expected_failure:
        print(f"   (exit code {status}: the corrupt file failed, as it should; every other image is stored)")

    print("\n3. cells per image and their mean area")
    _command("query", EXAMPLE_QUERY, "--db", db_url)

    print(f"\nimages:    {out / 'input'}\nresults:   {out / 'results' / today} (<stem>_labels.tif, <stem>_cells.csv)"
          f"\ndatabase:  {db_url}\nsummary:   {summary}\n"
          f"try:       cellpipe query \"SELECT * FROM cell_metrics LIMIT 5\" --db {db_url}")
    stored = counts["stored"] + counts["skipped"]
    return 0 if expected_failure and stored >= args.images - 1 else 1


def _command(*args: str) -> int:
    print(f"   $ cellpipe {shlex.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "cellpipe.cli", *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
