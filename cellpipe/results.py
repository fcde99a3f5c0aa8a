"""The files a segmentation produces, as bytes: label TIFF, per-cell CSV, overlay PNG, record JSON.

They are made as bytes so that one definition serves local folders
(:func:`write_results`, atomic renames) and blob containers (uploaded as they are).
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tifffile
from PIL import Image

from cellpipe import __version__
from cellpipe.overlay import overlay
from cellpipe.units import ResolvedPixelSize, micrometre_columns

#: Suffixes of the files written per image ``<stem>``.
LABELS_SUFFIX = "_labels.tif"
CELLS_SUFFIX = "_cells.csv"
OVERLAY_SUFFIX = "_overlay.png"
RECORD_SUFFIX = "_segmentation.json"


def labels_tiff_bytes(labels: np.ndarray, pixel_size_um: float | None = None) -> bytes:
    """Return ``labels`` as a zlib-compressed uint32 TIFF (0 = wall/background).

    With ``pixel_size_um`` the file carries it twice, so that Fiji, napari and
    :func:`cellpipe.units.read_pixel_size` open it at scale: as OME-XML
    ``PhysicalSizeX/Y`` in µm, and as XResolution / YResolution in pixels per
    centimetre (ResolutionUnit centimetre).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} {labels.shape}")
    buffer = io.BytesIO()
    scale: dict[str, Any] = {}
    if pixel_size_um is not None:
        per_cm = 1e4 / pixel_size_um
        scale = dict(ome=True, resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                     metadata={"axes": "YX", "PhysicalSizeX": pixel_size_um, "PhysicalSizeXUnit": "µm",
                               "PhysicalSizeY": pixel_size_um, "PhysicalSizeYUnit": "µm"})
    tifffile.imwrite(buffer, labels.astype(np.uint32), compression="zlib", photometric="minisblack", **scale)
    return buffer.getvalue()


def cells_csv_bytes(cells: Mapping[str, np.ndarray], pixel_size_um: float | None = None) -> bytes:
    """Return the per-cell table as UTF-8 CSV: a header of column names, one row per cell.

    Floats are written with ``repr`` precision (round-trip exact); booleans as 0/1.
    With ``pixel_size_um`` the µm columns of :data:`cellpipe.units.MICROMETRE_COLUMNS`
    (``area_um2``, ``perimeter_um``, ...) follow the pixel ones; without it there are none.
    """
    if pixel_size_um is not None:
        cells = {**cells, **micrometre_columns(cells, pixel_size_um)}
    names = list(cells)
    columns = [np.asarray(cells[name]) for name in names]
    columns = [c.astype(np.uint8) if c.dtype == np.bool_ else c for c in columns]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*(c.tolist() for c in columns)))
    return text.getvalue().encode("utf-8")


def overlay_png_bytes(image: np.ndarray, labels: np.ndarray, cells: Mapping[str, np.ndarray]) -> bytes:
    """Return a PNG of cell outlines and centroids drawn on ``image``."""
    centroids = np.column_stack([cells["centroid-0"], cells["centroid-1"]])
    buffer = io.BytesIO()
    Image.fromarray(overlay(image, labels, centroids)).save(buffer, format="PNG")
    return buffer.getvalue()


def segmentation_record(model_path: str | os.PathLike[str], params, result,
                        pixel_size: ResolvedPixelSize | None = None) -> dict[str, Any]:
    """Return what ``result`` was made with: the model file, the parameters, the scale and the pixel size.

    Parameters
    ----------
    model_path : path
        The ``.keras`` model.
    params : cellpipe.pipeline.PipelineParams
        The parameters asked for (``as_dict()`` is what the database hashes).
    result : cellpipe.pipeline.CellResult
        Its ``scale`` (cell diameter, resampling factor, where the diameter came from)
        and whether the image was inverted.
    pixel_size : ResolvedPixelSize, optional
        The pixel size the µm figures use (``{"um": null, ...}`` when unknown).
    """
    record = {
        "cellpipe": __version__,
        "model": str(Path(model_path).resolve()),
        "parameters": params.as_dict(),
        "scale": result.scale.as_dict(),
        "inverted": bool(result.inverted),
    }
    if pixel_size is not None:
        record["pixel_size"] = pixel_size.as_dict()
    return record


def record_json_bytes(record: Mapping[str, Any]) -> bytes:
    """Return how an image was segmented (model, parameters, scale, ...) as indented UTF-8 JSON."""
    return (json.dumps(dict(record), indent=2, allow_nan=False) + "\n").encode("utf-8")


def result_files(
    stem: str,
    image: np.ndarray,
    labels: np.ndarray,
    cells: Mapping[str, np.ndarray],
    *,
    with_overlay: bool = False,
    record: Mapping[str, Any] | None = None,
    pixel_size_um: float | None = None,
) -> dict[str, bytes]:
    """Return ``{file name: bytes}`` of the results of one image called ``stem``.

    ``record``, when given, is written as ``<stem>_segmentation.json``: what the results
    were made with (:func:`segmentation_record`), so that a folder
    of results says how to reproduce it. ``pixel_size_um``, when known, goes into the
    label TIFF (:func:`labels_tiff_bytes`) and adds µm columns to the CSV.
    """
    files = {
        stem + LABELS_SUFFIX: labels_tiff_bytes(labels, pixel_size_um),
        stem + CELLS_SUFFIX: cells_csv_bytes(cells, pixel_size_um),
    }
    if with_overlay:
        files[stem + OVERLAY_SUFFIX] = overlay_png_bytes(image, labels, cells)
    if record is not None:
        files[stem + RECORD_SUFFIX] = record_json_bytes(record)
    return files


def write_results(folder: str | os.PathLike[str], files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` into ``folder``, each atomically; return their paths.

    Every file is written under a temporary name, then all are renamed to their own
    names, so that neither a reader nor a worker killed midway ever sees part of a file
    under its name; the folder is then synced once, making the renames of all of them
    durable with one ``fsync`` per call (per image in the batch), not one per file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    renames = [(folder / f".{name}.{uuid.uuid4().hex}.tmp", folder / name) for name in files]
    try:
        for (temporary, _), data in zip(renames, files.values()):
            temporary.write_bytes(data)
        for temporary, path in renames:
            os.replace(temporary, path)
    except BaseException:
        for temporary, _ in renames:
            temporary.unlink(missing_ok=True)
        raise
    _sync_folder(folder)
    return [path for _, path in renames]


def _sync_folder(folder: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows: folders cannot be opened to be synced
        return
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
