"""The generalist's training mix: every kind of cell image, at one cell scale, in one class map.

Sources (:func:`default_sources`) are real labelled sets in ``shared/data`` (ISBI 2012
EM membranes in the seed layout, the DSB 2018 nuclei subset and the GOWT1 nuclei as
instance masks) plus synthetic foam, tissue and nuclei drawn with random cell size, wall
width, noise and blur. Each source is split once into ``train``, ``val`` (checkpoint
selection and post-processing tuning) and ``test`` (only ever read by the final report).

Every image is rescaled so that its median cell diameter becomes
:data:`~cellpipe.unet.targets.TRAINING_DIAMETER`, then zoomed by a random factor in
``scale_range`` (0.5–2×), so the model knows cells around that size well and cells a
few times larger or smaller still; inference (:mod:`cellpipe.scale`) rescales each image
the same way. Contrast and colour are handled by augmentation, not by a per-image guess:
random inversion, random channel weights for colour images, gamma, contrast, noise, blur,
and stain-like blobs and streaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

from cellpipe.io import read_image
from cellpipe.preprocess import contrast_gray
from cellpipe.unet.targets import (
    BACKGROUND,
    BACKGROUND_VALUE,
    INTERIOR,
    N_CLASSES,
    TRAINING_DIAMETER,
    WALL,
    classes_from_instances,
    classes_from_label,
    instances_from_classes,
    median_diameter,
)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Source:
    """One kind of image in the mix and its fixed split.

    Attributes
    ----------
    name : str
        Short name used in reports (``"isbi"``, ``"dsb"``, ``"foam"``, ...).
    layout : {"seed", "instances", "synthetic"}
        ``seed``: ``image/N`` + ``label/N`` (0 wall, 128 background, else interior);
        ``instances``: ``images/N`` + ``masks/N`` (0 background, one value per cell);
        ``synthetic``: drawn by :func:`synthetic_pair` from the item's seed.
    root : Path or None
        Folder of a real source.
    splits : dict
        ``{"train": [...], "val": [...], "test": [...]}``: file stems, or for synthetic
        sources seeds as strings.
    weight : float
        Share of the training crops drawn from this source.
    """

    name: str
    layout: str
    root: Path | None
    splits: dict[str, tuple[str, ...]]
    weight: float = 1.0

    def items(self, split: str) -> tuple[str, ...]:
        """Return the items of ``split`` (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.splits.get(split, ())


def _seeds(first: int, count: int) -> tuple[str, ...]:
    return tuple(str(first + i) for i in range(count))


def default_sources(shared_data: str | Path) -> list[Source]:
    """Return the generalist's sources under ``shared_data`` (``../shared/data``) with their splits.

    The held-out (``test``) items were fixed before any model was trained and no choice
    is ever made on them: ISBI slices 20-24; DSB images 000 (fluorescence), 003 (stained
    brightfield) and 010 (large nuclei); GOWT1 frames 004-005; synthetic seeds 9000+.
    """
    shared_data = Path(shared_data)
    nuclei = shared_data / "nuclei"
    return [
        Source("isbi", "seed", shared_data / "isbi2012" / "train",
               {"train": tuple(str(i) for i in range(15)), "val": tuple(str(i) for i in range(15, 20)),
                "test": tuple(str(i) for i in range(20, 25))}, weight=0.25),
        Source("dsb", "instances", nuclei / "dsb2018_subset",
               {"train": ("001", "002", "004", "005", "006", "007", "008", "009"), "val": ("011",),
                "test": ("000", "003", "010")}, weight=0.2),
        Source("gowt1", "instances", nuclei / "ctc_fluo_n2dh_gowt1",
               {"train": ("000", "001", "002"), "val": ("003",), "test": ("004", "005")}, weight=0.1),
        Source("foam", "synthetic", None,
               {"train": _seeds(1000, 24), "val": _seeds(8000, 3), "test": _seeds(9000, 6)}, weight=0.15),
        Source("tissue", "synthetic", None,
               {"train": _seeds(2000, 24), "val": _seeds(8100, 3), "test": _seeds(9100, 6)}, weight=0.15),
        Source("nuclei-synthetic", "synthetic", None,
               {"train": _seeds(3000, 16), "val": _seeds(8200, 2), "test": _seeds(9200, 4)}, weight=0.15),
    ]


@dataclass(frozen=True, eq=False)
class ClassPair:
    """One training image and its class map, with the pyramid that crops are sampled from.

    Attributes
    ----------
    source, name : str
        Where it comes from.
    image : ndarray of float32, shape (H, W, C)
        C = 1: contrast gray image in [0, 1]; C = 3: an RGB image, each channel in [0, 1]
        (mixed to gray with random weights per crop).
    classes : ndarray of uint8, shape (H, W)
        Interior 0, wall 1, background 2.
    diameter : float
        Median equivalent diameter of the cells, pixels.
    """

    source: str
    name: str
    image: np.ndarray
    classes: np.ndarray
    diameter: float
    levels: list = field(default_factory=list, repr=False)

    def pyramid(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Return ``[(image, one_hot), ...]`` at 1, 1/2, 1/4, ... of the size (block means)."""
        if not self.levels:
            image = self.image
            one_hot = np.eye(N_CLASSES, dtype=np.float32)[self.classes]
            self.levels.append((image, one_hot))
            while min(image.shape[:2]) >= 64:
                image, one_hot = _halved(image), _halved(one_hot)
                self.levels.append((image, one_hot))
        return self.levels


def _halved(array: np.ndarray) -> np.ndarray:
    h, w = (array.shape[0] // 2) * 2, (array.shape[1] // 2) * 2
    a = array[:h, :w]
    return (0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])).astype(np.float32)


def synthetic_pair(source: str, seed: int, *, diameter: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(raw image, class map)`` of synthetic item ``seed`` of ``source``.

    Cell diameter (log-uniform 8-120 px unless given), wall width (1-10 px, at most a
    third of the diameter), polarity-bearing kind, noise and blur are drawn from ``seed``.
    """
    from cellpipe.synthetic import synthetic_cells
    from cellpipe.synthetic.nuclei import synthetic_nuclei

    rng = np.random.default_rng(seed)
    if diameter is None:
        diameter = float(np.exp(rng.uniform(np.log(8.0), np.log(120.0))))
    side = int(np.clip(12 * diameter, 256, 1024))
    if source == "nuclei-synthetic":
        image, instances = synthetic_nuclei(
            side, mean_diameter=max(diameter, 6.0), density=float(rng.uniform(0.15, 0.55)), seed=seed,
            blur_sigma=float(rng.uniform(0.3, 2.0)), noise=float(rng.uniform(0.01, 0.08)),
        )
        return image, classes_from_instances(instances)
    kind = "foam" if source == "foam" else "tissue"
    diameter = max(diameter, 8.0)
    max_wall = min(10.0, diameter / 3)
    low = float(np.exp(rng.uniform(0.0, np.log(max_wall))))
    wall = (low, float(rng.uniform(low, max_wall)))
    sample = synthetic_cells(
        side, kind=kind, mean_cell_diameter=diameter, wall_width=wall, seed=seed,
        blur_sigma=float(rng.uniform(0.0, 2.0)), noise=float(rng.uniform(0.01, 0.1)),
        irregularity=float(rng.uniform(0.2, 0.6)),
    )
    return sample.image, np.where(sample.labels == 0, WALL, INTERIOR).astype(np.uint8)


def load_item(source: Source, item: str, contrast=None) -> ClassPair:
    """Return item ``item`` of ``source`` as a :class:`ClassPair`."""
    raw, classes, cells = _item(source, item, _read_raw)
    if raw.ndim == 3:
        channels = np.stack([contrast_gray(raw[..., c], contrast) for c in range(3)], axis=-1)
    else:
        channels = contrast_gray(raw, contrast)[..., None]
    if raw.shape[:2] != classes.shape:
        raise ValueError(f"{source.name}/{item}: image {raw.shape[:2]} and labels {classes.shape} differ")
    diameter = median_diameter(cells)
    return ClassPair(source.name, item, np.ascontiguousarray(channels, np.float32), classes, diameter or TRAINING_DIAMETER)


def _item(source: Source, item: str, read) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The item's pixels as ``read`` gives them, its class map, and its cells: the instance
    # masks where the source has them (touching cells stay whole), else the interiors.
    if source.layout == "synthetic":
        raw, classes = synthetic_pair(source.name, int(item))
        return raw, classes, instances_from_classes(classes)
    if source.layout == "seed":
        label = read_image(_find(source.root / "label", item))
        classes = classes_from_label(label[..., 0] if label.ndim == 3 else label)
        return read(_find(source.root / "image", item)), classes, instances_from_classes(classes)
    if source.layout == "instances":
        masks = read_image(_find(source.root / "masks", item)).astype(np.int32)
        return read(_find(source.root / "images", item)), classes_from_instances(masks), masks
    raise ValueError(f"unknown source layout {source.layout!r}")


def _find(folder: Path, stem: str) -> Path:
    for path in sorted(folder.glob(f"{stem}.*")):
        return path
    raise FileNotFoundError(f"no file {stem}.* in {folder}")


def _read_raw(path: Path) -> np.ndarray:
    # Colour images keep their channels: training mixes them with random weights.
    from PIL import Image

    with Image.open(path) as opened:
        array = np.asarray(opened)
    if array.ndim == 3:
        array = array[..., :3]
        if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]):
            array = array[..., 0]
    return array


def scored_items(source: Source, split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Return ``(name, image, truth)`` of the ``split`` items of ``source``, as a user would have them.

    ``image`` is 2-D as :func:`cellpipe.io.read_image` reads the file (colour becomes
    luminance); ``truth`` holds one label per cell (0: wall or background).
    """
    items = []
    for name in source.items(split):
        image, _, truth = _item(source, name, read_image)
        items.append((name, image, truth))
    return items


def write_split(source: Source, split: str, out_dir: str | Path) -> Path:
    """Write the ``split`` items of ``source`` to ``out_dir`` in the seed layout; return ``out_dir``.

    ``out_dir/image/NAME.png`` holds the raw image (colour kept), ``out_dir/label/NAME.png``
    its classes as a seed-layout label: 255 interior, 0 wall, 128 background. This is how
    validation data reaches ``cellpipe model tune``.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    (out_dir / "image").mkdir(parents=True, exist_ok=True)
    (out_dir / "label").mkdir(parents=True, exist_ok=True)
    for item in source.items(split):
        raw, classes, _ = _item(source, item, _read_raw)
        label = np.select([classes == INTERIOR, classes == WALL], [255, 0], BACKGROUND_VALUE).astype(np.uint8)
        Image.fromarray(raw).save(out_dir / "image" / f"{item}.png")
        Image.fromarray(label).save(out_dir / "label" / f"{item}.png")
    return out_dir


@dataclass(frozen=True)
class MixAugmentation:
    """Random changes of every training crop; recorded in the card.

    Attributes
    ----------
    scale_range : (float, float)
        Random zoom of the cells around the training diameter (log-uniform).
    rotation, stretch, shear : float
        Largest extra rotation (degrees), anisotropic stretch and shear.
    invert : float
        Probability of inverting the gray crop (bright walls, dark nuclei, ...).
    gamma, contrast, brightness : float
        Largest log-gamma, relative contrast and additive brightness changes.
    noise : float
        Largest Gaussian noise standard deviation.
    blur : float
        Largest extra Gaussian blur (pixels), applied to a third of the crops.
    stains : float
        Probability of stain-like smooth blobs; streaks with half of it.
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    rotation: float = 180.0
    stretch: float = 0.1
    shear: float = 0.05
    invert: float = 0.5
    gamma: float = 0.5
    contrast: float = 0.3
    brightness: float = 0.1
    noise: float = 0.06
    blur: float = 1.5
    stains: float = 0.3


def normalised_view(pair: ClassPair, target: float = TRAINING_DIAMETER) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(gray, one_hot)`` of the whole pair rescaled so its cells have ``target`` diameter.

    Colour images are mixed with the luminance weights that :func:`cellpipe.io.read_image`
    uses. This is the view validation scores the model on.
    """
    image, one_hot, zoom = _level(pair, pair.diameter / target)
    height, width = (max(32, int(round(s / zoom))) for s in image.shape[:2])
    rows = (np.arange(height) + 0.5) * (image.shape[0] / height) - 0.5
    cols = (np.arange(width) + 0.5) * (image.shape[1] / width) - 0.5
    coords = np.stack(np.meshgrid(rows, cols, indexing="ij"))
    gray = _mix_gray(image, np.array([0.299, 0.587, 0.114]))
    gray = ndimage.map_coordinates(gray, coords, order=1, mode="mirror").astype(np.float32)
    hot = np.stack([ndimage.map_coordinates(one_hot[..., c], coords, order=1, mode="mirror") for c in range(N_CLASSES)], -1)
    return gray, hot.astype(np.float32)


def _level(pair: ClassPair, zoom: float) -> tuple[np.ndarray, np.ndarray, float]:
    # The pyramid level to sample a zoom from (never interpolating over more than 2 pixels
    # per output pixel, which would alias), and the zoom left to apply on it.
    levels = pair.pyramid()
    level = int(np.clip(math.floor(math.log2(max(zoom, 1.0))), 0, len(levels) - 1))
    image, one_hot = levels[level]
    return image, one_hot, zoom / 2**level


def _mix_gray(image: np.ndarray, weights: np.ndarray) -> np.ndarray:
    if image.shape[-1] == 1:
        return image[..., 0]
    gray = image @ weights.astype(np.float32)
    low, high = np.percentile(gray, (1.0, 99.0))
    return np.clip((gray - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)


def mix_crop(
    pair: ClassPair, crop: int, rng: np.random.Generator, augmentation: MixAugmentation,
    target: float = TRAINING_DIAMETER,
) -> tuple[np.ndarray, np.ndarray]:
    """Return one augmented ``crop x crop`` sample ``(gray, one_hot)`` of ``pair``."""
    low, high = augmentation.scale_range
    cell_zoom = math.exp(rng.uniform(math.log(low), math.log(high)))
    image, one_hot, zoom = _level(pair, pair.diameter / target / cell_zoom)
    angle = math.radians(rng.uniform(-augmentation.rotation, augmentation.rotation))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    stretch = np.diag(np.exp(rng.uniform(-1, 1, 2) * math.log1p(augmentation.stretch)))
    shear = np.array([[1.0, rng.uniform(-augmentation.shear, augmentation.shear)], [0.0, 1.0]])
    affine = zoom * rotation @ stretch @ shear
    height, width = image.shape[:2]
    reach = 0.5 * crop * float(np.abs(affine).sum(axis=1).max())
    centre = np.array([_centre(rng, height, reach), _centre(rng, width, reach)])
    half = (crop - 1) / 2.0
    grid = np.mgrid[0:crop, 0:crop].reshape(2, -1).astype(np.float64) - half
    coords = (affine @ grid + centre[:, None]).reshape(2, crop, crop)
    weights = rng.dirichlet(np.ones(3)) if image.shape[-1] == 3 else None
    gray = _mix_gray(image, weights if weights is not None else np.ones(1))
    gray = ndimage.map_coordinates(gray, coords, order=1, mode="mirror").astype(np.float32)
    hot = np.stack([ndimage.map_coordinates(one_hot[..., c], coords, order=1, mode="mirror") for c in range(N_CLASSES)], -1)
    hot = np.clip(hot, 0.0, 1.0)
    hot /= np.maximum(hot.sum(-1, keepdims=True), 1e-6)
    if rng.random() < 0.5:
        gray, hot = gray[:, ::-1], hot[:, ::-1]
    return np.ascontiguousarray(_intensity(gray, rng, augmentation)), np.ascontiguousarray(hot, np.float32)


def _centre(rng: np.random.Generator, size: int, reach: float) -> float:
    low, high = reach, size - 1 - reach
    return (size - 1) / 2.0 if high <= low else float(rng.uniform(low, high))


def _intensity(gray: np.ndarray, rng: np.random.Generator, augmentation: MixAugmentation) -> np.ndarray:
    if rng.random() < augmentation.invert:
        gray = 1.0 - gray
    if rng.random() < augmentation.stains:
        gray = gray + _stain_blobs(gray.shape, rng)
    if rng.random() < augmentation.stains / 2:
        gray = gray + _streaks(gray.shape, rng)
    if augmentation.blur > 0 and rng.random() < 1 / 3:
        gray = ndimage.gaussian_filter(gray, rng.uniform(0.3, augmentation.blur))
    mean = float(gray.mean())
    factor = 1.0 + rng.uniform(-augmentation.contrast, augmentation.contrast)
    gray = (gray - mean) * factor + mean + rng.uniform(-augmentation.brightness, augmentation.brightness)
    gray = np.clip(gray, 0.0, 1.0) ** math.exp(rng.uniform(-augmentation.gamma, augmentation.gamma))
    if augmentation.noise > 0:
        gray = gray + rng.normal(0.0, rng.uniform(0.0, augmentation.noise), gray.shape)
    return np.clip(gray, 0.0, 1.0).astype(np.float32)


def _stain_blobs(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    # Uneven stain: a few smooth bumps or dips, much wider than a cell wall.
    field_ = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        sigma = rng.uniform(0.1, 0.4) * max(shape)
        rows, cols = np.ogrid[: shape[0], : shape[1]]
        field_ += rng.uniform(-0.3, 0.3) * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * sigma**2))
    return field_


def _streaks(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    # Knife marks and stain streaks: long straight faint bands that are not walls.
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    offset = rng.uniform(-0.5, 0.5) * max(shape)
    distance = np.abs((rows - shape[0] / 2) * np.cos(angle) - (cols - shape[1] / 2) * np.sin(angle) - offset)
    width = rng.uniform(2.0, 8.0)
    return (rng.uniform(-0.2, 0.2) * np.exp(-0.5 * (distance / width) ** 2)).astype(np.float32)


def mix_batches(
    pairs: Sequence[ClassPair], weights: dict[str, float], *, crop: int, batch_size: int, seed: int,
    augmentation: MixAugmentation = MixAugmentation(),
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield endless ``(images (B, crop, crop, 1), one_hot (B, crop, crop, 3))`` batches.

    A source is picked by its weight, then one of its images uniformly; the sequence
    depends only on ``seed``.
    """
    by_source: dict[str, list[ClassPair]] = {}
    for pair in pairs:
        by_source.setdefault(pair.source, []).append(pair)
    names = sorted(by_source)
    p = np.array([weights.get(name, 1.0) for name in names], np.float64)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    while True:
        images = np.empty((batch_size, crop, crop, 1), np.float32)
        targets = np.empty((batch_size, crop, crop, N_CLASSES), np.float32)
        for i in range(batch_size):
            members = by_source[names[int(rng.choice(len(names), p=p))]]
            pair = members[int(rng.integers(len(members)))]
            images[i, ..., 0], targets[i] = mix_crop(pair, crop, rng, augmentation)
        yield images, targets


__all__ = [
    "BACKGROUND",
    "ClassPair",
    "MixAugmentation",
    "SPLITS",
    "Source",
    "default_sources",
    "load_item",
    "mix_batches",
    "mix_crop",
    "normalised_view",
    "scored_items",
    "synthetic_pair",
    "write_split",
]


def main(argv: list[str] | None = None) -> None:
    """``python -m cellpipe.unet.mix --split val --out DIR``: write a split of every source, one folder each."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cellpipe.unet.mix", description=main.__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--split", choices=SPLITS, default="val")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for source in default_sources(args.shared):
        print(write_split(source, args.split, args.out / source.name))


if __name__ == "__main__":
    main()
