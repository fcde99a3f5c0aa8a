"""Checks of a U-Net training data folder: what is wrong, pair by pair, in plain words.

A good folder has, for every ``image/N.*``, a ``label/N.*`` of the same size that is
binary (0 on walls, one other value, normally 255, inside cells) and whose cells are
plausible: some cells, some walls, no specks, no cell that floods a large part of the
image (a wall left open), and more cell than wall.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage import measure

from cellpipe.io import ImageReadError, read_image
from cellpipe.unet.data import dataset_folders, natural_key
from cellpipe.unet.targets import BACKGROUND_VALUE

#: Suffixes of the files that are looked at as images or labels.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: Cells (not touching the image border) smaller than this many pixels are specks.
DEFAULT_MIN_CELL_AREA = 16
#: A cell covering more than this fraction of the image suggests a wall left open.
DEFAULT_MAX_CELL_FRACTION = 0.25
#: Walls covering more than this fraction of a label suggest cells and walls swapped.
DEFAULT_MAX_WALL_FRACTION = 0.6


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one pair.

    Attributes
    ----------
    name : str
        The pair's file stem (``"7"`` for ``image/7.png``).
    what : str
        Short kind: ``"missing label"``, ``"missing image"``, ``"unreadable"``,
        ``"size mismatch"``, ``"not binary"``, ``"no cells"``, ``"no walls"``,
        ``"specks"``, ``"flooded cell"``, ``"mostly wall"``.
    detail : str
        What exactly, and what to do about it.
    """

    name: str
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {self.what}: {self.detail}"


@dataclass
class DatasetCheck:
    """The result of :func:`check_dataset`.

    Attributes
    ----------
    data_dir : Path
    image_dir, label_dir : Path
    n_pairs : int
        Number of image/label pairs found (complete or not readable).
    problems : list of Problem
    """

    data_dir: Path
    image_dir: Path
    label_dir: Path
    n_pairs: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return True when no problem was found."""
        return not self.problems

    def report(self) -> str:
        """Return a readable report: a summary line, then one line per problem."""
        summary = (f"{self.data_dir}: {self.n_pairs} pair{'s' if self.n_pairs != 1 else ''} "
                   f"({self.image_dir.name}/ + {self.label_dir.name}/), ")
        if self.ok:
            return summary + "no problems found"
        lines = [summary + f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}:"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def check_dataset(
    data_dir: str | os.PathLike[str],
    *,
    min_cell_area: int = DEFAULT_MIN_CELL_AREA,
    max_cell_fraction: float = DEFAULT_MAX_CELL_FRACTION,
    max_wall_fraction: float = DEFAULT_MAX_WALL_FRACTION,
) -> DatasetCheck:
    """Return every problem found in the training data folder ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        A folder with ``train/image`` and ``train/label``, or ``image`` and ``label``.
    min_cell_area, max_cell_fraction, max_wall_fraction
        See :func:`check_label`.

    Raises
    ------
    FileNotFoundError
        When ``data_dir`` has neither layout.
    """
    data_dir = Path(data_dir)
    image_dir, label_dir = dataset_folders(data_dir)
    images, labels = _files_by_stem(image_dir), _files_by_stem(label_dir)
    names = sorted(set(images) | set(labels), key=natural_key)
    check = DatasetCheck(data_dir, image_dir, label_dir, n_pairs=len(set(images) & set(labels)))
    for name in names:
        if name not in labels:
            check.problems.append(Problem(name, "missing label", f"{images[name]} has no label in {label_dir}"))
            continue
        if name not in images:
            check.problems.append(Problem(name, "missing image", f"{labels[name]} has no image in {image_dir}"))
            continue
        check.problems += check_pair(name, images[name], labels[name], min_cell_area=min_cell_area,
                                     max_cell_fraction=max_cell_fraction, max_wall_fraction=max_wall_fraction)
    if not names:
        check.problems.append(Problem("(folder)", "no pairs", f"{image_dir} and {label_dir} hold no images"))
    return check


def check_pair(name: str, image_path: Path, label_path: Path, **limits) -> list[Problem]:
    """Return the problems of one image/label pair (``limits`` as for :func:`check_label`)."""
    try:
        image = read_image(image_path)
        label = read_image(label_path)
    except ImageReadError as error:
        return [Problem(name, "unreadable", str(error))]
    if image.shape != label.shape:
        return [Problem(name, "size mismatch", f"image {image_path.name} is {image.shape[1]} x "
                        f"{image.shape[0]} pixels but label {label_path.name} is {label.shape[1]} x "
                        f"{label.shape[0]}; the label must be drawn on the image itself")]
    return [Problem(name, what, detail) for what, detail in check_label(label, **limits)]


def check_label(
    label: np.ndarray,
    *,
    min_cell_area: int = DEFAULT_MIN_CELL_AREA,
    max_cell_fraction: float = DEFAULT_MAX_CELL_FRACTION,
    max_wall_fraction: float = DEFAULT_MAX_WALL_FRACTION,
) -> list[tuple[str, str]]:
    """Return ``(what, detail)`` for each problem of a training label.

    Cells are the 4-connected regions of non-zero pixels, as training sees them.

    Parameters
    ----------
    label : ndarray, shape (H, W)
        0 on walls, non-zero inside cells.
    min_cell_area : int
        Cells not touching the border with fewer pixels are reported as specks.
    max_cell_fraction : float
        A cell covering more of the image is reported as flooded (a wall left open).
    max_wall_fraction : float
        Walls covering more of the label suggest cells and walls swapped.
    """
    label = np.asarray(label)
    problems = []
    values = np.unique(label)
    cell_values = values[(values != 0) & (values != BACKGROUND_VALUE)]
    if len(cell_values) > 1:
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        problems.append(("not binary", f"{len(values)} different values ({shown}); a label holds only 0 "
                         "(walls), 255 (cells) and 128 (background, where there is no cell): paint with a hard "
                         "brush, no anti-aliasing, save as PNG"))
    inside = (label > 0) & (label != BACKGROUND_VALUE)
    if (label == BACKGROUND_VALUE).all():
        return problems + [("no cells", "the label is all background (128); cells must be white")]
    if not inside.any():
        return problems + [("no cells", "the label is all black (0); cells must be white")]
    if inside.all():
        return problems + [("no walls", "the label is all white; walls must be black (0)")]
    wall_fraction = float(np.mean(label == 0))
    if wall_fraction > max_wall_fraction:
        problems.append(("mostly wall", f"walls cover {wall_fraction:.0%} of the label: are cells and walls "
                         "swapped (cells must be white, walls black), or only a few cells labelled (everything "
                         "else then teaches the model 'wall')?"))
    cells = measure.label(inside, connectivity=1)
    regions = measure.regionprops(cells)
    height, width = label.shape
    specks = [r for r in regions if r.area < min_cell_area and not _touches_border(r.bbox, height, width)]
    if specks:
        row, col = (int(round(v)) for v in specks[0].centroid)
        problems.append(("specks", f"{len(specks)} of {len(regions)} cells are smaller than {min_cell_area} pixels "
                         f"(the first at row {row}, column {col}): stray paint, or gaps inside a wall"))
    largest = max(regions, key=lambda r: r.area)
    if largest.area > max_cell_fraction * label.size:
        row, col = (int(round(v)) for v in largest.centroid)
        problems.append(("flooded cell", f"one cell covers {largest.area / label.size:.0%} of the image (around "
                         f"row {row}, column {col}): a wall is probably not closed"))
    return problems


def _files_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


def _touches_border(bbox: tuple[int, int, int, int], height: int, width: int) -> bool:
    return bbox[0] == 0 or bbox[1] == 0 or bbox[2] == height or bbox[3] == width
