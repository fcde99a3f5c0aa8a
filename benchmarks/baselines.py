"""The two segmentations that ``bench_accuracy.py`` holds cellpipe's default against.

(a) :func:`classical_labels`: no U-Net. Contrast gray image → Gaussian smoothing →
    threshold (cell interiors are bright, membranes dark in EM) → Euclidean distance
    transform → its peaks as markers → watershed of the Sobel gradient of the smoothed
    image, inside the interiors.
(b) :func:`old_unet_labels`: the approach cellpipe replaces. The image is resized to
    256 x 256, a U-Net trained at that size predicts edges, its output is resized back,
    thresholded, and a watershed of its Sobel gradient is flooded from two-level
    markers: every connected component of confident interior (edge probability below
    ``low``) seeds one cell, confident walls (above ``high``) seed one background
    marker. :func:`train_old_unet` trains that network with cellpipe's own training
    loop on the same images, resized, with the budget of the default model's card.

:func:`tune` picks each baseline's few parameters by grid search on training slices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import sobel
from skimage.segmentation import watershed
from skimage.transform import resize

from cellpipe.io import read_image
from cellpipe.metrics import evaluate_dataset, evaluate_pair
from cellpipe.preprocess import contrast_gray

#: Side of the square images the old approach feeds its U-Net.
OLD_SIZE = 256


@dataclass(frozen=True)
class Slice:
    """One ISBI 2012 training slice: its name, raw image and interior mask (255/0)."""

    name: str
    image: np.ndarray
    truth: np.ndarray


def read_slices(data_dir: Path, names: Iterable[str]) -> list[Slice]:
    """Return the slices ``names`` of ``data_dir/train/{image,label}``."""
    root = Path(data_dir) / "train"
    return [
        Slice(name, read_image(root / "image" / f"{name}.png"), read_image(root / "label" / f"{name}.png"))
        for name in names
    ]


def drop_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Return ``labels`` with cells under ``min_area`` pixels set to 0, relabelled 1..N."""
    areas = np.bincount(labels.ravel())
    keep = areas >= min_area
    keep[0] = False
    new_label = np.zeros(areas.size, np.int32)
    new_label[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_label[labels]


# --- (a) classical watershed --------------------------------------------------------------


@dataclass(frozen=True)
class ClassicalParams:
    """Parameters of :func:`classical_labels`.

    Attributes
    ----------
    sigma : float
        Gaussian smoothing of the contrast gray image, pixels.
    threshold : float
        Smoothed gray level in [0, 1] above which a pixel is cell interior.
    min_distance : int
        Smallest distance, pixels, between two markers (distance-transform peaks).
    min_area : int
        Cells with fewer pixels are dropped.
    """

    sigma: float = 2.0
    threshold: float = 0.5
    min_distance: int = 10
    min_area: int = 16


CLASSICAL_GRID = {
    "sigma": (1.0, 2.0, 3.0),
    "threshold": (0.35, 0.45, 0.55, 0.65),
    "min_distance": (5, 10, 20, 40, 80),
}


def classical_labels(image: np.ndarray, params: ClassicalParams) -> np.ndarray:
    """Return cell labels of a raw EM image (dark membranes) without any network."""
    smoothed = ndi.gaussian_filter(contrast_gray(image), params.sigma)
    interior = smoothed > params.threshold
    distance = ndi.distance_transform_edt(interior)
    components, _ = ndi.label(interior)
    peaks = peak_local_max(
        distance, min_distance=params.min_distance, labels=components, exclude_border=False
    )
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(sobel(smoothed), markers, mask=interior)
    return drop_small(labels, params.min_area)


# --- (b) the old approach: 256 x 256 U-Net, Sobel, two-level markers ----------------------


@dataclass(frozen=True)
class OldPostParams:
    """Post-processing parameters of :func:`old_unet_labels`.

    Attributes
    ----------
    low : float
        Edge probability below which a pixel is confident interior (a cell marker).
    high : float
        Edge probability above which a pixel is confident wall (the background marker).
    min_area : int
        Cells with fewer pixels are dropped.
    """

    low: float = 0.3
    high: float = 0.7
    min_area: int = 16


OLD_GRID = {"low": (0.05, 0.1, 0.2, 0.3, 0.5), "high": (0.5, 0.7, 0.9), "min_area": (16, 64)}


def resize_image(image: np.ndarray, size: int = OLD_SIZE) -> np.ndarray:
    """Return a raw image resized to ``size x size`` (area-averaged), in its own dtype."""
    resized = resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    if np.issubdtype(image.dtype, np.integer):
        return np.rint(resized).astype(image.dtype)
    return resized.astype(image.dtype)


def resize_interior_mask(label: np.ndarray, size: int = OLD_SIZE) -> np.ndarray:
    """Return a 255/0 interior mask resized to ``size x size``, membranes kept.

    A pixel of the small mask is interior only when at least 3/4 of the area it
    covers is interior, so that thin membranes survive the downsampling.
    """
    fraction = resize((label != 0).astype(np.float32), (size, size), order=1, anti_aliasing=True)
    return np.where(fraction >= 0.75, 255, 0).astype(np.uint8)


def old_edge_probability(predictor, card, image: np.ndarray) -> np.ndarray:
    """Return the old approach's edge map: predicted at 256 x 256, resized back to ``image``."""
    from cellpipe.unet import model_input

    small = model_input(resize_image(image), card)
    edges = predictor(small, tile=OLD_SIZE, overlap=0, batch_size=1)
    return np.clip(resize(edges, image.shape, order=1), 0.0, 1.0).astype(np.float32)


def old_postprocess(edge_probability: np.ndarray, params: OldPostParams) -> np.ndarray:
    """Return labels from an edge map: Sobel elevation, two-level markers, watershed."""
    cells, n_cells = ndi.label(edge_probability < params.low)
    markers = np.where(cells > 0, cells + 1, 0).astype(np.int32)
    markers[edge_probability > max(params.high, params.low)] = 1  # one background marker
    labels = watershed(sobel(edge_probability), markers)
    labels = np.where(labels > 1, labels - 1, 0).astype(np.int32)
    return drop_small(labels, params.min_area)


def old_unet_labels(predictor, card, image: np.ndarray, params: OldPostParams) -> np.ndarray:
    """Return the old approach's labels of a raw image."""
    return old_postprocess(old_edge_probability(predictor, card, image), params)


def write_resized_dataset(slices: Sequence[Slice], out_dir: Path, size: int = OLD_SIZE) -> Path:
    """Write ``slices`` resized to ``size x size`` in the ``train/{image,label}`` layout."""
    for folder in ("image", "label"):
        (out_dir / "train" / folder).mkdir(parents=True, exist_ok=True)
    for item in slices:
        Image.fromarray(resize_image(item.image, size)).save(out_dir / "train" / "image" / f"{item.name}.png")
        Image.fromarray(resize_interior_mask(item.truth, size)).save(out_dir / "train" / "label" / f"{item.name}.png")
    return out_dir


def old_training_budget(default_card, budget_steps: int | None) -> dict:
    """Return the training settings of the old U-Net: those of the default model's card.

    The number of steps is the one the default model actually ran (``steps_run``, else
    epochs x steps), or ``budget_steps`` when given; epochs are whole rounds of the
    card's steps per epoch. The wall-time limit is dropped: on a shared machine it
    would not buy the same number of steps twice.
    """
    settings = default_card.training.get("settings", {})
    steps_per_epoch = int(settings.get("steps", 50))
    total = budget_steps or int(
        default_card.training.get("steps_run") or int(settings.get("epochs", 40)) * steps_per_epoch
    )
    steps_per_epoch = min(steps_per_epoch, total)
    return {
        "architecture": default_card.architecture.as_dict(),
        "epochs": max(1, math.ceil(total / steps_per_epoch)),
        "steps": steps_per_epoch,
        "batch_size": int(settings.get("batch_size", 4)),
        "crop": OLD_SIZE,
        "learning_rate": float(settings.get("learning_rate", 1e-3)),
        "dice_weight": float(settings.get("dice_weight", 1.0)),
        "patience": int(settings.get("patience", 15)),
        "seed": int(settings.get("seed", 0)),
        "train_ids": settings.get("train_ids") or "0-19",
        "val_ids": settings.get("val_ids") or "20-24",
    }


def train_old_unet(data_dir: Path, cache_dir: Path, budget: Mapping, log: Callable[[str], None] = print) -> Path:
    """Return the old approach's model, training it into ``cache_dir`` unless already there.

    The cache key is the budget plus the data folder, so a changed budget trains anew.
    """
    from cellpipe.unet import UNetConfig
    from cellpipe.unet.train import TrainConfig, train

    key = hashlib.sha256(json.dumps({**budget, "data": str(Path(data_dir).resolve())}, sort_keys=True).encode())
    folder = Path(cache_dir) / f"old-unet-{key.hexdigest()[:12]}"
    model_path = folder / "model.keras"
    if (folder / "done.json").exists():
        return model_path
    names = sorted({*_ids(budget["train_ids"]), *_ids(budget["val_ids"])}, key=int)
    dataset = write_resized_dataset(read_slices(data_dir, names), folder / "data")
    config = TrainConfig(
        data_dir=dataset,
        out=model_path,
        val_ids=budget["val_ids"],
        train_ids=budget["train_ids"],
        architecture=UNetConfig.from_dict(budget["architecture"]),
        epochs=budget["epochs"],
        steps=budget["steps"],
        batch_size=budget["batch_size"],
        crop=budget["crop"],
        learning_rate=budget["learning_rate"],
        dice_weight=budget["dice_weight"],
        patience=budget["patience"],
        seed=budget["seed"],
        command=f"benchmarks/bench_accuracy.py (old approach, {OLD_SIZE}x{OLD_SIZE} inputs)",
    )
    total = budget["epochs"] * budget["steps"]
    log(f"training the old approach's U-Net: {total} steps of {budget['batch_size']} crops → {folder}")

    def report(progress) -> None:
        if progress.validation is not None:
            log(f"  epoch {progress.epoch}: step {progress.step}/{total}, train loss {progress.loss:.4f}, "
                f"val loss {progress.validation['loss']:.4f}{' (best)' if progress.improved else ''}")

    result = train(config, on_progress=report)
    (folder / "done.json").write_text(json.dumps({"budget": dict(budget), "stopped": result.stopped}, indent=2))
    return model_path


def _ids(spec: str) -> list[str]:
    from cellpipe.unet.data import parse_ids

    return parse_ids(spec)


# --- tuning ---------------------------------------------------------------------------


def tune(
    segment: Callable[[int, object], np.ndarray],
    truths: Sequence[np.ndarray],
    defaults: object,
    grid: Mapping[str, Sequence],
) -> tuple[object, float]:
    """Return the parameters of ``grid`` with the best mean V_rand, and that V_rand.

    ``segment(i, params)`` returns the labels of slice ``i`` of ``truths``.
    """
    best, best_score = defaults, -math.inf
    for values in itertools.product(*grid.values()):
        params = dataclasses.replace(defaults, **dict(zip(grid, values)))
        score = evaluate_dataset(
            evaluate_pair(segment(i, params), truth) for i, truth in enumerate(truths)
        )["v_rand"]
        if score > best_score:
            best, best_score = params, score
    return best, best_score
