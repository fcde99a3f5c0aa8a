"""Grid search of cellpipe's post-processing (``SegmentParams``) and test-time views.

Two ways to get the edge maps the choice is made on:

* ``--fold MODEL:IDS`` (repeatable): out-of-fold maps. Each fold model predicts only
  the slices it never saw (trained by ``scripts/train_folds.sh``: the shipped recipe
  on 15 of slices 0–19, the other 5 held out). This is how the defaults are chosen:
  a model is more confident on its own training slices than on new ones, so tuning on
  them favours settings that fail on new images.
* otherwise ``--model`` (default: the shipped one) on ``--tune-ids`` (default 0–19).

For each ``--views`` value (1, 2, 4 or 8 mirrored/rotated views averaged, default 1)
every combination of the grid is scored by mean foreground-restricted V_rand; the best
ten are printed with their split/merge parts, V_info and F1@0.5. The winner over all
views is the best mean V_rand; a smaller view count wins ties within ``TIE`` (it costs
proportionally less time). Held-out slices (``--check-ids``, default 20–24) are scored
with ``--model`` only afterwards, for the winner and the current defaults, so nothing
is chosen on them.

    .venv/bin/python benchmarks/tune_segment.py --fold build/folds/0/model.keras:0-4 \
        --fold build/folds/1/model.keras:5-9 ... --views 1 2 4 8 [--record]

``--check-only`` skips the search and scores the current defaults only. ``--record``
writes the held-out scores of the current defaults into the model's card
(``metrics.held_out_segmentation``), so the card says what users of the model get.

This is how the defaults of :class:`cellpipe.segment.SegmentParams` and
:class:`cellpipe.pipeline.PipelineParams` were chosen for the shipped model. Never
run by the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import baselines  # noqa: E402
from cellpipe.metrics import evaluate_dataset, evaluate_pair  # noqa: E402
from cellpipe.pipeline import CellSegmenter, PipelineParams  # noqa: E402
from cellpipe.segment import SegmentParams, segment_edges  # noqa: E402
from cellpipe.unet import card_path  # noqa: E402
from cellpipe.unet.data import parse_ids  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "isbi2012"
GRID = {
    "threshold": (0.2, 0.3, 0.4, 0.5, 0.6),
    "marker_h": (1.0, 2.0, 4.0, 8.0, 32.0),
    "merge_threshold": (0.0, 0.5, 0.6, 0.7, 0.8),
    "min_area": (8, 16, 32),
}
# Mean V_rand differences below this are ties, settled towards fewer views.
TIE = 0.002


def edge_maps(segmenter: CellSegmenter, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Return the segmenter's edge-probability maps of ``images``."""
    return [segmenter(image).edge_probability for image in images]


def scores(maps: Sequence[np.ndarray], truths: Sequence[np.ndarray], params: SegmentParams) -> dict[str, float]:
    """Return the mean scores of ``params`` applied to ``maps`` against ``truths``."""
    return evaluate_dataset(evaluate_pair(segment_edges(m, params), t) for m, t in zip(maps, truths))


def describe(params: SegmentParams, values: dict[str, float]) -> str:
    """Return one printed line: the parameters and their scores."""
    return (
        f"threshold={params.threshold:<5} marker_h={params.marker_h:<5} merge={params.merge_threshold:<4}"
        f" min_area={params.min_area:<4}"
        f" V_rand {values['v_rand']:.4f} (split {values['v_rand_split']:.4f}, merge {values['v_rand_merge']:.4f})"
        f" V_info {values['v_info']:.4f} F1@0.5 {values['f1']:.3f}"
    )


def parse_fold(spec: str) -> tuple[Path, list[str]]:
    """Return ``(model, ids)`` of a ``MODEL:IDS`` fold argument."""
    model, sep, ids = spec.rpartition(":")
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"expected MODEL:IDS, e.g. build/folds/0/model.keras:0-4, got {spec!r}")
    return Path(model), parse_ids(ids)


def tuning_maps(
    sources: Sequence[tuple[CellSegmenter, list[baselines.Slice]]], views: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return the edge maps the choice is made on, with ``views`` views, and their ground truths."""
    maps, truths = [], []
    for segmenter, slices in sources:
        maps += edge_maps(segmenter.with_params(PipelineParams(views=views)), [s.image for s in slices])
        truths += [s.truth for s in slices]
    return maps, truths


def grid_search(
    maps: Sequence[np.ndarray], truths: Sequence[np.ndarray], jobs: int = 1
) -> list[tuple[dict[str, float], SegmentParams]]:
    """Return every grid combination with its mean scores, best V_rand first."""
    combinations = [
        dataclasses.replace(SegmentParams(), **dict(zip(GRID, values))) for values in itertools.product(*GRID.values())
    ]
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs, _share, (maps, truths)) as pool:
            results = pool.map(_score_shared, combinations, chunksize=4)
    else:
        results = [scores(maps, truths, params) for params in combinations]
    return sorted(zip(results, combinations), key=lambda item: -item[0]["v_rand"])


_SHARED: tuple = ()


def _share(maps, truths) -> None:
    global _SHARED
    _SHARED = (maps, truths)


def _score_shared(params: SegmentParams) -> dict[str, float]:
    return scores(*_SHARED, params)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI 2012 folder (holds train/image, train/label)")
    parser.add_argument("--model", type=Path, default=None, help="model scored on --check-ids (default: the shipped one)")
    parser.add_argument("--fold", type=parse_fold, action="append", help="MODEL:IDS, a fold model and its held-out slices")
    parser.add_argument("--tune-ids", default="0-19", help="slices the choice is made on, without --fold")
    parser.add_argument("--check-ids", default="20-24", help="held-out slices scored after the choice")
    parser.add_argument("--record", action="store_true", help="write the defaults' held-out scores into the card")
    parser.add_argument("--views", type=int, nargs="+", default=[1], help="test-time view counts to compare")
    parser.add_argument("--check-only", action="store_true", help="only score the current defaults on --check-ids")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes scoring the grid")
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir():
        parser.error(f"{args.data}/train not found: this script needs the shared ISBI 2012 data")

    check = baselines.read_slices(args.data, parse_ids(args.check_ids))
    check_truths = [s.truth for s in check]
    segmenter = CellSegmenter(args.model, PipelineParams())
    check_maps: dict[int, list[np.ndarray]] = {}  # by view count: each predicted once

    def maps_of(views: int) -> list[np.ndarray]:
        if views not in check_maps:
            check_maps[views] = edge_maps(segmenter.with_params(PipelineParams(views=views)), [s.image for s in check])
        return check_maps[views]

    if not args.check_only:
        views, params = choose(args, segmenter)
        print(f"held-out slices {args.check_ids}, model {segmenter.model_path}:")
        print(f"  chosen   {views} view(s) " + describe(params, scores(maps_of(views), check_truths, params)))
    default_views = segmenter.params.views
    defaults = scores(maps_of(default_views), check_truths, SegmentParams())
    print(f"  defaults {default_views} view(s) " + describe(SegmentParams(), defaults))
    if args.record:
        record(segmenter.model_path, args.check_ids, default_views, defaults)


def choose(args: argparse.Namespace, segmenter: CellSegmenter) -> tuple[int, SegmentParams]:
    """Return the view count and parameters with the best mean V_rand on the tuning maps.

    The maps are the fold models' out-of-fold maps, else ``segmenter``'s maps of ``--tune-ids``.
    """
    source = ", ".join(f"{m}:{','.join(ids)}" for m, ids in args.fold) if args.fold else f"slices {args.tune_ids}"
    sources = [
        (CellSegmenter(model), baselines.read_slices(args.data, ids)) for model, ids in args.fold
    ] if args.fold else [(segmenter, baselines.read_slices(args.data, parse_ids(args.tune_ids)))]
    winners = []
    for views in sorted(args.views):
        maps, truths = tuning_maps(sources, views)
        ranked = grid_search(maps, truths, args.jobs)
        print(f"{views} view(s), tuned on {source}; {len(ranked)} combinations:", flush=True)
        for values, params in ranked[:10]:
            print("  " + describe(params, values), flush=True)
        winners.append((views, *ranked[0]))
    best_v_rand = max(values["v_rand"] for _, values, _ in winners)
    views, values, params = next(w for w in winners if w[1]["v_rand"] >= best_v_rand - TIE)
    print(f"chosen: {views} view(s), " + describe(params, values))
    return views, params


def record(model_path: Path, check_ids: str, views: int, values: dict[str, float]) -> None:
    """Write the held-out scores of the default post-processing into the card of ``model_path``."""
    path = card_path(model_path)
    card = json.loads(path.read_text())
    card.setdefault("metrics", {})["held_out_segmentation"] = {
        "slices": check_ids,
        "segment_params": dataclasses.asdict(SegmentParams()),
        "views": views,
        **{key: round(float(values[key]), 4) for key in ("v_rand", "v_rand_split", "v_rand_merge", "v_info", "f1")},
        "measured_by": "benchmarks/tune_segment.py --record",
    }
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(scratch, path)
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
