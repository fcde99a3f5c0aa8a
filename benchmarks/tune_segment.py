"""Grid search of cellpipe's post-processing (``SegmentParams``) for one model.

Predicts the edge maps of the tuning slices (default ISBI 2012 slices 0–19, the
default model's training slices) once, then scores every combination of the grid by
mean foreground-restricted V_rand and prints the best ten with their split/merge parts,
V_info and F1@0.5. Held-out slices (``--check-ids``, default 20–24) are scored only
for the winner and the current defaults, after the choice, so nothing is chosen on them.

    .venv/bin/python benchmarks/tune_segment.py [--model M.keras] [--tune-ids 0-19] [--record]

``--record`` writes the held-out scores of the current defaults into the model's card
(``metrics.held_out_segmentation``), so the card says what users of the model get.

This is how the defaults of :class:`cellpipe.segment.SegmentParams` were chosen for the
shipped model. Never run by the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
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
    "threshold": (0.1, 0.15, 0.2, 0.3, 0.4, 0.5),
    "marker_h": (8.0, 12.0, 16.0, 24.0, 32.0, 48.0),
    "min_area": (16, 32, 64),
}


def edge_maps(segmenter: CellSegmenter, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Return the segmenter's edge-probability maps of ``images``."""
    return [segmenter(image).edge_probability for image in images]


def scores(maps: Sequence[np.ndarray], truths: Sequence[np.ndarray], params: SegmentParams) -> dict[str, float]:
    """Return the mean scores of ``params`` applied to ``maps`` against ``truths``."""
    return evaluate_dataset(evaluate_pair(segment_edges(m, params), t) for m, t in zip(maps, truths))


def describe(params: SegmentParams, values: dict[str, float]) -> str:
    """Return one printed line: the parameters and their scores."""
    return (
        f"threshold={params.threshold:<5} marker_h={params.marker_h:<5} min_area={params.min_area:<4}"
        f" V_rand {values['v_rand']:.4f} (split {values['v_rand_split']:.4f}, merge {values['v_rand_merge']:.4f})"
        f" V_info {values['v_info']:.4f} F1@0.5 {values['f1']:.3f}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI 2012 folder (holds train/image, train/label)")
    parser.add_argument("--model", type=Path, default=None, help="model to tune for (default: the shipped one)")
    parser.add_argument("--tune-ids", default="0-19", help="slices the choice is made on")
    parser.add_argument("--check-ids", default="20-24", help="held-out slices scored after the choice")
    parser.add_argument("--record", action="store_true", help="write the defaults' held-out scores into the card")
    parser.add_argument("--views", type=int, default=None, help="test-time augmentation views (default: PipelineParams')")
    args = parser.parse_args(argv)
    if not (args.data / "train").is_dir():
        parser.error(f"{args.data}/train not found: this script needs the shared ISBI 2012 data")

    pipeline = PipelineParams() if args.views is None else PipelineParams(views=args.views)
    segmenter = CellSegmenter(args.model, pipeline)
    tune = baselines.read_slices(args.data, parse_ids(args.tune_ids))
    check = baselines.read_slices(args.data, parse_ids(args.check_ids))
    tune_maps = edge_maps(segmenter, [s.image for s in tune])
    truths = [s.truth for s in tune]

    ranked = []
    for values in itertools.product(*GRID.values()):
        params = dataclasses.replace(SegmentParams(), **dict(zip(GRID, values)))
        ranked.append((scores(tune_maps, truths, params), params))
    ranked.sort(key=lambda item: -item[0]["v_rand"])
    print(f"model {segmenter.model_path}, {pipeline.views} view(s); tuned on slices {args.tune_ids}; "
          f"{len(ranked)} combinations")
    for values, params in ranked[:10]:
        print("  " + describe(params, values))

    check_maps = edge_maps(segmenter, [s.image for s in check])
    check_truths = [s.truth for s in check]
    print(f"held-out slices {args.check_ids}:")
    print("  best     " + describe(ranked[0][1], scores(check_maps, check_truths, ranked[0][1])))
    defaults = scores(check_maps, check_truths, SegmentParams())
    print("  defaults " + describe(SegmentParams(), defaults))
    if args.record:
        record(segmenter.model_path, args.check_ids, pipeline.views, defaults)


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
