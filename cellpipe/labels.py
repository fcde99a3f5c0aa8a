"""Hand labels → U-Net training data: ``image/N.png`` and ``label/N.png`` pairs.

A training label is 255 inside cells and 0 on cell walls and background (see
:mod:`cellpipe.unet.data`). Cells come from Labelme files (:mod:`cellpipe.labelme`) or
from walls painted by hand (:mod:`cellpipe.painted`); walls between touching cells are
drawn ``edge_width`` pixels wide.

Every pair written is recorded in ``DATA_DIR/mapping.csv`` (:data:`MAPPING_COLUMNS`):
which source file became which N, what it was, and how it was converted. Converting a
source again (for example after correcting it in Labelme) overwrites its own N.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Collection, Iterable

import numpy as np
from scipy import ndimage
from skimage import measure, segmentation

from cellpipe.io import ImageReadError, read_image, read_labels_tiff, write_png
from cellpipe.labelme import (
    DEFAULT_CELL_LABEL,
    DEFAULT_TOLERANCE,
    labelme_document,
    labels_to_shapes,
    png_bytes,
    png_storable,
    read_labelme,
    write_labelme,
)
from cellpipe.painted import DEFAULT_BLACK_LEVEL, fill_strokes, painted_cells

#: Default width, in pixels, of the wall drawn between two touching cells.
DEFAULT_EDGE_WIDTH = 2
#: Name of the mapping file in the data folder.
MAPPING_NAME = "mapping.csv"
#: Columns of the mapping file.
MAPPING_COLUMNS = ("n", "source", "kind", "source_sha256", "image_from", "n_cells", "edge_width",
                   "converted_at", "note")
#: Suffixes of image files that can be painted labels or training images.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: Endings of painted file names that are removed to find the original image's name.
PAINTED_SUFFIXES = ("_painted", "_edges", "_walls", "_labels", "_label", "_mask")


class LabelConversionError(ValueError):
    """A source file cannot be turned into a training pair; the message says why."""


@dataclass(frozen=True)
class ConvertedPair:
    """One training pair written from one source: a row of the mapping file."""

    n: int
    source: str
    kind: str
    source_sha256: str
    image_from: str
    n_cells: int
    edge_width: int | str
    converted_at: str
    note: str = ""


def training_label(cells: np.ndarray, edge_width: int = DEFAULT_EDGE_WIDTH) -> np.ndarray:
    """Return the training label of a cell image: 255 inside cells, 0 on walls.

    Parameters
    ----------
    cells : ndarray of int, shape (H, W)
        0 for walls or background, one positive value per cell.
    edge_width : int
        Width in pixels (along rows and columns) of the wall drawn where two cells, or a
        cell and the background, meet. 0 draws none: only the 0 pixels are walls.

    Examples
    --------
    >>> cells = np.array([[1, 1, 2, 2]])
    >>> training_label(cells, edge_width=2).tolist()
    [[255, 0, 0, 255]]
    """
    cells = np.asarray(cells)
    if cells.ndim != 2 or cells.dtype.kind not in "iub":
        raise ValueError(f"cells must be a 2-D integer array, got {cells.dtype} of shape {cells.shape}")
    if isinstance(edge_width, bool) or int(edge_width) != edge_width or edge_width < 0:
        raise ValueError(f"edge_width must be an integer >= 0, got {edge_width!r}")
    inside = cells > 0
    if edge_width > 0:
        # A window of edge_width + 1 pixels that sees two values marks edge_width pixels
        # across each boundary, split between its two sides.
        size = int(edge_width) + 1
        inside &= ndimage.maximum_filter(cells, size=size, mode="nearest") == ndimage.minimum_filter(
            cells, size=size, mode="nearest")
    return np.where(inside, np.uint8(255), np.uint8(0))


class TrainingSet:
    """A training data folder that pairs are added to, numbered 0, 1, 2, ...

    Pairs go to ``DATA_DIR/train/image`` and ``DATA_DIR/train/label`` when that layout
    exists, else to ``DATA_DIR/image`` and ``DATA_DIR/label``; the mapping file is
    ``DATA_DIR/mapping.csv``.
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        root = self.data_dir / "train" if (self.data_dir / "train" / "image").is_dir() else self.data_dir
        self.image_dir, self.label_dir = root / "image", root / "label"
        self.mapping_path = self.data_dir / MAPPING_NAME
        self._rows = {int(row["n"]): row for row in read_mapping(self.mapping_path)}

    def add(self, source: str | os.PathLike[str], image: np.ndarray, label: np.ndarray, **record) -> ConvertedPair:
        """Write ``image`` and ``label`` as pair N of ``source`` and record it; return the row.

        ``record`` holds the other :class:`ConvertedPair` fields (kind, image_from,
        n_cells, edge_width, note).
        """
        source_path = Path(source).resolve()
        n = self._number_of(str(source_path))
        image, note = png_storable(image)
        write_png(self.image_dir / f"{n}.png", image)
        write_png(self.label_dir / f"{n}.png", label)
        pair = ConvertedPair(
            n=n, source=str(source_path), source_sha256=_sha256(source_path),
            converted_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **{**record, "note": "; ".join(filter(None, [record.get("note", ""), note]))},
        )
        self._rows[n] = {key: str(value) for key, value in asdict(pair).items()}
        self._write_mapping()
        return pair

    def _number_of(self, source: str) -> int:
        for n, row in self._rows.items():
            if row["source"] == source:
                return n
        taken = set(self._rows)
        for folder in (self.image_dir, self.label_dir):
            if folder.is_dir():
                taken.update(int(p.stem) for p in folder.iterdir() if re.fullmatch(r"\d+", p.stem))
        return max(taken, default=-1) + 1

    def _write_mapping(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=MAPPING_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows[n] for n in sorted(self._rows))
        self.mapping_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.mapping_path.with_name(f".{MAPPING_NAME}.tmp")
        temporary.write_text(text.getvalue(), encoding="utf-8")
        os.replace(temporary, self.mapping_path)


def read_mapping(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Return the rows of a mapping file (none when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def convert_labelme(
    path: str | os.PathLike[str],
    training_set: TrainingSet,
    *,
    edge_width: int = DEFAULT_EDGE_WIDTH,
    cell_labels: Collection[str] | None = None,
) -> ConvertedPair:
    """Add the image and cells of a Labelme file to ``training_set``; return its mapping row.

    Raises
    ------
    LabelConversionError
        When the file cannot be read (see :func:`cellpipe.labelme.read_labelme`) or
        holds no cell.
    """
    try:
        annotation = read_labelme(path, cell_labels=cell_labels)
    except ValueError as error:
        raise LabelConversionError(str(error)) from None
    if annotation.n_cells == 0:
        raise LabelConversionError(f"{path}: no cell drawn ({'; '.join(annotation.skipped) or 'no shapes'})")
    label = training_label(annotation.cells, edge_width)
    note = f"{len(annotation.skipped)} shapes skipped" if annotation.skipped else ""
    return training_set.add(path, annotation.image, label, kind="labelme", image_from=annotation.image_source,
                            n_cells=annotation.n_cells, edge_width=edge_width, note=note)


def convert_painted(
    path: str | os.PathLike[str],
    training_set: TrainingSet,
    *,
    original: str | os.PathLike[str] | None = None,
    edge_width: int | None = DEFAULT_EDGE_WIDTH,
    black_level: int = DEFAULT_BLACK_LEVEL,
) -> ConvertedPair:
    """Add a painted-walls image and its original image to ``training_set``; return its row.

    Parameters
    ----------
    path : str or Path
        Black strokes painted on white, or on a copy of the image.
    original : str or Path, optional
        The image that was labelled. Required for a painting on white; for a painting
        on the image it makes stroke detection exact, and without it the training image
        is the painting with its strokes filled in from the pixels next to them.
    edge_width : int or None
        Wall width between cells in the label; None keeps the strokes as painted.
    black_level : int
        See :func:`cellpipe.painted.painted_strokes`.
    """
    try:
        painting = read_image(path)
        original_image = read_image(original) if original is not None else None
        if original_image is not None and original_image.shape != painting.shape:
            raise ValueError(f"{path} is {painting.shape[1]} x {painting.shape[0]} pixels but its original "
                             f"{original} is {original_image.shape[1]} x {original_image.shape[0]}")
        found = painted_cells(painting, original_image, black_level=black_level)
    except ValueError as error:
        raise LabelConversionError(str(error)) from None
    if found.n_cells == 0:
        raise LabelConversionError(f"{path}: no region enclosed by black strokes")
    if original_image is not None:
        image, image_from = original_image, str(Path(original).resolve())
    elif found.canvas == "white":
        raise LabelConversionError(
            f"{path} is black strokes on white: give the image it labels (--originals DIR, same file name)")
    else:
        image, image_from = fill_strokes(painting, found.strokes), "painting with strokes filled in"
    if edge_width is None:
        label = np.where(found.cells > 0, np.uint8(255), np.uint8(0))
    else:
        label = training_label(segmentation.expand_labels(found.cells, distance=max(found.cells.shape)), edge_width)
    return training_set.add(path, image, label, kind=f"painted on {found.canvas}", image_from=image_from,
                            n_cells=found.n_cells, edge_width="as painted" if edge_width is None else edge_width)


def read_cells(path: str | os.PathLike[str]) -> np.ndarray:
    """Return the cells of a label file, one value per cell.

    An integer label TIFF (``cellpipe segment``'s ``<stem>_labels.tif``) is taken as it
    is; a binary label (a training ``label/N.png``: white cells, black walls) gives one
    cell per 4-connected white region.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            is_tiff = file.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
        labels = read_labels_tiff(path) if is_tiff else read_image(path)
    except (OSError, ValueError) as error:
        raise LabelConversionError(f"{path}: not a readable label image ({error})") from None
    if labels.dtype.kind not in "iu":
        raise LabelConversionError(f"{path}: label images hold integers, this one holds {labels.dtype}")
    if len(np.unique(labels)) <= 2:
        return measure.label(labels > 0, connectivity=1).astype(np.int32)
    return labels


def find_image_for_labels(labels_path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path | None:
    """Return the image in ``folder`` that ``labels_path`` labels: same stem, without ``_labels``."""
    labels_path = Path(labels_path)
    stem = labels_path.stem.removesuffix("_labels")
    for candidate in sorted(Path(folder).iterdir()):
        if (candidate.stem == stem and candidate.suffix.lower() in IMAGE_SUFFIXES and candidate.is_file()
                and candidate.resolve() != labels_path.resolve()):
            return candidate
    return None


def export_labelme(
    labels_path: str | os.PathLike[str],
    image_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    embed: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    label: str = DEFAULT_CELL_LABEL,
) -> tuple[Path, int]:
    """Write the cells of a label file as a Labelme file ``OUT/<stem>.json``; return it and the cell count.

    Parameters
    ----------
    labels_path : str or Path
        See :func:`read_cells`.
    image_path : str or Path
        The labelled image; ``imagePath`` refers to it relative to ``out_dir``.
    out_dir : str or Path
        Created when missing.
    embed : bool
        Embed the image as PNG (``imageData``), so the file opens on its own.
    tolerance, label
        See :func:`cellpipe.labelme.labels_to_shapes`.
    """
    labels_path, image_path, out_dir = Path(labels_path), Path(image_path), Path(out_dir)
    cells = read_cells(labels_path)
    try:
        image = read_image(image_path)
    except ImageReadError as error:
        raise LabelConversionError(str(error)) from None
    if image.shape != cells.shape:
        raise LabelConversionError(f"{labels_path} is {cells.shape[1]} x {cells.shape[0]} pixels but its image "
                                   f"{image_path} is {image.shape[1]} x {image.shape[0]}")
    shapes = labels_to_shapes(cells, label=label, tolerance=tolerance)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = labelme_document(
        shapes, image_path=os.path.relpath(image_path.resolve(), out_dir.resolve()), shape=image.shape,
        image_data=png_bytes(png_storable(image)[0]) if embed else None)
    path = write_labelme(out_dir / f"{labels_path.stem.removesuffix('_labels')}.json", document)
    return path, len(np.unique(cells[cells > 0]))


def find_original(painted: str | os.PathLike[str], originals_dir: str | os.PathLike[str]) -> Path | None:
    """Return the image in ``originals_dir`` that the painting ``painted`` labels, if any.

    Matches the file name without its suffix, then without one of
    :data:`PAINTED_SUFFIXES` (``a_painted.png`` labels ``a.tif``).
    """
    stem = Path(painted).stem
    stems = [stem] + [stem[: -len(end)] for end in PAINTED_SUFFIXES if stem.endswith(end) and len(stem) > len(end)]
    candidates = {p.stem: p for p in sorted(Path(originals_dir).iterdir())
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    return next((candidates[s] for s in stems if s in candidates), None)


def label_sources(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Return ``(file, "labelme" | "painted")`` for the sources named by ``paths``.

    Files are taken as they are. In a folder, ``.json`` files are Labelme files and
    images are paintings, except images that a Labelme file of the folder annotates
    (same name, or its ``imagePath``).
    """
    sources: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if path.is_file():
            sources.append((path, "labelme" if path.suffix.lower() == ".json" else "painted"))
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        annotations = [p for p in files if p.suffix.lower() == ".json"]
        annotated = {_key(p) for p in annotations} | {_key(_annotated_image(p)) for p in annotations}
        sources += [(p, "labelme") for p in annotations]
        sources += [(p, "painted") for p in files
                    if p.suffix.lower() in IMAGE_SUFFIXES and _key(p) not in annotated]
    return sources


def _annotated_image(annotation: Path) -> Path:
    """Return the image file a Labelme file names (itself when it names none)."""
    try:
        image_path = json.loads(annotation.read_text(encoding="utf-8")).get("imagePath")
    except (OSError, ValueError, AttributeError):
        return annotation
    return annotation.parent / str(image_path).replace("\\", "/") if image_path else annotation


def _key(path: Path) -> tuple[Path, str]:
    return path.parent.resolve(), path.stem


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
