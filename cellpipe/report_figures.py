"""The pictures of the HTML report: annotated overlays and matplotlib plots, as PNG files.

Plots use matplotlib's object-oriented API on the Agg canvas (no pyplot, no display,
no global state), so they can be drawn from any thread or batch job.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from cellpipe.overlay import overlay

#: Colour of the cell ids written on overlays.
ID_COLOUR = (0, 230, 255)
#: Cells must span at least this many display pixels for their ids to be written.
MIN_ID_SPACING = 14
#: Default longest side, in pixels, of an overlay picture.
DEFAULT_MAX_SIDE = 1024
#: Overlays of small images are enlarged (by whole factors, up to 4) towards this size.
PREFERRED_SIDE = 640
#: Trends over at most this many dates get one labelled tick per date.
MAX_DATE_TICKS = 10
_DPI = 100


def overlay_picture(
    image: np.ndarray,
    labels: np.ndarray,
    cells: Mapping[str, np.ndarray],
    *,
    max_side: int = DEFAULT_MAX_SIDE,
) -> tuple[np.ndarray, bool]:
    """Return an RGB picture of outlines, centroids and cell ids drawn on ``image``.

    Parameters
    ----------
    image, labels : ndarray, shape (H, W)
        The image and its label image (0 = wall, one value per cell).
    cells : mapping
        ``label``, ``centroid-0``, ``centroid-1`` and ``equivalent_diameter_area`` per cell.
    max_side : int
        Larger images are shrunk by a whole factor so that no side exceeds this; small
        ones are enlarged by a whole factor (up to 4) so that ids are legible.

    Returns
    -------
    picture : ndarray of uint8, shape (h, w, 3)
    with_ids : bool
        False when the cells are too small at this scale for their ids to be written.
    """
    image, labels = np.asarray(image), np.asarray(labels)
    if image.shape != labels.shape or image.ndim != 2:
        raise ValueError(f"image {image.shape} and labels {labels.shape} must be 2-D of one shape")
    longest = max(image.shape)
    shrink = max(1, math.ceil(longest / max_side))
    enlarge = max(1, min(4, PREFERRED_SIDE // longest)) if shrink == 1 else 1
    scale = enlarge / shrink
    centroids = np.column_stack([np.asarray(cells["centroid-0"], float), np.asarray(cells["centroid-1"], float)])
    # Pixel centres: position p in the full image is (p + 0.5) * scale - 0.5 on the picture.
    shown = (centroids + 0.5) / shrink - 0.5
    picture = overlay(image[::shrink, ::shrink], labels[::shrink, ::shrink], shown)
    if enlarge > 1:
        picture = np.repeat(np.repeat(picture, enlarge, axis=0), enlarge, axis=1)
    diameters = np.asarray(cells.get("equivalent_diameter_area", []), float)
    diameters = diameters[np.isfinite(diameters)]
    with_ids = bool(len(diameters)) and float(np.median(diameters)) * scale >= MIN_ID_SPACING
    if with_ids:
        picture = _write_ids(picture, (centroids + 0.5) * scale - 0.5, np.asarray(cells["label"]))
    return picture, with_ids


def save_png(path: str | os.PathLike[str], picture: np.ndarray) -> Path:
    """Write an RGB uint8 picture as PNG; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(picture)).save(path, format="PNG", optimize=True)
    return path


def cell_count_plot(path: str | os.PathLike[str], names: Sequence[str], counts: Sequence[int]) -> Path:
    """Write a bar chart of the number of cells per image; return the path."""
    height = max(2.5, 0.22 * len(names) + 1.2)
    figure = Figure(figsize=(7.5, min(height, 30.0)), dpi=_DPI)
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    axes.barh(positions, counts, color="#3b7dd8")
    axes.set_yticks(positions, [_shortened(n) for n in names], fontsize=7 if len(names) > 20 else 9)
    axes.invert_yaxis()
    axes.set_xlabel("cells")
    axes.set_title("Cells per image")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def distribution_plot(
    path: str | os.PathLike[str],
    values: Mapping[str, np.ndarray],
    *,
    quantity: str,
    unit: str,
) -> Path:
    """Write histograms of ``values`` (one series per model) of one quantity; return the path."""
    figure = Figure(figsize=(5.5, 3.6), dpi=_DPI)
    axes = figure.add_subplot()
    finite = {name: np.asarray(v, float)[np.isfinite(np.asarray(v, float))] for name, v in values.items()}
    everything = np.concatenate([v for v in finite.values()] or [np.zeros(0)])
    if everything.size:
        bins = np.histogram_bin_edges(everything, bins=min(60, max(10, int(np.sqrt(everything.size)))))
        for name, series in finite.items():
            axes.hist(series, bins=bins, alpha=0.6 if len(finite) > 1 else 0.9, label=f"{name} (n={series.size})")
        axes.axvline(float(np.median(everything)), color="black", linestyle="--", linewidth=1,
                     label=f"median {np.median(everything):.4g} {unit}")
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "no cells", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel(f"{quantity} ({unit})")
    axes.set_ylabel("cells")
    axes.set_title(f"Cell {quantity}")
    return _save(figure, path)


def trend_plot(path: str | os.PathLike[str], trends: Sequence[Mapping[str, Any]]) -> Path:
    """Write cells per image and mean diameter over batch dates, one line per model."""
    figure = Figure(figsize=(9.0, 3.6), dpi=_DPI)
    count_axes, diameter_axes = figure.subplots(1, 2)
    series: dict[str, list[Mapping[str, Any]]] = {}
    for trend in trends:
        if trend.get("model_name") is not None:
            series.setdefault(f"{trend['model_name']} {trend['model_version']}", []).append(trend)
    for name, points in series.items():
        dates = [_as_date(p["batch_date"]) for p in points]
        for axes, key in ((count_axes, "cells_per_image"), (diameter_axes, "diameter_mean")):
            values = [np.nan if p.get(key) is None else float(p[key]) for p in points]
            axes.plot(dates, values, marker="o", markersize=4, label=name)
    all_dates = sorted({_as_date(p["batch_date"]) for points in series.values() for p in points})
    for axes, title in ((count_axes, "Cells per image"), (diameter_axes, "Mean cell diameter (px)")):
        axes.set_title(title)
        if 0 < len(all_dates) <= MAX_DATE_TICKS:  # one tick per batch date, no hours
            axes.set_xticks(all_dates, [d.isoformat() for d in all_dates])
        else:
            locator = AutoDateLocator()
            axes.xaxis.set_major_locator(locator)
            axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.grid(alpha=0.3)
        axes.tick_params(axis="x", labelrotation=30, labelsize=8)
        if not series:
            axes.text(0.5, 0.5, "no segmentations", ha="center", va="center", transform=axes.transAxes)
    if series:
        count_axes.legend(fontsize=8)
    return _save(figure, path)


def _write_ids(picture: np.ndarray, positions: np.ndarray, ids: np.ndarray) -> np.ndarray:
    canvas = Image.fromarray(picture)
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)
    for (row, col), cell in zip(positions, ids):
        # Next to the centroid cross, not on it.
        pen.text((col + 3, row + 2), str(int(cell)), fill=ID_COLOUR, font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(canvas)


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _shortened(name: str, length: int = 40) -> str:
    return name if len(name) <= length else "…" + name[-(length - 1):]
