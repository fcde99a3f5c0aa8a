"""Cell walls painted by hand → cells.

Scientists label cells by painting the cell walls black in a paint program, either on a
white canvas or on a copy of the image itself. This module finds the painted strokes
and the cells they enclose:

- on white (most pixels that are not strokes are pure white): a stroke is every pixel
  darker than mid-gray, so anti-aliased brush edges count;
- on the image: a stroke is every pure-black pixel (up to ``black_level``). When the
  original image is given, a stroke is every pixel that the painting changed and left
  dark, which no pure-black pixel of the image itself can be confused with.

Cells are the 4-connected regions between strokes, so a diagonal one-pixel stroke
separates them. Dark spots of the image inside a cell do no harm: a region enclosed by
strokes counts, not the colour of its pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import measure, segmentation

#: Gray value at or below which an 8-bit pixel painted on the image counts as black.
DEFAULT_BLACK_LEVEL = 8
#: Fraction of non-black pixels that must be pure white for a painting to be "on white".
WHITE_CANVAS_FRACTION = 0.9
#: Regions between strokes smaller than this many pixels are specks, not cells.
DEFAULT_MIN_CELL_AREA = 4


@dataclass(frozen=True)
class PaintedCells:
    """The strokes and cells found in a painting.

    Attributes
    ----------
    strokes : ndarray of bool, shape (H, W)
        The painted wall pixels.
    cells : ndarray of int32, shape (H, W)
        0 on strokes (and specks), 1..N one value per enclosed region.
    canvas : str
        ``"white"`` or ``"image"``: what the strokes were painted on.
    """

    strokes: np.ndarray
    cells: np.ndarray
    canvas: str

    @property
    def n_cells(self) -> int:
        """Return the number of cells N."""
        return int(self.cells.max(initial=0))


def painted_canvas(painted: np.ndarray, *, black_level: int = DEFAULT_BLACK_LEVEL) -> str:
    """Return ``"white"`` when ``painted`` is strokes on white, else ``"image"``."""
    gray = _as_8bit(painted)
    unpainted = gray[gray > black_level]
    if unpainted.size == 0:
        return "image"
    return "white" if np.mean(unpainted >= 250) >= WHITE_CANVAS_FRACTION else "image"


def painted_strokes(
    painted: np.ndarray,
    original: np.ndarray | None = None,
    *,
    canvas: str | None = None,
    black_level: int = DEFAULT_BLACK_LEVEL,
) -> np.ndarray:
    """Return the bool mask of the strokes painted in ``painted``.

    Parameters
    ----------
    painted : ndarray, shape (H, W)
        The painting, gray (as :func:`cellpipe.io.read_image` returns it).
    original : ndarray, shape (H, W), optional
        The image the strokes were painted on, when they were painted on a copy of it.
    canvas : {"white", "image"}, optional
        What the strokes were painted on; default: decided by :func:`painted_canvas`.
    black_level : int
        8-bit gray value at or below which a pixel painted on the image is black.
        Default :data:`DEFAULT_BLACK_LEVEL` (room for JPEG noise around pure black).
    """
    gray = _as_8bit(painted)
    canvas = canvas or painted_canvas(painted, black_level=black_level)
    if canvas not in ("white", "image"):
        raise ValueError(f"canvas must be 'white' or 'image', got {canvas!r}")
    if canvas == "white":
        return gray < 128
    black = gray <= black_level
    if original is None:
        return black
    original_gray = _as_8bit(original)
    if original_gray.shape != gray.shape:
        raise ValueError(f"the painting is {gray.shape} but the original image is {original_gray.shape}")
    return black & (np.abs(gray.astype(np.int16) - original_gray.astype(np.int16)) > black_level)


def painted_cells(
    painted: np.ndarray,
    original: np.ndarray | None = None,
    *,
    canvas: str | None = None,
    black_level: int = DEFAULT_BLACK_LEVEL,
    min_cell_area: int = DEFAULT_MIN_CELL_AREA,
) -> PaintedCells:
    """Return the strokes painted in ``painted`` and the cells they enclose.

    Parameters
    ----------
    painted, original, canvas, black_level
        As for :func:`painted_strokes`.
    min_cell_area : int
        Regions between strokes with fewer pixels are specks (gaps inside a thick
        stroke) and are not cells. Default :data:`DEFAULT_MIN_CELL_AREA`.

    Examples
    --------
    >>> painting = np.full((5, 9), 255, np.uint8); painting[:, 4] = 0
    >>> painted_cells(painting, canvas="white").n_cells
    2
    """
    painted = np.asarray(painted)
    if painted.ndim != 2:
        raise ValueError(f"expected a 2-D gray painting, got shape {painted.shape}")
    canvas = canvas or painted_canvas(painted, black_level=black_level)
    strokes = painted_strokes(painted, original, canvas=canvas, black_level=black_level)
    cells = measure.label(~strokes, connectivity=1).astype(np.int32)
    if min_cell_area > 1 and cells.max() > 0:
        areas = np.bincount(cells.ravel())
        small = areas < min_cell_area
        small[0] = False
        cells[small[cells]] = 0
        cells, _, _ = segmentation.relabel_sequential(cells)
    return PaintedCells(strokes, cells.astype(np.int32), canvas)


def fill_strokes(image: np.ndarray, strokes: np.ndarray) -> np.ndarray:
    """Return ``image`` with every stroke pixel replaced by its nearest unpainted pixel.

    Used to recover a training image from strokes painted on a copy of it, when the
    original is not at hand; thin strokes leave little trace, wide ones a visible seam.
    """
    image = np.asarray(image)
    strokes = np.asarray(strokes, dtype=bool)
    if image.shape != strokes.shape:
        raise ValueError(f"image {image.shape} and strokes {strokes.shape} must have one shape")
    if not strokes.any() or strokes.all():
        return image.copy()
    _, (rows, cols) = ndimage.distance_transform_edt(strokes, return_indices=True)
    return image[rows, cols]


def _as_8bit(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype.kind == "f":
        return np.clip(np.rint(np.asarray(image, np.float64) * (255.0 if image.max(initial=0) <= 1 else 1.0)),
                       0, 255).astype(np.uint8)
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    raise ValueError(f"unsupported pixel type {image.dtype}; expected uint8, uint16 or float")
