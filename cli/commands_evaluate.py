"""``cellpipe evaluate``: score predicted label images against ground truth."""

from __future__ import annotations

import enum
import json
import math
import re
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.progress import track
from rich.table import Table

from cellpipe import io, metrics
from cellpipe.cli import app

#: File name endings read as label images or masks.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
#: What ``cellpipe segment`` appends to an image's stem when it writes its labels.
LABELS_SUFFIX = "_labels"


class OutputFormat(str, enum.Enum):
    table = "table"
    json = "json"


@app.command("evaluate")
def evaluate(
    pred_dir: Annotated[
        Path,
        typer.Argument(
            exists=True, file_okay=False, help="Predicted label images, e.g. <stem>_labels.tif from 'cellpipe segment'."
        ),
    ],
    truth_dir: Annotated[
        Path,
        typer.Argument(
            exists=True, file_okay=False, help="Ground truth <stem>.png/.tif: label images or interior masks (255 = cell)."
        ),
    ],
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Print a table or JSON.")] = OutputFormat.table,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Score only the ground-truth images that have a prediction (default: every one needs one).",
        ),
    ] = False,
) -> None:
    """Score predicted cells against ground truth: V_rand, V_info, F1 and AP, cell count.

    Files pair by stem: PRED_DIR/<stem>_labels.tif (or <stem>.png/.tif) with TRUTH_DIR/<stem>.png/.tif.

    Scores are those of cellpipe.metrics.evaluate_pair; the last row is their mean over images.
    """
    errors = Console(stderr=True)
    try:
        pairs = _pair_files(pred_dir, truth_dir, allow_missing)
        per_image = {stem: _score(pred, truth) for stem, (pred, truth) in _progress(pairs, errors)}
    except ValueError as error:
        errors.print(f"[bold red]Error:[/] {error}", highlight=False)
        raise typer.Exit(code=1) from error
    mean = metrics.evaluate_dataset(per_image.values())
    if output_format is OutputFormat.json:
        report = {"images": {stem: _json_safe(s) for stem, s in per_image.items()}, "mean": _json_safe(mean)}
        typer.echo(json.dumps(report, indent=2))
    else:
        Console().print(_table(per_image, mean))


def _pair_files(pred_dir: Path, truth_dir: Path, allow_missing: bool) -> dict[str, tuple[Path, Path]]:
    """Return {stem: (prediction file, truth file)}; raise ValueError on unpaired files."""
    predictions = _files_by_stem(pred_dir, strip=LABELS_SUFFIX)
    truths = _files_by_stem(truth_dir, strip=None)
    no_truth = sorted(set(predictions) - set(truths))
    if no_truth:
        raise ValueError(
            f"no ground truth in {truth_dir} for the predictions {_listing(predictions[s] for s in no_truth)}; "
            f"expected files named <stem>{'/'.join(IMAGE_SUFFIXES)} there"
        )
    no_prediction = sorted(set(truths) - set(predictions))
    if no_prediction and not allow_missing:
        raise ValueError(
            f"no prediction in {pred_dir} for the ground truth {_listing(truths[s] for s in no_prediction)}; "
            "segment those images, or pass --allow-missing to score only the predicted ones"
        )
    if not predictions:
        raise ValueError(f"no label images ({', '.join(IMAGE_SUFFIXES)}) in {pred_dir}")
    return {stem: (predictions[stem], truths[stem]) for stem in sorted(predictions, key=_natural_key)}


def _files_by_stem(folder: Path, strip: str | None) -> dict[str, Path]:
    """Return the label images in ``folder`` by stem, without the ``strip`` suffix.

    When some stems end with ``strip``, only those files count (``cellpipe segment``
    writes overlays next to its label images).
    """
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if strip and any(p.stem.endswith(strip) for p in files):
        files = [p for p in files if p.stem.endswith(strip)]
    by_stem: dict[str, Path] = {}
    for path in files:
        stem = path.stem[: -len(strip)] if strip and path.stem.endswith(strip) else path.stem
        if stem in by_stem:
            raise ValueError(f"{by_stem[stem]} and {path} are both the image {stem!r}; keep one of them")
        by_stem[stem] = path
    return by_stem


def _score(pred_path: Path, truth_path: Path) -> dict[str, float]:
    pred, truth = _read_labels(pred_path), _read_labels(truth_path)
    if pred.shape != truth.shape:
        raise ValueError(
            f"{pred_path} is {pred.shape[1]} x {pred.shape[0]} pixels but its ground truth {truth_path} is "
            f"{truth.shape[1]} x {truth.shape[0]}; predict at the ground truth's resolution"
        )
    return metrics.evaluate_pair(pred, truth)


def _read_labels(path: Path) -> np.ndarray:
    """Return the label image or mask in ``path`` (uint32 TIFF labels, or any gray image)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            return io.read_labels_tiff(path)
        except ValueError:
            pass  # not an integer TIFF: read_image says what is wrong with it, if anything
    return io.read_image(path)


def _progress(pairs: dict[str, tuple[Path, Path]], console: Console):
    return track(
        pairs.items(), description="Scoring", console=console, transient=True, disable=not console.is_terminal
    )


_COLUMNS = (  # (header, key); the JSON output has every score of evaluate_pair
    ("true", "n_true"),
    ("pred", "n_pred"),
    ("V_rand", "v_rand"),
    ("split", "v_rand_split"),
    ("merge", "v_rand_merge"),
    ("V_info", "v_info"),
    ("F1", "f1"),
    ("AP", "ap"),
    ("mAP", "ap_mean"),
)
_CAPTION = (
    "true/pred: cell counts; split, merge: parts of V_rand (1 = none); F1, AP at IoU 0.5; "
    "mAP: mean AP over IoU 0.5:0.05:0.95; --format json gives every score"
)


def _table(per_image: dict[str, dict[str, float]], mean: dict[str, float]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, caption=_CAPTION, caption_justify="left", pad_edge=False)
    names = [*per_image, "mean"]
    table.add_column("image", overflow="fold", min_width=min(max(map(len, names)), 24))
    for title, _ in _COLUMNS:
        table.add_column(title, justify="right", no_wrap=True)
    for stem, scores in per_image.items():
        table.add_row(stem, *(_number(scores[key], key) for _, key in _COLUMNS))
    table.add_section()
    table.add_row("mean", *(_number(mean[key], key) for _, key in _COLUMNS), style="bold")
    return table


def _number(value: float, key: str) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.1f}".removesuffix(".0") if key.startswith("n_") else f"{value:.3f}"


def _json_safe(scores: dict[str, float]) -> dict[str, float | None]:
    """Return ``scores`` with NaN and infinity as null (JSON has no such numbers)."""
    return {key: (value if math.isfinite(value) else None) for key, value in scores.items()}


def _listing(paths) -> str:
    names = [str(p) for p in paths]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _natural_key(stem: str) -> tuple:
    """Sort image 2 before image 10 (digits and text alternate, so parts always compare)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", stem))
