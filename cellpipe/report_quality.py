"""The report's quality sections: per-image figures and their trend per batch date, in µm when known.

Rows are those of :func:`cellpipe.db.report_queries.report_data` (``image_summary``
columns); an image whose pixel size is unknown shows its figures in pixels, marked so.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

#: Per-image figures shown, as (heading, µm column, px column).
QUALITY_FIGURES = (
    ("cells / mm²", "cells_per_mm2", None),
    ("mean chord x", "mean_chord_x_um", "mean_chord_x_px"),
    ("mean chord y", "mean_chord_y_um", "mean_chord_y_px"),
    ("anisotropy (y / x)", None, "anisotropy"),
    ("apparent cell size (ASTM D3576)", "apparent_cell_size_um", "apparent_cell_size_px"),
    ("wall fraction", None, "wall_fraction"),
    ("mean wall thickness", "mean_wall_thickness_um", "mean_wall_thickness_px"),
    ("D10", "d10_um", "d10_px"),
    ("D50", "d50_um", "d50_px"),
    ("D90", "d90_um", "d90_px"),
)

#: Trend columns per batch date, as (heading, column of a trend row).
TREND_FIGURES = (
    ("images with a pixel size", "n_calibrated"),
    ("cells / mm²", "cells_per_mm2"),
    ("apparent cell size (µm)", "apparent_cell_size_um"),
    ("D50 (µm)", "d50_um"),
    ("anisotropy", "anisotropy"),
    ("wall fraction", "wall_fraction"),
)


def quality_table(images: Sequence[Mapping[str, Any]], name_of, anchor_of) -> str:
    """Return the HTML table of every segmented image's quality figures (µm, else px)."""
    segmented = [row for row in images if row.get("segmentation_id") is not None]
    if not segmented:
        return ""
    header = "<tr><th>image</th><th>pixel size</th>" + "".join(
        f"<th>{html.escape(heading)}</th>" for heading, _, _ in QUALITY_FIGURES) + "</tr>"
    rows = []
    for row in segmented:
        size = row.get("pixel_size_um")
        size_text = "unknown" if size is None else f"{float(size):.4g} µm ({html.escape(str(row.get('pixel_size_source')))})"
        cells = "".join(f"<td class=\"num\">{_figure(row, um, px)}</td>" for _, um, px in QUALITY_FIGURES)
        rows.append(f"<tr><td><a href=\"#{anchor_of(row)}\">{html.escape(name_of(row))}</a></td>"
                    f"<td>{size_text}</td>{cells}</tr>")
    return ("<h2>Quality</h2><p class=\"muted\">Chords by line intercept over every row (x) and column (y); "
            "apparent cell size = mean chord / 0.616 (ASTM D3576); D10/D50/D90 of the equivalent diameter of "
            "the cells that do not touch the border. In µm where the image's pixel size is known, else in px."
            f"</p><table>{header}{''.join(rows)}</table>")


def quality_trends_table(trends: Sequence[Mapping[str, Any]]) -> str:
    """Return the HTML table of the mean quality figures (µm) per batch date and model."""
    if not trends:
        return ""
    header = "<tr><th>batch date</th><th>model</th>" + "".join(
        f"<th>{html.escape(heading)}</th>" for heading, _ in TREND_FIGURES) + "</tr>"
    rows = "".join(
        f"<tr><td>{html.escape(str(trend.get('batch_date')))}</td>"
        f"<td>{html.escape(str(trend.get('model_name')))} {html.escape(str(trend.get('model_version')))}</td>"
        + "".join(f"<td class=\"num\">{_number(trend.get(column))}</td>" for _, column in TREND_FIGURES)
        + "</tr>"
        for trend in trends
    )
    return ("<h2>Quality by batch date</h2><p class=\"muted\">Means over the images of each date; µm figures "
            f"over the images whose pixel size is known.</p><table>{header}{rows}</table>")


def _figure(row: Mapping[str, Any], um: str | None, px: str | None) -> str:
    if um is not None and row.get(um) is not None:
        return _number(row[um]) + ("" if um == "cells_per_mm2" else " µm")
    if px is not None and row.get(px) is not None:
        return _number(row[px]) + ("" if px in ("anisotropy", "wall_fraction") else " px")
    return "–"


def _number(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4g}"
