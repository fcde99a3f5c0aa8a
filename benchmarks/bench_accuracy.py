"""Accuracy on held-out ISBI 2012 slices: classical watershed, the old approach, cellpipe.

In one run, on the held-out slices (default 20–24 of ``isbi2012/train``), it scores

(a) classical watershed without a U-Net (:func:`baselines.classical_labels`),
(b) the old approach: a U-Net fed 256 x 256 resized images, output thresholded, Sobel,
    two-level markers, watershed (:func:`baselines.old_unet_labels`). Its network is
    trained here on the same slices as the default model (0–19, resized), with the
    architecture and budget (steps, batch size, learning rate, seed) of the default
    model's card, once: it is cached under ``--cache`` and reused by later runs.
    ``--budget-steps N`` trains for N steps instead (say so when you quote results),
(c) cellpipe's default: :class:`cellpipe.pipeline.CellSegmenter` with the shipped model
    and default parameters,

and prints per method the mean foreground-restricted V_rand (with its split and merge
parts), V_info, F1 at IoU 0.5, predicted and true cell counts, and seconds per image from
raw image to labels (after a warm-up call; per-cell statistics not included).

The few parameters of (a) and (b) are tuned by grid search on the training slices
(``--tune-ids``, default 0–19) in the same run. No held-out slice is used for any choice.
A network is more confident on its own training slices than on new ones, so with
``--folds 0-4 5-9 10-14 15-19`` (b) is tuned as (c)'s defaults were
(``benchmarks/tune_segment.py --fold``): on out-of-fold edge maps, each slice predicted
by a network trained, with the same budget, on the other tuning slices (cached too).

    .venv/bin/python benchmarks/bench_accuracy.py [--folds 0-4 5-9 10-14 15-19] [--budget-steps N]
        [--model M.keras] [--also-views 2 8]

``--also-views`` adds rows for cellpipe with test-time augmentation, an option that is
not the default (see ``PipelineParams.views``).

``--per-source`` scores instead every source of the generalist's mix (EM, nuclei, foam,
tissue) at 0.5x, 1x and 2x beside a classical baseline per source, and counts the cells
of the seed samples (:mod:`accuracy_sources`).

Never run by the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import baselines  # noqa: E402
from cellpipe.metrics import evaluate_dataset, evaluate_pair  # noqa: E402
from cellpipe.unet.data import parse_ids  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "isbi2012"
COLUMNS = (
    ("V_rand", "v_rand"), ("split", "v_rand_split"), ("merge", "v_rand_merge"),
    ("V_info", "v_info"), ("F1@0.5", "f1"), ("cells", "n_pred"), ("true", "n_true"),
)


def score(
    segment: Callable[[np.ndarray], np.ndarray], slices: Sequence[baselines.Slice], warm_up: np.ndarray
) -> dict[str, float]:
    """Return the mean scores of ``segment`` over ``slices`` and its seconds per image."""
    segment(warm_up)
    per_image, seconds = [], []
    for item in slices:
        started = time.perf_counter()
        labels = segment(item.image)
        seconds.append(time.perf_counter() - started)
        per_image.append(evaluate_pair(labels, item.truth))
    return {**evaluate_dataset(per_image), "seconds": float(np.mean(seconds))}


def run_classical(tune_slices, test_slices) -> tuple[dict, str]:
    """Return (a)'s held-out scores and a description of its tuned parameters."""
    params, tuned = baselines.tune(
        lambda i, p: baselines.classical_labels(tune_slices[i].image, p),
        [s.truth for s in tune_slices],
        baselines.ClassicalParams(),
        baselines.CLASSICAL_GRID,
    )
    scores = score(lambda image: baselines.classical_labels(image, params), test_slices, tune_slices[0].image)
    return scores, f"{params} (tuning V_rand {tuned:.4f})"


def run_old_unet(args, default_card, tune_slices, test_slices) -> tuple[dict, str]:
    """Return (b)'s held-out scores, training its U-Net first unless cached."""
    from cellpipe.unet import EdgePredictor, load_model

    budget = baselines.old_training_budget(default_card, args.budget_steps)
    model_path = baselines.train_old_unet(args.data, args.cache, budget)
    model, card = load_model(model_path)
    predictor = EdgePredictor(model)
    if args.folds:
        edge_maps, truths = old_out_of_fold_maps(args, budget)
        tuned_on = f"out-of-fold maps of folds {' '.join(args.folds)}"
    else:
        edge_maps = [baselines.old_edge_probability(predictor, card, s.image) for s in tune_slices]
        truths = [s.truth for s in tune_slices]
        tuned_on = f"slices {args.tune_ids}"
    params, tuned = baselines.tune(
        lambda i, p: baselines.old_postprocess(edge_maps[i], p), truths, baselines.OldPostParams(), baselines.OLD_GRID
    )
    scores = score(
        lambda image: baselines.old_unet_labels(predictor, card, image, params), test_slices, tune_slices[0].image
    )
    steps = card.training.get("steps_run", "?")
    shortened = " (SHORTENED by --budget-steps)" if args.budget_steps else ""
    return scores, f"{params} (V_rand {tuned:.4f} on {tuned_on}); trained {steps} steps{shortened}, {model_path}"


def old_out_of_fold_maps(args, budget) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return (b)'s out-of-fold edge maps of the tuning slices and their truths.

    Fold ``F`` of ``args.folds`` is predicted by an old-approach network trained with
    ``budget`` on the tuning slices outside ``F``, validated on ``F``.
    """
    from cellpipe.unet import EdgePredictor, load_model

    tune_ids = parse_ids(args.tune_ids)
    maps, truths = [], []
    for fold in args.folds:
        held_out = parse_ids(fold)
        if not set(held_out) <= set(tune_ids):
            raise SystemExit(f"fold {fold} reaches outside the tuning slices {args.tune_ids}")
        train_ids = ",".join(name for name in tune_ids if name not in held_out)
        fold_path = baselines.train_old_unet(args.data, args.cache, {**budget, "train_ids": train_ids, "val_ids": fold})
        fold_model, fold_card = load_model(fold_path)
        predictor = EdgePredictor(fold_model)
        for item in baselines.read_slices(args.data, held_out):
            maps.append(baselines.old_edge_probability(predictor, fold_card, item.image))
            truths.append(item.truth)
    return maps, truths


def run_cellpipe(segmenter, tune_slices, test_slices) -> tuple[dict, str]:
    """Return (c)'s held-out scores with the segmenter's own parameters.

    Its seconds leave out the per-cell statistics the segmenter also computes, which
    the baselines do not.
    """
    inverted, measure_seconds = [], []

    def segment(image: np.ndarray) -> np.ndarray:
        result = segmenter(image)
        inverted.append(result.inverted)
        measure_seconds.append(result.timings["measure"])
        return result.labels

    scores = score(segment, test_slices, tune_slices[0].image)
    scores["seconds"] -= float(np.mean(measure_seconds[1:]))  # [0] is the warm-up call
    return scores, f"{segmenter.params.segment} views={segmenter.params.views} invert={segmenter.params.invert} (inverted: {any(inverted)})"


def print_table(rows: dict[str, dict[str, float]]) -> None:
    """Print one line per method: the mean scores and seconds per image."""
    header = f"{'method':<34}" + "".join(f"{name:>8}" for name, _ in COLUMNS) + f"{'s/image':>9}"
    print(header)
    print("-" * len(header))
    for method, scores in rows.items():
        cells = "".join(
            f"{scores[key]:>8.1f}" if key.startswith("n_") else f"{scores[key]:>8.4f}" for _, key in COLUMNS
        )
        print(f"{method:<34}{cells}{scores['seconds']:>9.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI 2012 folder (holds train/image, train/label)")
    parser.add_argument("--model", type=Path, default=None, help="cellpipe's model (default: the shipped one)")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "bench-cache", help="where the old U-Net is cached")
    parser.add_argument("--budget-steps", type=int, default=None, help="train the old U-Net for this many steps instead of the default model's budget")
    parser.add_argument("--tune-ids", default="0-19", help="slices the baselines' parameters are tuned on")
    parser.add_argument("--test-ids", default="20-24", help="held-out slices that are scored")
    parser.add_argument("--folds", nargs="*", default=[], help="tune (b) on out-of-fold maps of these folds of --tune-ids")
    parser.add_argument("--skip-old", action="store_true", help="leave out (b), e.g. before its U-Net is trained")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores here")
    parser.add_argument("--per-source", action="store_true", help="score every source and scale of the generalist's mix")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument(
        "--also-views", type=int, nargs="*", default=[],
        help="also score cellpipe with these test-time augmentation views (options, not the default)",
    )
    args = parser.parse_args(argv)
    if overlap := set(parse_ids(args.tune_ids)) & set(parse_ids(args.test_ids)):
        parser.error(f"slices {sorted(overlap, key=int)} are both tuned on and scored")

    from cellpipe.pipeline import CellSegmenter

    if args.per_source:
        import accuracy_sources

        segmenter = CellSegmenter(args.model)
        print(f"model {segmenter.model_path}; test items of every source; defaults, no hint")
        results = accuracy_sources.run(segmenter, args.shared)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return

    tune_slices = baselines.read_slices(args.data, parse_ids(args.tune_ids))
    test_slices = baselines.read_slices(args.data, parse_ids(args.test_ids))
    segmenter = CellSegmenter(args.model)
    print(f"held-out slices {args.test_ids}; baselines tuned on slices {args.tune_ids}; model {segmenter.model_path}")

    rows, notes = {}, {}
    rows["(a) classical watershed"], notes["(a)"] = run_classical(tune_slices, test_slices)
    if not args.skip_old:
        rows["(b) old: 256x256 U-Net + Sobel"], notes["(b)"] = run_old_unet(
            args, segmenter.card, tune_slices, test_slices
        )
    rows["(c) cellpipe default"], notes["(c)"] = run_cellpipe(segmenter, tune_slices, test_slices)
    for views in args.also_views:
        option = segmenter.with_params(dataclasses.replace(segmenter.params, views=views))
        rows[f"(c) cellpipe --views {views}"], notes[f"(c) views={views}"] = run_cellpipe(
            option, tune_slices, test_slices
        )

    print()
    print_table(rows)
    print()
    for method, note in notes.items():
        print(f"{method} {note}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "notes": notes}, indent=2) + "\n")


if __name__ == "__main__":
    main()
