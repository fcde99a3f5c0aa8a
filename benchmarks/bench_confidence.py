"""Per-cell confidence: fit its calibration on the val split, rank cells on every held-out test source.

For each source of :func:`cellpipe.unet.mix.default_sources`, every image of its ``val``
and ``test`` splits is segmented by the model (defaults, no hint; the scale is estimated
as in production); each cell's features (:func:`cellpipe.confidence.cell_features`) are
measured and the cell is "correct" when it matches a true cell with IoU >= 0.5. A
logistic :class:`~cellpipe.confidence.Calibration` is fitted on the val cells of all
sources together; the script prints, per test source, the cells, the share correct and
the ROC AUC of the calibrated and of the uncalibrated confidence (correct above wrong).

Which features it weighs, and whether each source weighs the same in the fit (else
each cell does, and the synthetic sources with their thousands of easy cells decide),
is chosen on val alone (:data:`CANDIDATES`): by the worst ROC AUC over val sources, each
scored by a calibration fitted on the other sources' val cells (leave one source out).
The criterion is the worst source because the calibration must rank well on every kind
of image. No choice is made on a test image.

    .venv/bin/python benchmarks/bench_confidence.py --model generalist [--write] [--json out.json]

``--write`` stores the calibration, with the AUC per test source and what it was fitted
on, in the model's card (``confidence``): every later segmentation with that model
reports calibrated confidences. Never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from cellpipe.confidence import (  # noqa: E402
    FEATURES,
    PROBABILITY_FEATURES,
    Calibration,
    cell_features,
    correct_cells,
    fit_calibration,
    roc_auc,
    uncalibrated_confidence,
    write_calibrated_card,
)
from cellpipe.pipeline import CellSegmenter  # noqa: E402
from cellpipe.unet.mix import default_sources, scored_items  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: (features, each source weighs the same) pairs the calibration is chosen among.
CANDIDATES = (
    (FEATURES, False),
    (FEATURES, True),
    (PROBABILITY_FEATURES, False),
    (PROBABILITY_FEATURES, True),
)


def source_cells(segmenter, source, split: str) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Return the features and correctness of every cell the model finds in ``split`` of ``source``."""
    columns: dict[str, list[np.ndarray]] = {name: [] for name in FEATURES}
    correct, names = [], []
    for name, image, truth in scored_items(source, split):
        result = segmenter(image)
        labels = result.cells["label"]
        features = cell_features(result.labels, result.edge_probability, labels, background=result.background)
        for feature in FEATURES:
            columns[feature].append(features[feature])
        correct.append(correct_cells(result.labels, truth, labels))
        names.append(name)
    return ({name: np.concatenate(values) if values else np.zeros(0) for name, values in columns.items()},
            np.concatenate(correct) if correct else np.zeros(0, bool), names)


def fitted(groups: dict, names: Sequence[str], balanced: bool) -> Calibration:
    """Return the calibration on ``names`` fitted on the cells of every group (source) of ``groups``."""
    features = {name: np.concatenate([groups[g][0][name] for g in groups]) for name in names}
    correct = np.concatenate([groups[g][1] for g in groups])
    weights = (np.concatenate([np.full(len(groups[g][1]), 1.0 / len(groups[g][1])) for g in groups])
               if balanced else None)
    return fit_calibration(features, correct, names=names, weights=weights)


def left_out_auc(val: dict, names: Sequence[str], balanced: bool) -> dict[str, float]:
    """Return each val source's ROC AUC under a calibration fitted on the other sources' val cells."""
    scores = {}
    for held in val:
        rest = {g: val[g] for g in val if g != held and len(val[g][1])}
        features, correct, _ = val[held]
        scores[held] = roc_auc(fitted(rest, names, balanced)(features), correct)
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model file, folder or shipped name (default: the shipped default)")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--sources", nargs="*", default=None, help="only these sources (default: every one)")
    parser.add_argument("--write", action="store_true", help="store the calibration in the model's card")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    segmenter = CellSegmenter(args.model)
    sources = [s for s in default_sources(args.shared) if args.sources is None or s.name in args.sources]
    started = time.perf_counter()
    val, test = {}, {}
    for source in sources:
        val[source.name] = source_cells(segmenter, source, "val")
        test[source.name] = source_cells(segmenter, source, "test")
        print(f"{source.name}: {len(val[source.name][1])} val cells, {len(test[source.name][1])} test cells "
              f"({time.perf_counter() - started:.0f} s)", flush=True)

    val = {name: cells for name, cells in val.items() if len(cells[1])}
    choices = []
    for names, balanced in CANDIDATES:
        scores = left_out_auc(val, names, balanced)
        worst = min((v for v in scores.values() if v == v), default=float("nan"))
        print(f"candidate {','.join(names)} {'per source' if balanced else 'per cell'}: "
              f"worst left-out val AUC {worst:.3f} ({', '.join(f'{g} {v:.3f}' for g, v in scores.items())})")
        choices.append((worst, names, balanced, scores))
    worst, names, balanced, left_out = max(choices, key=lambda choice: choice[0])
    calibration = fitted(val, names, balanced)
    print("calibration:", json.dumps(calibration.as_card()), "weighted per source" if balanced else "per cell")
    header = f"{'test source':<18} {'cells':>6} {'correct':>8} {'AUC':>6} {'AUC uncal.':>10} {'mean conf.':>10}"
    print(header)
    rows = {}
    for name, (features, correct, _) in test.items():
        confidence = calibration(features)
        rows[name] = {"cells": int(correct.size), "correct": float(correct.mean()) if correct.size else None,
                      "roc_auc": roc_auc(confidence, correct),
                      "roc_auc_uncalibrated": roc_auc(uncalibrated_confidence(features), correct),
                      "mean_confidence": float(confidence.mean()) if correct.size else None}
        row = rows[name]
        print(f"{name:<18} {row['cells']:>6} {row['correct'] or 0:>8.3f} {row['roc_auc']:>6.3f} "
              f"{row['roc_auc_uncalibrated']:>10.3f} {row['mean_confidence'] or 0:>10.3f}")
    record = {
        "roc_auc": {name: round(row["roc_auc"], 4) for name, row in rows.items()},
        "test": {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                 for name, row in rows.items()},
        "fitted_on": {name: {"items": list(items), "cells": int(correct.size)}
                      for name, (_, correct, items) in val.items()},
        "weighting": "each source the same" if balanced else "each cell the same",
        "chosen_by": {"criterion": "worst val source's ROC AUC, calibration fitted on the other sources",
                      "left_out_val_auc": {g: round(v, 4) for g, v in left_out.items()}},
        "correct_iou": 0.5,
        "command": "python benchmarks/bench_confidence.py " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    if args.json:
        args.json.write_text(json.dumps({"calibration": calibration.as_card(), **record}, indent=2) + "\n")
    if args.write:
        print("wrote", write_calibrated_card(segmenter.model_path, calibration.as_card(**record)))


if __name__ == "__main__":
    main()
