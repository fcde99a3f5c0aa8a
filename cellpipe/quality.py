"""Per-image quality figures that foam and tissue labs report, from a label image.

:func:`image_quality` returns them in pixels; the database (view ``image_summary``) and
:func:`quality_in_micrometres` turn them into µm with the image's pixel size.

- **Mean chord length** by line intercept (ASTM D3576), along every row (``x``) and every
  column (``y``) of the label image: see :func:`mean_chords`.
- **Apparent cell size**, ASTM D3576 (Standard Test Method for Cell Size of Rigid
  Cellular Plastics), section "Calculation": ``d = t / 0.616``, where ``t`` is the mean
  chord length; 0.616 converts the mean intercept of a section through cells into the
  cell size, assuming the tetrakaidecahedral cells of the standard. Here ``t`` is the
  mean of the x and y chords (the standard averages the directions it measures).
- **Anisotropy**: ``chord_y / chord_x`` (1 for isotropic cells; 1.5 for cells
  stretched 1.5 times along the rows' perpendicular, the y axis).
- **Wall fraction**: the share of pixels that are wall or background (label 0).
- **Mean wall thickness**: ``2 d - 1`` averaged over the ridge of the wall's distance
  transform (wall pixels whose distance ``d`` to the nearest cell pixel is at least
  that of their four neighbours): exact for walls an odd number of pixels wide, one
  pixel short for even widths, and thicker at junctions, as every medial-axis measure.
- **Size percentiles** D10, D50, D90 of ``equivalent_diameter_area``, of the cells that
  do not touch the image border (a cut cell looks smaller than it is) and, as ``*_all``,
  of every cell.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage

from cellpipe.feret import feret_diameters

#: ASTM D3576: apparent cell size = mean chord length / this.
D3576_CHORD_PER_CELL_SIZE = 0.616

#: Percentiles of the equivalent diameter reported, as column suffixes.
SIZE_PERCENTILES = {"d10": 10.0, "d50": 50.0, "d90": 90.0}

#: Figures :func:`image_quality` returns (all in pixels, or plain numbers), in order.
QUALITY_COLUMNS = (
    "n_cells", "n_border_cells", "image_area_px", "crossings_x", "crossings_y", "mean_chord_x_px",
    "mean_chord_y_px", "anisotropy", "apparent_cell_size_px", "wall_fraction", "mean_wall_thickness_px",
    "d10_px", "d50_px", "d90_px", "d10_all_px", "d50_all_px", "d90_all_px",
)


def mean_chords(labels) -> tuple[float | None, float | None, int, int]:
    """Return ``(chord_x, chord_y, crossings_x, crossings_y)``: mean chord lengths by line intercept.

    Every row (x) and every column (y) of ``labels`` is a test line. A wall crossing is
    counted where the line passes from one cell into another, through wall pixels (0)
    or directly; its position is the middle of the wall run. The analysed part of each
    line runs from its first crossing to its last, so the chords the image border cuts
    are not counted: ``t = sum of (last - first crossing) / sum of (crossings - 1)``
    over the lines (ASTM D3576's line length over intersections, without the border's
    bias of about one chord per line). A direction without two crossings on one line
    has no chord (None).

    Examples
    --------
    >>> labels = np.repeat([[1, 1, 1, 0, 2, 2, 2, 0, 3, 3, 3, 0, 4]], 3, axis=0)
    >>> mean_chords(labels)[0], mean_chords(labels)[2]   # walls at 3.5, 7.5, 11.5
    (4.0, 9)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    chord_x, crossings_x = _mean_chord_along_rows(labels)
    chord_y, crossings_y = _mean_chord_along_rows(np.ascontiguousarray(labels.T))
    return chord_x, chord_y, crossings_x, crossings_y


def _mean_chord_along_rows(labels: np.ndarray) -> tuple[float | None, int]:
    rows, cols = np.nonzero(labels)  # row-major: each row's cell pixels left to right
    values = labels[rows, cols]
    same_row = rows[1:] == rows[:-1]
    crossing = same_row & (values[1:] != values[:-1])
    line = rows[1:][crossing]
    # Wall between pixel a and the next cell pixel b spans [a + 1, b): its middle.
    position = (cols[:-1][crossing] + 1 + cols[1:][crossing]) / 2.0
    if line.size == 0:
        return None, 0
    first = np.ones(line.size, bool)
    first[1:] = line[1:] != line[:-1]
    last = np.ones(line.size, bool)
    last[:-1] = first[1:]
    length = float(position[last].sum() - position[first].sum())
    intervals = int(line.size - np.count_nonzero(first))
    return (length / intervals if intervals else None), int(line.size)


def mean_wall_thickness(labels) -> float | None:
    """Return the mean wall thickness in pixels, from the distance transform of the wall (0) pixels.

    See the module docstring; None when the image has no wall pixel or no cell.

    Examples
    --------
    >>> labels = np.ones((5, 9), np.int32)
    >>> labels[:, 5:] = 2
    >>> labels[:, 3:6] = 0                                 # a wall 3 pixels wide
    >>> mean_wall_thickness(labels)
    3.0
    """
    wall = np.asarray(labels) == 0
    if not wall.any() or wall.all():
        return None
    distance = ndimage.distance_transform_edt(wall)
    padded = np.pad(distance, 1)
    centre = padded[1:-1, 1:-1]
    ridge = wall & (centre >= padded[:-2, 1:-1]) & (centre >= padded[2:, 1:-1]) \
        & (centre >= padded[1:-1, :-2]) & (centre >= padded[1:-1, 2:])
    return float((2 * distance[ridge] - 1).mean())


def image_quality(labels, cells: Mapping[str, np.ndarray]) -> dict[str, float | int | None]:
    """Return the quality figures of :data:`QUALITY_COLUMNS` for one label image, in pixels.

    Parameters
    ----------
    labels : (M, N) array of int
        0 = wall or background, one value per cell.
    cells : mapping
        Its per-cell table (:func:`cellpipe.measure.regionprops_table`):
        ``equivalent_diameter_area`` and ``touches_border`` are used.

    Returns
    -------
    dict
        ``n_cells``, ``n_border_cells``, ``image_area_px`` (M x N), ``crossings_x`` /
        ``_y`` and ``mean_chord_x_px`` / ``_y_px`` (:func:`mean_chords`),
        ``anisotropy``, ``apparent_cell_size_px`` (ASTM D3576), ``wall_fraction``,
        ``mean_wall_thickness_px`` (:func:`mean_wall_thickness`), ``d10_px``,
        ``d50_px``, ``d90_px`` (cells off the border) and ``d10_all_px``... (every
        cell). Figures that cannot be computed (no chord, no cell) are None.
    """
    labels = np.asarray(labels)
    chord_x, chord_y, crossings_x, crossings_y = mean_chords(labels)
    diameters = np.asarray(cells["equivalent_diameter_area"], dtype=np.float64)
    border = np.asarray(cells["touches_border"], dtype=bool)
    figures: dict[str, float | int | None] = {
        "n_cells": int(diameters.size),
        "n_border_cells": int(np.count_nonzero(border)),
        "image_area_px": int(labels.size),
        "crossings_x": crossings_x,
        "crossings_y": crossings_y,
        "mean_chord_x_px": chord_x,
        "mean_chord_y_px": chord_y,
        "anisotropy": chord_y / chord_x if chord_x and chord_y else None,
        "apparent_cell_size_px": ((chord_x + chord_y) / 2 / D3576_CHORD_PER_CELL_SIZE
                                  if chord_x and chord_y else None),
        "wall_fraction": float(np.count_nonzero(labels == 0) / labels.size) if labels.size else None,
        "mean_wall_thickness_px": mean_wall_thickness(labels),
    }
    for suffix, chosen in (("px", diameters[~border]), ("all_px", diameters)):
        for name, percent in SIZE_PERCENTILES.items():
            figures[f"{name}_{suffix}"] = float(np.percentile(chosen, percent)) if chosen.size else None
    return {name: figures[name] for name in QUALITY_COLUMNS}


#: Quality figures in pixels, and the power of the pixel size that makes them µm.
QUALITY_MICROMETRES = {
    "mean_chord_x_um": ("mean_chord_x_px", 1), "mean_chord_y_um": ("mean_chord_y_px", 1),
    "apparent_cell_size_um": ("apparent_cell_size_px", 1), "mean_wall_thickness_um": ("mean_wall_thickness_px", 1),
    "d10_um": ("d10_px", 1), "d50_um": ("d50_px", 1), "d90_um": ("d90_px", 1),
    "d10_all_um": ("d10_all_px", 1), "d50_all_um": ("d50_all_px", 1), "d90_all_um": ("d90_all_px", 1),
}


def quality_in_micrometres(figures: Mapping[str, float | int | None],
                           pixel_size_um: float | None) -> dict[str, float | None]:
    """Return ``cells_per_mm2`` and the µm figures of ``figures``; all None when the pixel size is unknown.

    Examples
    --------
    >>> quality_in_micrometres({"n_cells": 4, "image_area_px": 10000, "mean_chord_x_px": 20.0}, 2.0)["cells_per_mm2"]
    100.0
    """
    known = pixel_size_um is not None
    values: dict[str, float | None] = {
        "cells_per_mm2": (figures["n_cells"] / (figures["image_area_px"] * pixel_size_um ** 2) * 1e6
                          if known and figures.get("image_area_px") else None),
    }
    for name, (pixels, power) in QUALITY_MICROMETRES.items():
        value = figures.get(pixels)
        values[name] = value * pixel_size_um ** power if known and value is not None else None
    return values


def cells_and_quality(labels, cells: Mapping[str, np.ndarray]
                      ) -> tuple[dict[str, np.ndarray], dict[str, float | int | None]]:
    """Return the per-cell table with its Feret diameters added, and the image's quality figures (pixels).

    What the batch and ``cellpipe segment`` store and write for every segmented image:
    ``cells`` (from :func:`cellpipe.measure.regionprops_table`) gains
    ``feret_diameter_max`` and ``feret_diameter_min`` (:func:`cellpipe.feret.feret_diameters`)
    before ``touches_border``; the figures are :func:`image_quality`'s.
    """
    feret = feret_diameters(labels, cells)
    names = [name for name in cells if name != "touches_border"]
    table = {name: cells[name] for name in names}
    table.update(feret)
    if "touches_border" in cells:
        table["touches_border"] = cells["touches_border"]
    return table, image_quality(labels, table)
