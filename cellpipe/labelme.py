"""Labelme annotation files ↔ label images.

Labelme (https://github.com/labelmeai/labelme) saves one JSON file per image::

    {"version": "5.4.1", "flags": {}, "shapes": [{"label": "cell", "points": [[x, y], ...],
     "group_id": null, "description": "", "shape_type": "polygon", "flags": {}, "mask": null},
     ...], "imagePath": "a.png", "imageData": "<base64 of the image file>" or null,
     "imageHeight": H, "imageWidth": W}

Coordinates
    Labelme's canvas draws pixel (row r, column c) over the square ``[c, c + 1) x
    [r, r + 1)``; a point ``[x, y]`` is a position on that canvas. Here a pixel belongs
    to a shape when its centre ``(c + 0.5, r + 0.5)`` lies inside, so a cell is exactly
    what the user saw inside the outline. (Labelme's own ``labelme_json_to_dataset``
    rasterises half a pixel up-left and adds the outline; the difference is at most one
    pixel along the edge.)

Cells
    Closed shapes are cells: ``polygon``, ``rectangle`` (two opposite corners),
    ``circle`` (centre and a point on the circle) and ``mask`` (bounding corners and a
    base64 PNG of the mask). Shapes with the same label and the same non-null
    ``group_id`` are one cell. Later shapes are drawn over earlier ones, as in Labelme.
    Points, lines and line strips are not cells and are skipped.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping

import numpy as np
from PIL import Image
from skimage import draw, measure

from cellpipe.io import ImageReadError, read_image

#: The Labelme version written into exported files (the format of Labelme 5.x).
LABELME_VERSION = "5.4.1"
#: Shape types that enclose an area, hence can be cells.
CELL_SHAPE_TYPES = ("polygon", "rectangle", "circle", "mask")
#: Default ``label`` of exported cells.
DEFAULT_CELL_LABEL = "cell"
#: Default largest distance, in pixels, between an exported polygon and the cell's outline.
DEFAULT_TOLERANCE = 0.5
#: The tolerance of a small cell is at most this fraction of its diameter.
SMALL_CELL_TOLERANCE = 0.025


class LabelmeError(ValueError):
    """A Labelme file cannot be used: not JSON, not Labelme's format, or its image is missing."""


@dataclass(frozen=True)
class LabelmeAnnotation:
    """The image and cells of one Labelme file.

    Attributes
    ----------
    image : ndarray, shape (H, W)
        The annotated image, gray (see :func:`cellpipe.io.read_image`).
    cells : ndarray of int32, shape (H, W)
        0 outside every shape, 1..N one value per cell, in the order of the shapes.
    image_source : str
        ``"embedded"`` (from ``imageData``) or the path the image was read from.
    skipped : list of str
        One line per shape that was not turned into a cell, saying why.
    """

    image: np.ndarray
    cells: np.ndarray
    image_source: str
    skipped: list[str] = field(default_factory=list)

    @property
    def n_cells(self) -> int:
        """Return the number of cells N."""
        return int(self.cells.max(initial=0))


def read_labelme(path: str | os.PathLike[str], *, cell_labels: Collection[str] | None = None) -> LabelmeAnnotation:
    """Return the image and the cells drawn in a Labelme JSON file.

    Parameters
    ----------
    path : str or Path
        A ``.json`` file saved by Labelme (any 4.x or 5.x version).
    cell_labels : collection of str, optional
        Only shapes with these labels are cells; default every closed shape.

    Returns
    -------
    LabelmeAnnotation

    Raises
    ------
    LabelmeError
        When the file is not Labelme JSON, or its image is neither embedded nor found
        at ``imagePath`` (relative to the JSON file) or next to the JSON file.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LabelmeError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
        raise LabelmeError(f"{path}: not a Labelme file (no list of 'shapes'); save it from Labelme")
    image, image_source = _annotated_image(document, path)
    cells, skipped = shapes_to_cells(document["shapes"], image.shape, cell_labels=cell_labels)
    return LabelmeAnnotation(image, cells, image_source, skipped)


def shapes_to_cells(
    shapes: list[Mapping[str, Any]],
    shape: tuple[int, int],
    *,
    cell_labels: Collection[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Return the cell label image drawn by Labelme ``shapes``, and the shapes skipped.

    Parameters
    ----------
    shapes : list of dict
        The ``shapes`` of a Labelme document.
    shape : (int, int)
        Height and width of the image.
    cell_labels : collection of str, optional
        Only shapes with these labels are cells; default every closed shape.

    Returns
    -------
    cells : ndarray of int32, shape ``shape``
        0 outside every shape, 1..N one value per cell (shapes of one group share one).
    skipped : list of str
        Why each skipped shape was skipped.
    """
    height, width = shape
    cells = np.zeros((height, width), np.int32)
    groups: dict[tuple[str, Any], int] = {}
    skipped: list[str] = []
    for index, item in enumerate(shapes):
        label = str(item.get("label", ""))
        kind = item.get("shape_type") or "polygon"
        where = f"shape {index} ({kind} {label!r})"
        if cell_labels is not None and label not in cell_labels:
            skipped.append(f"{where}: label not among {sorted(cell_labels)}")
            continue
        if kind not in CELL_SHAPE_TYPES:
            skipped.append(f"{where}: a {kind} encloses no area")
            continue
        try:
            rows, cols = _shape_pixels(item, kind, (height, width))
        except (ValueError, TypeError, KeyError, OSError) as error:
            skipped.append(f"{where}: {error}")
            continue
        if len(rows) == 0:
            skipped.append(f"{where}: covers no pixel centre")
            continue
        group_id = item.get("group_id")
        key = (label, group_id) if group_id is not None else ("", f"shape-{index}")
        value = groups.setdefault(key, len(groups) + 1)
        cells[rows, cols] = value
    return _renumbered(cells), skipped


def labels_to_shapes(
    labels: np.ndarray,
    *,
    label: str = DEFAULT_CELL_LABEL,
    tolerance: float = DEFAULT_TOLERANCE,
    descriptions: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Return one Labelme polygon per cell of a label image.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        0 for walls or background, one positive value per cell.
    label : str
        The ``label`` of every shape.
    tolerance : float
        Largest distance, in pixels, between the polygon and the cell's outline; larger
        values give fewer vertices to edit. Default :data:`DEFAULT_TOLERANCE`; never
        more than :data:`SMALL_CELL_TOLERANCE` times the cell's diameter, so that small
        cells keep their shape. 0 keeps every corner of the pixel outline (exact).
    descriptions : mapping of int to str, optional
        The ``description`` of each cell's shapes (Labelme shows it beside the shape),
        by cell value, e.g. why the cell should be checked; cells not in it get "".

    Returns
    -------
    list of dict
        Shapes as Labelme writes them, in order of cell value. A cell in several
        pieces gives one polygon per piece, sharing the cell's value as ``group_id``;
        holes in a cell are not kept.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} of shape {labels.shape}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    shapes = []
    for region in measure.regionprops(labels.astype(np.int64, copy=False)):
        pieces = measure.label(region.image, connectivity=2)
        n_pieces = int(pieces.max())
        for piece in range(1, n_pieces + 1):
            outline = _outer_contour(pieces == piece, tolerance)
            if outline is None:
                continue
            rows = outline[:, 0] + region.bbox[0] - 1 + 0.5  # -1: padding; +0.5: canvas coordinates
            cols = outline[:, 1] + region.bbox[1] - 1 + 0.5
            shape = _polygon(label, np.column_stack([cols, rows]), region.label if n_pieces > 1 else None)
            shape["description"] = (descriptions or {}).get(int(region.label), "")
            shapes.append(shape)
    return shapes


def labelme_document(
    shapes: list[dict[str, Any]],
    *,
    image_path: str,
    shape: tuple[int, int],
    image_data: bytes | None = None,
) -> dict[str, Any]:
    """Return a Labelme 5 document (a dict to save as JSON) with ``shapes``.

    Parameters
    ----------
    shapes : list of dict
        From :func:`labels_to_shapes`.
    image_path : str
        Path of the image relative to the folder of the JSON file.
    shape : (int, int)
        Height and width of the image.
    image_data : bytes, optional
        The image file's bytes, embedded as base64 ``imageData`` (Labelme's
        "Save With Image Data"); None leaves ``imageData`` null.
    """
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode("ascii") if image_data is not None else None,
        "imageHeight": int(shape[0]),
        "imageWidth": int(shape[1]),
    }


def write_labelme(path: str | os.PathLike[str], document: Mapping[str, Any]) -> Path:
    """Write ``document`` as Labelme does (UTF-8 JSON, indent 2); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(temporary, path)
    return path


def png_bytes(image: np.ndarray) -> bytes:
    """Return a gray uint8 or uint16 image as PNG file bytes (for ``imageData``)."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8 or uint16 image, got {image.dtype} of shape {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_storable(image: np.ndarray) -> tuple[np.ndarray, str]:
    """Return ``image`` as a gray uint8 or uint16 array for PNG, and a note when it had to change.

    Float images are rescaled from their minimum and maximum to 0..65535.
    """
    image = np.asarray(image)
    if image.dtype in (np.uint8, np.uint16):
        return image, ""
    low, high = float(np.min(image)), float(np.max(image))
    scaled = (np.asarray(image, np.float64) - low) / (high - low) if high > low else np.zeros(image.shape)
    return np.rint(scaled * 65535).astype(np.uint16), f"{image.dtype} image rescaled to 16 bits ({low:g}..{high:g})"


def _annotated_image(document: Mapping[str, Any], path: Path) -> tuple[np.ndarray, str]:
    data = document.get("imageData")
    if data:
        try:
            content = base64.b64decode(data, validate=False)
            return read_image(content, name=f"{path} (imageData)"), "embedded"
        except (ValueError, TypeError) as error:
            raise LabelmeError(f"{path}: the embedded image (imageData) cannot be read: {error}") from None
    image_path = document.get("imagePath")
    if not image_path:
        raise LabelmeError(f"{path}: neither imageData nor imagePath; save it from Labelme with its image")
    # As Labelme does: imagePath relative to the JSON file, else its file name next to it
    # (Windows paths use backslashes).
    candidates = [path.parent / str(image_path), path.parent / Path(str(image_path).replace("\\", "/")).name]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return read_image(candidate), str(candidate)
            except ImageReadError as error:
                raise LabelmeError(f"{path}: its image {candidate} cannot be read: {error}") from None
    raise LabelmeError(
        f"{path}: its image is not embedded and {image_path!r} was found neither at "
        f"{candidates[0]} nor at {candidates[1]}; copy the image next to the JSON file or save "
        "it from Labelme with 'Save With Image Data'"
    )


def _shape_pixels(item: Mapping[str, Any], kind: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the (rows, columns) of the pixels whose centres lie inside a shape."""
    points = np.asarray(item.get("points", []), dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError("its points are not a list of [x, y] pairs")
    # Pixel centres lie at integer positions in (row, column) after this shift.
    cols, rows = points[:, 0] - 0.5, points[:, 1] - 0.5
    if kind == "polygon":
        if len(points) < 3:
            raise ValueError(f"a polygon needs 3 or more points, it has {len(points)}")
        return draw.polygon(rows, cols, shape)
    if kind == "rectangle":
        if len(points) == 2:  # two opposite corners
            rows = np.array([rows[0], rows[0], rows[1], rows[1]])
            cols = np.array([cols[0], cols[1], cols[1], cols[0]])
        elif len(points) != 4:
            raise ValueError(f"a rectangle needs 2 corner points, it has {len(points)}")
        return draw.polygon(rows, cols, shape)
    if kind == "circle":
        if len(points) != 2:
            raise ValueError(f"a circle needs 2 points (centre, point on the circle), it has {len(points)}")
        radius = float(np.hypot(rows[1] - rows[0], cols[1] - cols[0]))
        return draw.disk((rows[0], cols[0]), radius, shape=shape)
    # mask: its top-left corner and a PNG of the pixels from there
    if not item.get("mask") or len(points) < 1:
        raise ValueError("a mask shape needs its mask and its top-left point")
    piece = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["mask"])))).astype(bool)
    if piece.ndim == 3:
        piece = piece[..., 0]
    piece_rows, piece_cols = np.nonzero(piece)
    piece_rows, piece_cols = piece_rows + int(points[0, 1]), piece_cols + int(points[0, 0])
    inside = (piece_rows >= 0) & (piece_rows < shape[0]) & (piece_cols >= 0) & (piece_cols < shape[1])
    return piece_rows[inside], piece_cols[inside]


def _outer_contour(piece: np.ndarray, tolerance: float) -> np.ndarray | None:
    padded = np.pad(piece, 1).astype(np.float32)
    contours = measure.find_contours(padded, 0.5, fully_connected="high")
    if not contours:
        return None
    outline = _corners(max(contours, key=_enclosed_area))
    if tolerance > 0 and len(outline) > 3:
        # Small cells get a smaller tolerance, so that they keep their shape.
        diameter = 2.0 * np.sqrt(np.count_nonzero(piece) / np.pi)
        outline = _simplified(outline, min(tolerance, SMALL_CELL_TOLERANCE * diameter))
    return outline if len(outline) >= 3 else None


def _simplified(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Return the vertices of a closed polygon kept by Douglas-Peucker with ``tolerance``."""
    far = int(np.argmax(((ring - ring[0]) ** 2).sum(axis=1)))
    chain = np.vstack([ring, ring[:1]])
    keep = np.zeros(len(chain), dtype=bool)
    keep[[0, far, len(ring)]] = True
    pending = [(0, far), (far, len(ring))]
    while pending:
        start, end = pending.pop()
        if end - start < 2:
            continue
        inner = chain[start + 1:end]
        direction = chain[end] - chain[start]
        length = float(np.hypot(*direction))
        offset = inner - chain[start]
        if length > 0:
            distance = np.abs(direction[0] * offset[:, 1] - direction[1] * offset[:, 0]) / length
        else:
            distance = np.hypot(offset[:, 0], offset[:, 1])
        worst = int(np.argmax(distance))
        if distance[worst] > tolerance:
            split = start + 1 + worst
            keep[split] = True
            pending += [(start, split), (split, end)]
    return chain[:-1][keep[:-1]]


def _corners(contour: np.ndarray) -> np.ndarray:
    """Return the vertices of a closed contour where its direction changes (no points lost in shape)."""
    if len(contour) > 1 and np.array_equal(contour[0], contour[-1]):
        contour = contour[:-1]
    if len(contour) < 3:
        return contour
    incoming = contour - np.roll(contour, 1, axis=0)
    outgoing = np.roll(contour, -1, axis=0) - contour
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
    return contour[np.abs(turn) > 1e-9]


def _enclosed_area(contour: np.ndarray) -> float:
    rows, cols = contour[:, 0], contour[:, 1]
    return 0.5 * abs(float(np.dot(rows, np.roll(cols, 1)) - np.dot(cols, np.roll(rows, 1))))


def _polygon(label: str, points_xy: np.ndarray, group_id: int | None) -> dict[str, Any]:
    # The keys and their order of Labelme 5's saveLabels().
    return {
        "label": label,
        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in points_xy],
        "group_id": None if group_id is None else int(group_id),
        "description": "",
        "shape_type": "polygon",
        "flags": {},
        "mask": None,
    }


def _renumbered(cells: np.ndarray) -> np.ndarray:
    """Return ``cells`` with values 1..N in order of first appearance in the shapes."""
    present = np.unique(cells)
    present = present[present > 0]
    lookup = np.zeros(int(cells.max(initial=0)) + 1, np.int32)
    lookup[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    return lookup[cells]
