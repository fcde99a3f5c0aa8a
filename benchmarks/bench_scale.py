"""Which scale estimate is right more often: the native-scale pass alone, with a half-size copy, or the ladder?

The pipeline estimates each image's median cell diameter from a first segmentation and
resamples so that its cells have the model's training diameter
(:func:`cellpipe.scale.search_scale`). Three searches are compared:

- ``probes none``: the native pass, and when the cells it finds are off the model's size,
  one more pass at the size they ask for;
- ``probes 0.5``: the same and a half-size copy, keeping the pass whose cells the model
  saw closest to its training size (the default before the ladder);
- ``ladder`` (the default): when the native pass is off, copies at 1/2, 1/4 and 1/8 of the
  size, twice the size when the native pass found too few cells to trust, then one pass
  at the size the best of them asks for.

on

- synthetic foam, tissue and nuclei with median diameters from 10 to 150 px (seeds 7000+,
  never used for training or tuning), and
- the held-out (``test``) items of every real source at 0.5x, 1x and 2x (``--split val``:
  the validation items, on which a search is chosen),

and prints, per search, the share of images whose estimate is within 15 % of the true
median diameter, the median absolute error, network passes and seconds per image.

    .venv/bin/python benchmarks/bench_scale.py [--model M.keras]

Never run by the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import accuracy_sources  # noqa: E402
from cellpipe.unet.targets import instances_from_classes, median_diameter  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DIAMETERS = (10, 15, 20, 30, 45, 70, 100, 150)


def synthetic_items() -> list[tuple[str, np.ndarray, float]]:
    """Return ``(name, image, true median diameter)`` of synthetic images from 10 to 150 px."""
    from cellpipe.unet.mix import synthetic_pair

    items = []
    for kind in ("foam", "tissue", "nuclei-synthetic"):
        for i, diameter in enumerate(DIAMETERS):
            image, classes = synthetic_pair(kind, 7000 + 10 * i, diameter=float(diameter))
            items.append((f"{kind}@{diameter}px", image, median_diameter(instances_from_classes(classes))))
    return items


def real_items(shared: Path, split: str = "test") -> list[tuple[str, np.ndarray, float]]:
    """Return ``(name, image, true median diameter)`` of every real source's ``split`` items at 0.5x, 1x, 2x."""
    from cellpipe.unet.mix import default_sources

    items = []
    for source in default_sources(shared):
        if source.layout == "synthetic":
            continue
        for item in accuracy_sources.read_items(source, split):
            for factor in accuracy_sources.SCALES:
                copy = accuracy_sources.scaled(item, factor)
                items.append((f"{source.name}/{copy.name}", copy.image, median_diameter(copy.truth)))
    return items


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--split", choices=("val", "test"), default="test",
                        help="real items scored: val (to choose a search) or test (to report it)")
    parser.add_argument("--only", choices=("ladder", "probes"), default=None, help="run one search only")
    args = parser.parse_args(argv)

    from cellpipe.pipeline import CellSegmenter

    segmenter = CellSegmenter(args.model)
    groups = {"synthetic 10-150 px": synthetic_items(), f"real {args.split}, 0.5x/1x/2x": real_items(args.shared, args.split)}
    print(f"{'images':<28}{'search':>14}{'n':>5}{'within 15%':>12}{'median |err|':>14}{'passes':>8}{'s/img':>8}")
    for group, items in groups.items():
        for search, probes in (("probes", ()), ("probes", (0.5,)), ("ladder", ())):
            if args.only not in (None, search):
                continue
            probe = search if search == "ladder" else "probes " + ("+".join(f"{p:g}" for p in probes) or "none")
            probing = segmenter.with_params(dataclasses.replace(segmenter.params, scale_search=search,
                                                                scale_probes=probes))
            errors, passes, seconds = [], [], []
            for _, image, truth in items:
                started = time.perf_counter()
                scale = probing.predict(image).scale
                seconds.append(time.perf_counter() - started)
                passes.append(scale.passes)
                errors.append(abs(scale.cell_diameter / truth - 1) if scale.cell_diameter and truth else 1.0)
            errors = np.array(errors)
            print(f"{group:<28}{probe:>14}{len(items):>5}{np.mean(errors <= 0.15):>12.2f}{np.median(errors):>14.3f}"
                  f"{np.mean(passes):>8.2f}{np.mean(seconds):>8.2f}")


if __name__ == "__main__":
    main()
