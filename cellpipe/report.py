"""A static HTML report of segmentation results: look at the cells before trusting numbers.

:func:`write_report` turns plain data (see :func:`cellpipe.db.report_queries.report_data`)
into a folder::

    OUT/index.html                 summary, plots, models, parameters, runs, one section per image
    OUT/images/*.png               overlays and plots, linked relatively

The folder is self-contained: zip it and mail it. Each overlay shows cell outlines,
centroids and ids on the image; when an image or its labels cannot be read, the report
says so in place of the picture. A small script in the page counts pictures that failed
to load and shows a warning (and ``data-broken`` on ``#image-check``) when any did.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import unquote, urlparse

import numpy as np

from cellpipe import __version__
from cellpipe.io import read_image, read_labels_tiff
from cellpipe.report_quality import quality_table, quality_trends_table
from cellpipe.report_review import review_table
from cellpipe.report_figures import (
    DEFAULT_MAX_SIDE,
    cell_count_plot,
    distribution_plot,
    overlay_picture,
    save_png,
    trend_plot,
)

#: Default number of images that get an overlay; the others are listed without one.
DEFAULT_MAX_OVERLAYS = 50
IMAGES_FOLDER = "images"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; } .muted { color: #666; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.plots img, figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figure { margin: 0 0 2em; } figcaption { font-size: 0.9em; color: #444; }
.missing { background: #fff4e5; border: 1px solid #f0b35a; padding: 0.6em 1em; }
#image-check { background: #fde8e8; border: 1px solid #d33; padding: 0.6em 1em; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; }
"""

# Counts pictures that did not load (also read by the tests through the DOM).
_IMAGE_CHECK = """
<script>
window.addEventListener("load", function () {
  var pictures = Array.prototype.slice.call(document.images);
  var broken = pictures.filter(function (img) { return !img.complete || img.naturalWidth === 0; });
  var note = document.getElementById("image-check");
  note.setAttribute("data-images", String(pictures.length));
  note.setAttribute("data-broken", String(broken.length));
  if (broken.length) {
    note.hidden = false;
    note.textContent = broken.length + " of " + pictures.length +
      " pictures failed to load: keep the images folder next to index.html.";
  }
});
</script>
"""


def write_report(
    out_dir: str | os.PathLike[str],
    data: Mapping[str, Any],
    *,
    max_overlays: int = DEFAULT_MAX_OVERLAYS,
    max_side: int = DEFAULT_MAX_SIDE,
    read_uri: Callable[[str], bytes] | None = None,
) -> Path:
    """Write the HTML report of ``data`` into ``out_dir``; return the path of index.html.

    Parameters
    ----------
    out_dir : str or Path
        Created when missing; ``index.html`` and ``images/`` are (over)written.
    data : mapping
        ``selection`` (``title``), ``images``, ``trends``, ``models``, ``parameters``
        and ``runs`` as returned by :func:`cellpipe.db.report_queries.report_data`.
        Each image has ``source_uri``, ``label_uri``, ``batch_date``, ``status``,
        ``last_error``, ``model_name``, ``model_version``, ``param_hash``,
        ``segmentation_id``, ``n_cells``, ``area_mean``, ``diameter_mean`` and ``cells``
        (arrays ``label``, ``centroid-0``, ``centroid-1``, ``area``,
        ``equivalent_diameter_area``); missing keys show as blanks. Images with a
        ``mean_confidence`` (and ``low_confidence_cells``) are listed, least confident
        first, in the "to review" section. A run's
        ``summary["duplicates"]`` (``name``, ``duplicate_of``) are listed as duplicate files.
    max_overlays : int
        Images beyond this many are listed without an overlay.
    max_side : int
        Longest side of an overlay picture in pixels.
    read_uri : callable, optional
        Returns the bytes at a URI; default reads local paths and ``file://`` URIs only.
    """
    out_dir = Path(out_dir)
    (out_dir / IMAGES_FOLDER).mkdir(parents=True, exist_ok=True)
    read_uri = read_uri or read_local_file
    images = list(data.get("images", []))
    segmented = [row for row in images if row.get("segmentation_id") is not None]
    sections = [
        _header(data, images, segmented),
        _plots(out_dir, segmented, data.get("trends", [])),
        _summary_table(images),
        review_table(images, _image_name, _anchor, batch_date=data.get("selection", {}).get("batch_date")),
        quality_table(images, _image_name, _anchor),
        quality_trends_table(data.get("trends", [])),
        _models_section(data.get("models", []), data.get("parameters", []), data.get("runs", [])),
        _duplicates_section(data.get("runs", [])),
        "<h2>Images</h2>",
        *(_image_section(out_dir, row, index < max_overlays, max_side, read_uri) for index, row in enumerate(images)),
    ]
    title = html.escape(f"cellpipe report: {data.get('selection', {}).get('title', '')}")
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body>\n<p id=\"image-check\" hidden></p>\n"
            + "\n".join(sections) + _IMAGE_CHECK + "</body></html>\n")
    index = out_dir / "index.html"
    temporary = out_dir / ".index.html.tmp"
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, index)
    return index


def read_local_file(uri: str) -> bytes:
    """Return the bytes of a local path or ``file://`` URI; raise OSError for other URIs."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).read_bytes()
    if len(parsed.scheme) > 1:  # one letter is a Windows drive
        raise OSError(f"{uri} is not a local file (only local paths can be read here)")
    return Path(uri).read_bytes()


def _header(data: Mapping[str, Any], images: list, segmented: list) -> str:
    selection = data.get("selection", {})
    n_cells = sum(int(row.get("n_cells") or 0) for row in segmented)
    failed = sum(1 for row in images if row.get("status") == "failed")
    per_image = f"{n_cells / len(segmented):.1f}" if segmented else "–"
    return (
        f"<h1>cellpipe report: {_text(selection.get('title', ''))}</h1>"
        f"<p class=\"muted\">generated {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by cellpipe "
        f"{_text(__version__)}</p>"
        f"<p>{len(images)} image × model results, {len(segmented)} segmented, {failed} failed; "
        f"{n_cells} cells in all, {per_image} per segmented image.</p>"
    )


def _plots(out_dir: Path, segmented: list, trends: Sequence[Mapping[str, Any]]) -> str:
    folder = out_dir / IMAGES_FOLDER
    by_model: dict[str, dict[str, list]] = {}
    for row in segmented:
        series = by_model.setdefault(_model(row), {"area": [], "diameter": []})
        series["area"].append(np.asarray(row["cells"].get("area", []), float))
        series["diameter"].append(np.asarray(row["cells"].get("equivalent_diameter_area", []), float))
    areas = {name: np.concatenate(s["area"]) for name, s in by_model.items()}
    diameters = {name: np.concatenate(s["diameter"]) for name, s in by_model.items()}
    pictures = [
        cell_count_plot(folder / "cells-per-image.png", [_image_name(r) for r in segmented],
                        [int(r.get("n_cells") or 0) for r in segmented]),
        distribution_plot(folder / "area.png", areas, quantity="area", unit="px²"),
        distribution_plot(folder / "diameter.png", diameters, quantity="diameter", unit="px"),
        trend_plot(folder / "trends.png", trends),
    ]
    alts = ["cells per image", "distribution of cell areas", "distribution of cell diameters",
            "cells per image and mean diameter over batch dates"]
    tags = "".join(f"<img src=\"{IMAGES_FOLDER}/{p.name}\" alt=\"{a}\">" for p, a in zip(pictures, alts))
    return f"<h2>Counts and sizes</h2><div class=\"plots\">{tags}</div>"


def _summary_table(images: list) -> str:
    header = ("<tr><th>image</th><th>batch date</th><th>model</th><th>parameters</th><th>cells</th>"
              "<th>mean area (px²)</th><th>median area</th><th>mean diameter (px)</th><th>status</th></tr>")
    rows = "".join(
        f"<tr><td><a href=\"#{_anchor(row)}\">{_text(_image_name(row))}</a></td><td>{_text(row.get('batch_date'))}</td>"
        f"<td>{_text(_model(row))}</td><td>{_param_link(row.get('param_hash'))}</td>"
        f"<td class=\"num\">{_text(row.get('n_cells'))}</td><td class=\"num\">{_number(row.get('area_mean'))}</td>"
        f"<td class=\"num\">{_number(row.get('area_median'))}</td>"
        f"<td class=\"num\">{_number(row.get('diameter_mean'))}</td><td>{_text(row.get('status'))}</td></tr>"
        for row in images
    )
    return f"<h2>Per image</h2><table>{header}{rows}</table>"


def _models_section(models: Sequence[Mapping], parameters: Sequence[Mapping], runs: Sequence[Mapping]) -> str:
    model_rows = "".join(
        f"<tr><td>{_text(m.get('name'))}</td><td>{_text(m.get('version'))}</td>"
        f"<td>{'yes' if m.get('is_default') else ''}</td><td><code>{_text(str(m.get('file_hash', ''))[:12])}</code></td>"
        f"<td>{_text(m.get('location'))}</td><td>{_text(m.get('created_at'))}</td>"
        f"<td><code>{_text(json.dumps(m.get('metrics') or {}, sort_keys=True, default=str))}</code></td></tr>"
        for m in models)
    parameter_blocks = "".join(
        f"<h3 id=\"params-{_text(str(p['param_hash'])[:12])}\">Parameters <code>{_text(str(p['param_hash'])[:12])}"
        f"</code> ({int(p.get('n_images', 0))} images)</h3>"
        f"<pre>{_text(json.dumps(p.get('parameters') or {}, indent=2, sort_keys=True, default=str))}</pre>"
        for p in parameters)
    run_rows = "".join(
        f"<tr><td class=\"num\">{_text(r.get('id'))}</td><td>{_text(r.get('batch_date'))}</td>"
        f"<td>{_text(r.get('started_at'))}</td><td>{_text(r.get('finished_at'))}</td><td>{_text(r.get('status'))}</td>"
        f"<td>{_text(r.get('host'))}</td><td>{_text(r.get('code_version'))}</td>"
        f"<td class=\"num\">{_text(r.get('images_segmented'))}</td><td class=\"num\">{_text(r.get('images_failed'))}</td>"
        f"<td class=\"num\">{_text(r.get('cells_stored'))}</td></tr>"
        for r in runs)
    return (
        "<h2>Models</h2><table><tr><th>name</th><th>version</th><th>default</th><th>file sha256</th>"
        f"<th>location</th><th>registered</th><th>metrics</th></tr>{model_rows}</table>"
        f"{parameter_blocks or '<p>No parameters recorded.</p>'}"
        "<h2>Runs</h2><table><tr><th>run</th><th>batch date</th><th>started</th><th>finished</th><th>status</th>"
        "<th>host</th><th>code</th><th>segmented</th><th>failed</th><th>cells stored</th></tr>"
        f"{run_rows}</table>"
    )


def _duplicates_section(runs: Sequence[Mapping]) -> str:
    duplicates = {}
    for run in runs:
        for duplicate in (run.get("summary") or {}).get("duplicates", []):
            duplicates.setdefault(duplicate.get("name"), (duplicate.get("duplicate_of"), run.get("id")))
    if not duplicates:
        return ""
    rows = "".join(f"<tr><td>{_text(name)}</td><td>{_text(original)}</td><td class=\"num\">{_text(run_id)}</td></tr>"
                   for name, (original, run_id) in sorted(duplicates.items()))
    return ("<h2>Duplicate files</h2><p>Same bytes as an image under another name: segmented and counted once, "
            "as that image.</p><table><tr><th>file</th><th>same bytes as</th><th>run</th></tr>"
            f"{rows}</table>")


def _image_section(out_dir: Path, row: Mapping[str, Any], with_overlay: bool, max_side: int,
                   read_uri: Callable[[str], bytes]) -> str:
    heading = (f"<h3 id=\"{_anchor(row)}\">{_text(_image_name(row))}</h3>"
               f"<p class=\"muted\">{_text(row.get('source_uri'))}")
    if row.get("segmentation_id") is None:
        reason = row.get("last_error") or f"status {row.get('status')}"
        return heading + f"</p><p class=\"missing\">Not segmented: {_text(reason)}</p>"
    heading += (f"<br>model {_text(_model(row))}, parameters {_param_link(row.get('param_hash'))}, "
                f"{_text(row.get('n_cells'))} cells</p>")
    if not with_overlay:
        return heading + "<p class=\"missing\">No overlay: beyond the overlay limit (--max-overlays).</p>"
    try:
        picture, with_ids = _overlay_of(row, max_side, read_uri)
    except (OSError, ValueError) as error:
        return heading + f"<p class=\"missing\">No overlay: {_text(error)}</p>"
    name = f"overlay-{int(row['segmentation_id'])}.png"
    save_png(out_dir / IMAGES_FOLDER / name, picture)
    caption = "outlines (yellow), centroids (red)" + (", cell ids (cyan)" if with_ids else
                                                      "; ids left out: cells too small at this scale")
    return (heading + f"<figure><img src=\"{IMAGES_FOLDER}/{name}\" alt=\"overlay of {_text(_image_name(row))}\" "
            f"width=\"{picture.shape[1]}\" height=\"{picture.shape[0]}\"><figcaption>{caption}</figcaption></figure>")


def _overlay_of(row: Mapping[str, Any], max_side: int, read_uri: Callable[[str], bytes]) -> tuple[np.ndarray, bool]:
    source, label_uri = row.get("source_uri"), row.get("label_uri")
    if not label_uri:
        raise ValueError("no label image was recorded for this segmentation")
    try:
        image = read_image(read_uri(source), name=source)
    except FileNotFoundError:
        raise ValueError(f"the image {source} is missing") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"the image cannot be read: {error}") from None
    try:
        labels = read_labels_tiff(io.BytesIO(read_uri(label_uri)))
    except FileNotFoundError:
        raise ValueError(f"the label image {label_uri} is missing") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"the label image {label_uri} cannot be read: {error}") from None
    if labels.shape != image.shape:
        raise ValueError(f"the label image {label_uri} is {labels.shape[1]} x {labels.shape[0]} pixels but the "
                         f"image is {image.shape[1]} x {image.shape[0]}")
    return overlay_picture(image, labels, row["cells"], max_side=max_side)


def _image_name(row: Mapping[str, Any]) -> str:
    source = str(row.get("source_uri") or f"image {row.get('image_id')}")
    return source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _model(row: Mapping[str, Any]) -> str:
    return f"{row['model_name']} {row['model_version']}" if row.get("model_name") else "–"


def _anchor(row: Mapping[str, Any]) -> str:
    return f"image-{row.get('image_id')}-{row.get('model_id') or 'none'}"


def _param_link(param_hash: Any) -> str:
    if not param_hash:
        return "–"
    short = _text(str(param_hash)[:12])
    return f"<a href=\"#params-{short}\"><code>{short}</code></a>"


def _number(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4g}"


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        value = f"{value:%Y-%m-%d %H:%M:%S}"
    return "" if value is None else html.escape(str(value))
