"""Training data for the U-Net: image/label pairs on disk and augmented random crops.

The layout users already have::

    DATA_DIR/train/image/0.png   DATA_DIR/train/label/0.png   (or DATA_DIR/image, DATA_DIR/label)

A label is 255 (any value but 0 and 128) inside cells, 0 on cell walls and 128 on
background (pixels of no cell; old label images have none). The edge model's target is
everything that is not cell interior: ``label == 0`` or ``label == 128``. The three-class
generalist (:mod:`cellpipe.unet.mix`) keeps walls and background apart, and also reads
instance masks (``images/`` + ``masks/``, 0 = background). Images and labels are paired
by file stem.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

from cellpipe.unet.targets import BACKGROUND_VALUE

IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}


@dataclass(frozen=True)
class TrainingPair:
    """One training image and its edge target.

    Attributes
    ----------
    name : str
        File stem shared by the image and its label (``"0"`` for ``0.png``).
    image : ndarray of float32, shape (H, W)
        Contrast gray image in [0, 1], dark cell walls.
    edges : ndarray of float32, shape (H, W)
        1 on cell walls, 0 inside cells.
    """

    name: str
    image: np.ndarray
    edges: np.ndarray


def dataset_folders(data_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return the ``(image_dir, label_dir)`` of a training data folder.

    Accepts ``DATA_DIR/train/{image,label}`` and ``DATA_DIR/{image,label}``.

    Raises
    ------
    FileNotFoundError
        When neither layout is found under ``data_dir``.
    """
    data_dir = Path(data_dir)
    for root in (data_dir / "train", data_dir):
        if (root / "image").is_dir() and (root / "label").is_dir():
            return root / "image", root / "label"
    raise FileNotFoundError(
        f"{data_dir} holds no training data: expected folders {data_dir}/train/image and "
        f"{data_dir}/train/label (or {data_dir}/image and {data_dir}/label) with images and "
        "labels of the same file names"
    )


def natural_key(name: str) -> tuple:
    """Return a sort key that orders ``"2"`` before ``"10"``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def list_pairs(data_dir: str | os.PathLike[str]) -> list[tuple[str, Path, Path]]:
    """Return ``(name, image_path, label_path)`` for every image that has a label, naturally sorted.

    Raises
    ------
    FileNotFoundError
        When the folder has no image with a matching label.
    """
    image_dir, label_dir = dataset_folders(data_dir)
    labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    names = sorted(set(images) & set(labels), key=natural_key)
    if not names:
        raise FileNotFoundError(f"no image in {image_dir} has a label of the same name in {label_dir}")
    return [(name, images[name], labels[name]) for name in names]


def parse_ids(spec: str) -> list[str]:
    """Return the image names listed by ``spec``: comma-separated names and ``A-B`` ranges.

    Examples
    --------
    >>> parse_ids("20-22,7")
    ['20', '21', '22', '7']
    """
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if last < first:
                raise ValueError(f"id range {part!r} runs backwards")
            names.extend(str(i) for i in range(first, last + 1))
        else:
            names.append(part)
    if not names:
        raise ValueError(f"id list {spec!r} names no image")
    return names


def split_names(
    names: Sequence[str], *, val_ids: str | None = None, val_fraction: float = 0.2
) -> tuple[list[str], list[str]]:
    """Return ``(train_names, validation_names)``: ``val_ids`` held out, else the last ``val_fraction``.

    With ``val_fraction`` and two or more images, at least one image is held out; the
    last ones in natural order are taken, because neighbouring slices of a stack are
    alike and would leak into validation if picked at random.

    Raises
    ------
    ValueError
        When ``val_ids`` names an image that is not in ``names``, or nothing is left to train on.
    """
    if val_ids is not None:
        held_out = parse_ids(val_ids)
        missing = sorted(set(held_out) - set(names), key=natural_key)
        if missing:
            raise ValueError(f"validation ids {missing} name no image/label pair")
    elif val_fraction > 0 and len(names) > 1:
        count = max(1, round(val_fraction * len(names)))
        held_out = list(names[len(names) - count :])
    else:
        held_out = []
    train = [name for name in names if name not in set(held_out)]
    if not train:
        raise ValueError(f"no training images left after holding out {held_out}")
    return train, [name for name in names if name in set(held_out)]


def load_pair(name: str, image_path: Path, label_path: Path, contrast=None, *, invert: bool = False) -> TrainingPair:
    """Return the training pair read from ``image_path`` and ``label_path``.

    Parameters
    ----------
    contrast : cellpipe.preprocess.ContrastParams, optional
        How to make the contrast gray image; ``None`` uses preprocess's defaults.
    invert : bool
        Invert the contrast gray image (for images whose cell walls are bright).
    """
    from cellpipe.io import read_image
    from cellpipe.preprocess import contrast_gray

    raw = read_image(image_path)
    label = read_image(label_path)
    if label.ndim == 3:  # an RGB(A) label drawn in an editor
        label = label[..., 0]
    if raw.shape[:2] != label.shape:
        raise ValueError(f"label {label_path} is {label.shape} but image {image_path} is {raw.shape[:2]}")
    image = contrast_gray(raw, contrast).astype(np.float32)
    if invert:
        image = 1.0 - image
    not_interior = (label == 0) | (label == BACKGROUND_VALUE)
    return TrainingPair(name, np.ascontiguousarray(image), not_interior.astype(np.float32))


@dataclass(frozen=True)
class Augmentation:
    """Random transformations applied to every training crop.

    Attributes
    ----------
    flips, rotate90 : bool
        Random horizontal/vertical flips and multiples of 90-degree rotations.
    rotation : float
        Largest extra rotation, degrees.
    scale : float
        Largest relative zoom in or out.
    shear : float
        Largest shear factor.
    elastic : float
        Standard deviation, in pixels, of the smooth elastic displacement field.
    elastic_spacing : int
        Distance, in pixels, between independent elastic displacements.
    brightness, contrast : float
        Largest additive brightness shift and relative contrast change.
    gamma : float
        Largest log-gamma change.
    noise : float
        Standard deviation of added Gaussian noise.
    """

    flips: bool = True
    rotate90: bool = True
    rotation: float = 15.0
    scale: float = 0.1
    shear: float = 0.05
    elastic: float = 2.0
    elastic_spacing: int = 32
    brightness: float = 0.08
    contrast: float = 0.2
    gamma: float = 0.25
    noise: float = 0.02

    @classmethod
    def none(cls) -> "Augmentation":
        """Return an augmentation that only crops."""
        return cls(False, False, 0.0, 0.0, 0.0, 0.0, 32, 0.0, 0.0, 0.0, 0.0)


def augmented_crop(
    pair: TrainingPair, crop: int, rng: np.random.Generator, augmentation: Augmentation
) -> tuple[np.ndarray, np.ndarray]:
    """Return one ``crop x crop`` (image, edges) sample drawn at random from ``pair``.

    The crop is sampled through a random affine map plus a smooth elastic displacement,
    mirrored at the image border, so every output pixel has a source.
    """
    height, width = pair.image.shape
    affine = _random_affine(rng, augmentation)
    # Keep the warped crop inside the image where the image is large enough.
    reach = 0.5 * crop * float(np.abs(affine).sum(axis=1).max())
    centre = np.array(
        [_uniform_centre(rng, height, reach), _uniform_centre(rng, width, reach)], dtype=np.float64
    )
    # Align the crop to the pixel grid, so that an identity warp copies pixels unblurred.
    half = (crop - 1) / 2.0
    centre = np.round(centre - half) + half
    grid = np.mgrid[0:crop, 0:crop].reshape(2, -1).astype(np.float64) - half
    coords = affine @ grid + centre[:, None]
    if augmentation.elastic > 0:
        coords += _elastic_field(rng, crop, augmentation).reshape(2, -1)
    coords = coords.reshape(2, crop, crop)
    image = ndimage.map_coordinates(pair.image, coords, order=1, mode="mirror").astype(np.float32)
    edges = ndimage.map_coordinates(pair.edges, coords, order=1, mode="mirror").astype(np.float32)
    if augmentation.rotate90:
        turns = int(rng.integers(4))
        image, edges = np.rot90(image, turns), np.rot90(edges, turns)
    if augmentation.flips and rng.random() < 0.5:
        image, edges = image[:, ::-1], edges[:, ::-1]
    image = _random_intensity(image, rng, augmentation)
    return np.ascontiguousarray(image), np.ascontiguousarray(np.clip(edges, 0.0, 1.0))


def _uniform_centre(rng: np.random.Generator, size: int, reach: float) -> float:
    low, high = reach, size - 1 - reach
    if high <= low:
        return (size - 1) / 2.0
    return float(rng.uniform(low, high))


def _random_affine(rng: np.random.Generator, augmentation: Augmentation) -> np.ndarray:
    angle = math.radians(rng.uniform(-augmentation.rotation, augmentation.rotation))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    zoom = np.diag(np.exp(rng.uniform(-1, 1, size=2) * math.log1p(augmentation.scale)))
    shear = np.array([[1.0, rng.uniform(-augmentation.shear, augmentation.shear)], [0.0, 1.0]])
    return rotation @ zoom @ shear


def _elastic_field(rng: np.random.Generator, crop: int, augmentation: Augmentation) -> np.ndarray:
    # Independent displacements on a coarse grid, interpolated cubically: smooth and cheap.
    knots = crop // augmentation.elastic_spacing + 2
    coarse = rng.normal(0.0, augmentation.elastic, size=(2, knots, knots))
    return np.stack([ndimage.zoom(c, crop / knots, order=3, grid_mode=True, mode="grid-mirror") for c in coarse])


def _random_intensity(image: np.ndarray, rng: np.random.Generator, augmentation: Augmentation) -> np.ndarray:
    if augmentation.contrast > 0 or augmentation.brightness > 0:
        mean = float(image.mean())
        factor = 1.0 + rng.uniform(-augmentation.contrast, augmentation.contrast)
        shift = rng.uniform(-augmentation.brightness, augmentation.brightness)
        image = (image - mean) * factor + mean + shift
    if augmentation.gamma > 0:
        image = np.clip(image, 0.0, 1.0) ** np.exp(rng.uniform(-augmentation.gamma, augmentation.gamma))
    if augmentation.noise > 0:
        image = image + rng.normal(0.0, augmentation.noise, size=image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def random_batches(
    pairs: Sequence[TrainingPair],
    *,
    crop: int,
    batch_size: int,
    seed: int,
    augmentation: Augmentation = Augmentation(),
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield endless ``(images, edges)`` batches of shape ``(batch_size, crop, crop, 1)``.

    Images are picked with probability proportional to their area; the sequence depends
    only on ``seed``.
    """
    if not pairs:
        raise ValueError("no training pairs to draw crops from")
    rng = np.random.default_rng(seed)
    areas = np.array([p.image.size for p in pairs], dtype=np.float64)
    weights = areas / areas.sum()
    while True:
        images = np.empty((batch_size, crop, crop, 1), np.float32)
        edges = np.empty((batch_size, crop, crop, 1), np.float32)
        for i in range(batch_size):
            pair = pairs[int(rng.choice(len(pairs), p=weights))]
            images[i, ..., 0], edges[i, ..., 0] = augmented_crop(pair, crop, rng, augmentation)
        yield images, edges
