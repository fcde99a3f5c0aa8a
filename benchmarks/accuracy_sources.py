"""Held-out accuracy per source and per scale: cellpipe's defaults beside a classical baseline.

For every source of the generalist's mix (:func:`cellpipe.unet.mix.default_sources`) it
reads the ``test`` items (never used for training, checkpoint selection or tuning), and
scores them at 0.5x, 1x and 2x (resampled copies: the image bilinearly, antialiased when
shrinking, the truth by nearest neighbour), with

- cellpipe: :class:`cellpipe.pipeline.CellSegmenter` with the model's defaults, no hint;
- a classical baseline, tuned per source on that source's ``val`` items at 1x: for walled
  images the smoothed-threshold watershed of :func:`baselines.classical_labels` (on the
  inverted image where walls are bright, as :func:`cellpipe.preprocess.guess_invert`
  says); for nuclei Otsu's threshold, distance-transform peaks and a watershed
  (:func:`nuclei_labels`), the textbook recipe.

The seed samples (``seed-samples/cell.jpg``, ``polyurethane.jpg``) have no truth; their
cell counts are printed beside the counts by eye of ``tests/data/README.md``.

    .venv/bin/python benchmarks/bench_accuracy.py --per-source [--model M.keras] [--json out.json]
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

import baselines
from cellpipe.metrics import evaluate_dataset, evaluate_pair
from cellpipe.preprocess import contrast_gray, guess_invert
from cellpipe.scale import resampled_copy

SCALES = (0.5, 1.0, 2.0)
#: Counts by eye of the seed samples (tests/data/README.md says how they were made).
SEED_COUNTS = {"cell.jpg": 150, "polyurethane.jpg": 42}
NUCLEI_SOURCES = ("dsb", "gowt1", "nuclei-synthetic")


@dataclass(frozen=True)
class Item:
    """One scored image: raw 2-D pixels as :func:`cellpipe.io.read_image` gives them, and its cells."""

    source: str
    name: str
    image: np.ndarray
    truth: np.ndarray


def read_items(source, split: str) -> list[Item]:
    """Return the ``split`` items of ``source`` as raw images (gray, as users' files read) with instance truth."""
    from cellpipe.unet.mix import scored_items

    return [Item(source.name, name, image, truth) for name, image, truth in scored_items(source, split)]


def scaled(item: Item, factor: float) -> Item:
    """Return ``item`` resampled by ``factor`` (image bilinear and antialiased, truth nearest)."""
    if factor == 1.0:
        return item
    image, truth = resampled_copy(item.image, item.truth, factor)
    return Item(item.source, f"{item.name}@{factor:g}x", image, truth)


# --- classical baselines ----------------------------------------------------------------------


@dataclass(frozen=True)
class NucleiParams:
    """Parameters of :func:`nuclei_labels`: smoothing (px), marker spacing (px), smallest nucleus (px)."""

    sigma: float = 1.0
    min_distance: int = 5
    min_area: int = 16


NUCLEI_GRID = {"sigma": (0.5, 1.0, 2.0), "min_distance": (3, 5, 8, 12, 20), "min_area": (8, 16, 32, 64)}


def nuclei_labels(image: np.ndarray, params: NucleiParams) -> np.ndarray:
    """Return nuclei labels: Otsu threshold (the minority side is foreground), distance peaks, watershed."""
    smoothed = ndi.gaussian_filter(contrast_gray(image), params.sigma)
    foreground = smoothed > threshold_otsu(smoothed)
    if foreground.mean() > 0.5:  # dark nuclei on a bright slide
        foreground = ~foreground
    distance = ndi.distance_transform_edt(foreground)
    components, _ = ndi.label(foreground)
    peaks = peak_local_max(distance, min_distance=params.min_distance, labels=components, exclude_border=False)
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return baselines.drop_small(watershed(-distance, markers, mask=foreground), params.min_area)


def walled_labels(image: np.ndarray, params: baselines.ClassicalParams) -> np.ndarray:
    """Return :func:`baselines.classical_labels` of ``image``, inverted first when its walls look bright."""
    if guess_invert(image):
        image = image.max() - image
    return baselines.classical_labels(image, params)


def classical_method(source: str, val_items: Sequence[Item]):
    """Return ``(labels_function, params)`` of the classical baseline tuned on ``val_items``."""
    if source in NUCLEI_SOURCES:
        segment, defaults, grid = nuclei_labels, NucleiParams(), NUCLEI_GRID
    else:
        segment, defaults, grid = walled_labels, baselines.ClassicalParams(), baselines.CLASSICAL_GRID
    best, best_score = defaults, -math.inf
    for values in itertools.product(*grid.values()):
        params = dataclasses.replace(defaults, **dict(zip(grid, values)))
        scores = evaluate_dataset(evaluate_pair(segment(item.image, params), item.truth) for item in val_items)
        objective = 0.5 * (scores["f1"] + scores["v_rand"])
        if objective > best_score:
            best, best_score = params, objective
    return segment, best


# --- the table --------------------------------------------------------------------------------


def score_source(segmenter, source, log=print) -> list[dict]:
    """Return one row per scale of ``source``'s test items: cellpipe and the classical baseline."""
    from cellpipe.unet.targets import median_diameter

    test_items = read_items(source, "test")
    classical, params = classical_method(source.name, read_items(source, "val"))
    log(f"{source.name}: classical baseline tuned on val: {params}")
    rows = []
    for factor in SCALES:
        items = [scaled(item, factor) for item in test_items]
        ours, theirs, seconds, estimates = [], [], [], []
        for item in items:
            started = time.perf_counter()
            result = segmenter(item.image)
            seconds.append(time.perf_counter() - started)
            ours.append(evaluate_pair(result.labels, item.truth))
            theirs.append(evaluate_pair(classical(item.image, params), item.truth))
            true_diameter = median_diameter(item.truth)
            if result.scale.cell_diameter and true_diameter:
                estimates.append(result.scale.cell_diameter / true_diameter)
        mine, base = evaluate_dataset(ours), evaluate_dataset(theirs)
        rows.append({
            "source": source.name, "scale": factor, "images": len(items),
            "cells": int(sum(s["n_true"] for s in ours)), "found": int(sum(s["n_pred"] for s in ours)),
            "f1": mine["f1"], "v_rand": mine["v_rand"], "classical_f1": base["f1"], "classical_v_rand": base["v_rand"],
            "seconds": float(np.mean(seconds)),
            "diameter_ratio": float(np.median(estimates)) if estimates else None,
            "diameter_within_15pct": float(np.mean([abs(r - 1) <= 0.15 for r in estimates])) if estimates else None,
        })
        log(format_row(rows[-1]))
    return rows


HEADER = (f"{'source':<17}{'scale':>6}{'imgs':>5}{'cells':>6}{'found':>6}{'F1@0.5':>8}{'V_rand':>8}"
          f"{'cl.F1':>8}{'cl.V_rand':>10}{'s/img':>7}{'d est/true':>11}")


def format_row(row: dict) -> str:
    """Return one table line of :func:`score_source`'s ``row``."""
    ratio = "-" if row["diameter_ratio"] is None else f"{row['diameter_ratio']:.2f}"
    return (f"{row['source']:<17}{row['scale']:>5g}x{row['images']:>5}{row['cells']:>6}{row['found']:>6}"
            f"{row['f1']:>8.3f}{row['v_rand']:>8.3f}{row['classical_f1']:>8.3f}{row['classical_v_rand']:>10.3f}"
            f"{row['seconds']:>7.2f}{ratio:>11}")


def seed_sample_counts(segmenter, seed_dir: Path) -> list[dict]:
    """Return the cell count of each seed sample beside its count by eye."""
    from cellpipe.io import read_image

    rows = []
    for name, by_eye in SEED_COUNTS.items():
        result = segmenter(read_image(seed_dir / name))
        rows.append({"image": name, "found": result.n_cells, "by_eye": by_eye,
                     "relative_error": round((result.n_cells - by_eye) / by_eye, 3),
                     "cell_diameter": result.scale.cell_diameter, "factor": result.scale.factor})
    return rows


#: Whether the walls of each walled source are brighter than its cells.
BRIGHT_WALLS = {"isbi": False, "foam": True, "tissue": False}


def invert_guess_accuracy(sources) -> dict[str, float]:
    """Return, per walled source, how often :func:`guess_invert` tells the walls' polarity right.

    cellpipe's generalist does not use this guess (it was trained on both polarities); the
    classical baseline does, and edge models trained on one polarity do.
    """
    accuracy = {}
    for source in sources:
        if source.name in BRIGHT_WALLS:
            items = read_items(source, "test")
            accuracy[source.name] = float(np.mean([guess_invert(i.image) == BRIGHT_WALLS[source.name] for i in items]))
    return accuracy


def run(segmenter, shared_data: Path, log=print) -> dict:
    """Return every row: per source and scale, and the seed samples' counts."""
    from cellpipe.unet.mix import default_sources

    sources = default_sources(shared_data)
    log(HEADER)
    rows = [row for source in sources for row in score_source(segmenter, source, log)]
    guesses = invert_guess_accuracy(sources)
    log("guess_invert right (used by the classical baseline only): "
        + ", ".join(f"{name} {value:.0%}" for name, value in guesses.items()))
    seeds = seed_sample_counts(segmenter, shared_data / "seed-samples")
    for seed in seeds:
        log(f"{seed['image']}: {seed['found']} cells, {seed['by_eye']} by eye ({100 * seed['relative_error']:+.0f} %), "
            f"diameter {seed['cell_diameter']}, factor {seed['factor']}")
    return {"rows": rows, "seed_samples": seeds, "guess_invert_accuracy": guesses}
