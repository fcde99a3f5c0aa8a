"""Post-processing parameters tuned for one model on validation data (``cellpipe model tune``).

As StarDist's ``thresholds.json``: the parameters that turn a model's maps into cells
(:class:`cellpipe.segment.SegmentParams`) are chosen for that model, on images it was
not trained on, and stored in its card (``postprocessing``), where every command finds
them (a flag, environment variable or ``luigi.cfg`` entry still overrides each).

Each validation folder is one of the layouts of the training data:

- the **seed layout**, ``DATA/train/image/N.png`` + ``DATA/train/label/N.png`` (or
  ``DATA/image`` + ``DATA/label``): label 0 is wall, 128 background, anything else cell
  interior; the true cells are the 4-connected components of the interior;
- the **instance layout**, ``DATA/images/N.png`` + ``DATA/masks/N.png``: 0 is background
  and each cell has its own value.

A folder may be restricted to some of its images, ``PATH:ID1,ID2,...`` (ranges such
as ``20-24`` too), so that the validation split of a shared folder is used in place.

Every image is predicted once (:meth:`cellpipe.pipeline.CellSegmenter.predict`); each
combination of :data:`GRID` then segments the same maps again
(:meth:`~cellpipe.pipeline.CellSegmenter.relabel`) and is scored against the truth with
:func:`cellpipe.metrics.evaluate_pair`. The objective is the mean over folders of the
folder's mean of (F1@0.5 + V_rand) / 2, so that a folder of many images does not
outweigh a folder of few, and a parameter set must both find cells one by one (F1) and
draw their walls where the truth has them (V_rand). The library defaults and the card's
current values are scored with the grid, so the winner is never worse than either on
the folders given.

Nothing here imports TensorFlow: the segmenter is given by the caller.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cellpipe import __version__
from cellpipe.io import ImageReadError, _write_atomically, read_image
from cellpipe.metrics import evaluate_pair
from cellpipe.segment import SegmentParams
from cellpipe.unet.data import IMAGE_SUFFIXES, natural_key, parse_ids
from cellpipe.unet.targets import classes_from_label, instances_from_classes

__all__ = [
    "GRID",
    "Candidate",
    "FolderScore",
    "TuningFolder",
    "TuningResult",
    "folder_images",
    "objective",
    "truth_from_seed_label",
    "tune",
    "write_tuned_card",
]

#: The searched values of each :class:`~cellpipe.segment.SegmentParams` field
#: (4 x 4 x 5 x 3 = 240 combinations); fields not listed keep the card's values.
GRID: dict[str, tuple[float, ...]] = {
    "threshold": (0.3, 0.4, 0.5, 0.6),
    "marker_h": (1.0, 2.0, 3.0, 4.0),
    "merge_threshold": (0.0, 0.4, 0.5, 0.6, 0.7),
    "min_area": (8, 16, 32),
}


@dataclass(frozen=True)
class TuningFolder:
    """A validation folder, optionally restricted to some image stems.

    Attributes
    ----------
    path : Path
    ids : tuple of str or None
        Image stems to use; None: every image that has a label.
    """

    path: Path
    ids: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, spec: str | os.PathLike[str]) -> "TuningFolder":
        """Return the folder of a ``PATH`` or ``PATH:ID1,ID2,...`` argument (ids as in ``--val-ids``).

        Examples
        --------
        >>> TuningFolder.parse("data/isbi2012:20-22,7").ids
        ('20', '21', '22', '7')
        >>> TuningFolder.parse("data/dsb").ids is None
        True
        """
        spec = os.fspath(spec)
        path, sep, ids = spec.rpartition(":")
        if not sep or not path or "/" in ids or "\\" in ids:
            return cls(Path(spec))
        return cls(Path(path), tuple(parse_ids(ids)))

    def __str__(self) -> str:
        return str(self.path) if self.ids is None else f"{self.path}:{','.join(self.ids)}"


def truth_from_seed_label(label: np.ndarray) -> np.ndarray:
    """Return the true cells of a seed-layout label: 4-connected components of the interior.

    Examples
    --------
    >>> truth_from_seed_label(np.array([[255, 0, 255], [255, 0, 128]], np.uint8))
    array([[1, 0, 2],
           [1, 0, 0]], dtype=int32)
    """
    return instances_from_classes(classes_from_label(label))


def folder_images(folder: TuningFolder) -> list[tuple[str, Path, np.ndarray]]:
    """Return ``(stem, image path, true cells)`` of every image of ``folder``, naturally sorted.

    Raises
    ------
    FileNotFoundError
        When the folder has neither layout, no labelled image, or lacks an id asked for.
    """
    layout, image_dir, label_dir = _layout(folder.path)
    images = _files_by_stem(image_dir)
    labels = _files_by_stem(label_dir)
    stems = sorted(set(images) & set(labels), key=natural_key)
    if folder.ids is not None:
        missing = [stem for stem in folder.ids if stem not in stems]
        if missing:
            raise FileNotFoundError(f"{folder.path}: no image with a label for ids {missing} "
                                    f"(in {image_dir} and {label_dir})")
        stems = list(folder.ids)
    if not stems:
        raise FileNotFoundError(f"no image in {image_dir} has a label of the same name in {label_dir}")
    found = []
    for stem in stems:
        truth = read_image(labels[stem])
        truth = truth_from_seed_label(truth) if layout == "seed" else truth.astype(np.int64)
        found.append((stem, images[stem], truth))
    return found


def objective(f1: float, v_rand: float) -> float:
    """Return (F1@0.5 + V_rand) / 2, or F1 alone where V_rand is undefined (NaN)."""
    return float(f1) if np.isnan(v_rand) else (float(f1) + float(v_rand)) / 2.0


@dataclass(frozen=True)
class FolderScore:
    """Mean scores of one parameter set over the images of one folder.

    ``objective`` is :func:`objective` of the two means (images where V_rand is
    undefined are left out of its mean).
    """

    f1: float
    v_rand: float

    @property
    def objective(self) -> float:
        return objective(self.f1, self.v_rand)

    def as_dict(self) -> dict[str, float]:
        return {"objective": round(self.objective, 5), "f1": round(self.f1, 5),
                "v_rand": None if np.isnan(self.v_rand) else round(self.v_rand, 5)}


@dataclass(frozen=True)
class Candidate:
    """One parameter set and its scores, one :class:`FolderScore` per folder."""

    params: SegmentParams
    folders: tuple[FolderScore, ...]

    @property
    def objective(self) -> float:
        """Return the mean over folders of each folder's objective."""
        return float(np.mean([score.objective for score in self.folders]))


@dataclass(frozen=True)
class TuningResult:
    """What :func:`tune` found.

    Attributes
    ----------
    folders : tuple of TuningFolder
    images : tuple of tuple of str
        The image stems scored in each folder.
    best : Candidate
        The highest objective over the card's values, the defaults and the grid (a tie
        goes to the card's values, then to the defaults, then to the grid's order).
    defaults : Candidate
        ``SegmentParams()``, the library defaults.
    card : Candidate or None
        The card's values before tuning; None when the card had none.
    views : int
        Test-time views of the predictions.
    grid : dict of str to tuple
        The values searched.
    ranking : list of Candidate
        Every candidate scored, best first.
    """

    folders: tuple[TuningFolder, ...]
    images: tuple[tuple[str, ...], ...]
    best: Candidate
    defaults: Candidate
    card: Candidate | None
    views: int
    grid: dict[str, tuple[float, ...]]
    ranking: list[Candidate]

    def tuned_on(self, command: str) -> dict[str, Any]:
        """Return the card's record of this tuning (``postprocessing_tuned_on``)."""
        folders = []
        for folder, images, best, defaults in zip(self.folders, self.images, self.best.folders,
                                                  self.defaults.folders):
            folders.append({"path": str(folder.path.resolve()), "ids": None if folder.ids is None else list(folder.ids),
                            "images": list(images), "best": best.as_dict(), "defaults": defaults.as_dict()})
        return {
            "objective": "mean over folders of the folder's mean of (F1@0.5 + V_rand) / 2",
            "best": round(self.best.objective, 5),
            "defaults": round(self.defaults.objective, 5),
            "card_before": None if self.card is None else round(self.card.objective, 5),
            "folders": folders,
            "views": self.views,
            "grid": {name: list(values) for name, values in self.grid.items()},
            "candidates": len(self.ranking),
            "command": command,
            "tuned": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "cellpipe": __version__,
        }


def tune(
    segmenter,
    folders: Sequence[TuningFolder],
    *,
    grid: Mapping[str, Sequence[float]] | None = None,
    jobs: int = 1,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> TuningResult:
    """Return the post-processing parameters with the best objective for ``segmenter`` on ``folders``.

    Parameters
    ----------
    segmenter : cellpipe.pipeline.CellSegmenter
        The model, with the parameters its predictions are made with (views, inversion,
        cell diameter); the grid changes its post-processing's fields named in ``grid``
        and keeps the others (``connectivity``, ``label_walls``).
    folders : sequence of TuningFolder
        Validation data, each in the seed or instance layout (see the module docstring).
    grid : mapping of str to sequence, optional
        Values searched per :class:`~cellpipe.segment.SegmentParams` field; default :data:`GRID`.
    jobs : int
        Processes scoring the candidates (forked: they share the predictions). 1: this process.
    on_progress : callable, optional
        Called with ``(stage, done, total)``, stage ``"predict"`` (per image) or ``"score"``.

    Raises
    ------
    FileNotFoundError
        A folder has no usable image (see :func:`folder_images`).
    """
    if not folders:
        raise ValueError("give at least one validation folder")
    progress = on_progress or (lambda stage, done, total: None)
    listed = [folder_images(folder) for folder in folders]
    total = sum(len(items) for items in listed)
    predictions: list[list[Any]] = []
    truths: list[list[np.ndarray]] = []
    done = 0
    for items in listed:
        predictions.append([])
        truths.append([])
        for stem, image_path, truth in items:
            try:
                image = read_image(image_path)
            except ImageReadError as error:
                raise FileNotFoundError(f"cannot read validation image {image_path}: {error}") from error
            if image.shape != truth.shape:
                raise ValueError(f"{image_path}: image {image.shape} and its label {truth.shape} differ in size")
            predictions[-1].append(segmenter.predict(image))
            truths[-1].append(truth)
            done += 1
            progress("predict", done, total)

    grid = GRID if grid is None else grid
    base = segmenter.params.segment
    defaults = SegmentParams()
    card = segmenter.tuned_segment_params() if segmenter.card.postprocessing else None
    combinations = [dataclasses.replace(base, **dict(zip(grid, values)))
                    for values in itertools.product(*grid.values())]
    candidates = _unique([*([card] if card is not None else []), defaults, *combinations])
    scores = _score_all(segmenter, predictions, truths, candidates, jobs, progress)
    scored = [Candidate(params, folder_scores) for params, folder_scores in zip(candidates, scores)]
    by_params = {candidate.params: candidate for candidate in scored}
    ranking = sorted(scored, key=lambda candidate: -candidate.objective)  # stable: earlier wins ties
    return TuningResult(
        folders=tuple(folders),
        images=tuple(tuple(stem for stem, _, _ in items) for items in listed),
        best=ranking[0],
        defaults=by_params[defaults],
        card=None if card is None else by_params[card],
        views=segmenter.params.views,
        grid={name: tuple(values) for name, values in grid.items()},
        ranking=ranking,
    )


def write_tuned_card(model_path: str | os.PathLike[str], result: TuningResult, *, command: str) -> Path:
    """Write ``result.best`` into the card of ``model_path`` as ``postprocessing``; return the card's path.

    The card (``MODEL.json`` next to ``MODEL.keras``) is rewritten atomically as JSON, with
    ``postprocessing_tuned_on`` saying what the values were chosen on (:meth:`TuningResult.tuned_on`).
    """
    path = Path(model_path)
    if path.is_dir():
        path = path / "model.keras"
    card_file = path.with_suffix(".json")  # cellpipe.unet.card_path, without importing TensorFlow
    try:
        card = json.loads(card_file.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the model card {card_file}: {error}") from error
    card["postprocessing"] = result.best.params.as_dict()
    card["postprocessing_tuned_on"] = result.tuned_on(command)
    text = json.dumps(card, indent=2) + "\n"
    return _write_atomically(card_file, lambda temporary: temporary.write_text(text))


# --- scoring -----------------------------------------------------------------------------

_SHARED: tuple = ()


def _score_all(segmenter, predictions, truths, candidates, jobs, progress) -> list[tuple[FolderScore, ...]]:
    total = len(candidates)
    if jobs > 1 and total > 1:
        # Forked workers inherit the predictions (nothing is pickled but the parameters);
        # they only segment and score, never touch the network.
        with multiprocessing.get_context("fork").Pool(jobs, _share, (segmenter, predictions, truths)) as pool:
            results = []
            for scores in pool.imap(_score_shared, candidates, chunksize=4):
                results.append(scores)
                progress("score", len(results), total)
            return results
    results = []
    for params in candidates:
        results.append(_score(segmenter, predictions, truths, params))
        progress("score", len(results), total)
    return results


def _share(segmenter, predictions, truths) -> None:
    global _SHARED
    _SHARED = (segmenter, predictions, truths)


def _score_shared(params: SegmentParams) -> tuple[FolderScore, ...]:
    return _score(*_SHARED, params)


def _score(segmenter, predictions, truths, params: SegmentParams) -> tuple[FolderScore, ...]:
    scores = []
    for folder_predictions, folder_truths in zip(predictions, truths):
        f1, v_rand = [], []
        for prediction, truth in zip(folder_predictions, folder_truths):
            values = evaluate_pair(segmenter.relabel(prediction, params), truth)
            f1.append(values["f1"])
            v_rand.append(values["v_rand"])
        defined = [value for value in v_rand if not np.isnan(value)]
        scores.append(FolderScore(float(np.mean(f1)), float(np.mean(defined)) if defined else float("nan")))
    return tuple(scores)


# --- folders -----------------------------------------------------------------------------

def _layout(root: Path) -> tuple[str, Path, Path]:
    for base in (root / "train", root):
        if (base / "image").is_dir() and (base / "label").is_dir():
            return "seed", base / "image", base / "label"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "instances", root / "images", root / "masks"
    raise FileNotFoundError(
        f"{root} holds no validation data: expected {root}/train/image + {root}/train/label or "
        f"{root}/image + {root}/label (label 0 wall, 128 background, else cell), or "
        f"{root}/images + {root}/masks (0 background, one value per cell)"
    )


def _files_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def _unique(candidates: Sequence[SegmentParams]) -> list[SegmentParams]:
    return list(dict.fromkeys(candidates))
