"""What ``cellpipe report`` shows, read from the database as plain data.

:func:`report_data` selects the images of one batch date (or of one run), their latest
segmentation per model with each cell's label, centroid, area and diameter, the trend
of cell counts and sizes over the dates up to it, and the models, parameters and runs
that produced them. It returns dicts, lists and numpy arrays only, for
:func:`cellpipe.report.write_report`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

import numpy as np
from sqlalchemy import case, func, select

from cellpipe.db.engine import Bind, read_connection
from cellpipe.db.models import Cell, Image, Model, Run, Segmentation
from cellpipe.db.views import image_summary

#: Most recent batch dates shown in the trends.
DEFAULT_TREND_DATES = 90
#: Per-cell columns read for overlays and distributions (scikit-image names → SQL).
REPORT_CELL_COLUMNS = {
    "label": Cell.label,
    "centroid-0": Cell.centroid_0,
    "centroid-1": Cell.centroid_1,
    "area": Cell.area,
    "equivalent_diameter_area": Cell.equivalent_diameter_area,
}
_IN_CHUNK = 500  # ids per IN (...) list, well below SQLite's bound-parameter limit


def report_data(
    bind: Bind,
    *,
    batch_date: dt.date | None = None,
    run_id: int | None = None,
    trend_dates: int = DEFAULT_TREND_DATES,
) -> dict[str, Any]:
    """Return everything the report of one batch date or one run shows.

    Parameters
    ----------
    bind : Engine, Connection or Session
    batch_date : datetime.date, optional
        The images found by the batch of that date.
    run_id : int, optional
        The segmentations stored by that run (still the latest for their image and model).
    trend_dates : int
        How many batch dates, up to the selected one, the trends cover.

    Returns
    -------
    dict
        ``selection``: ``{"batch_date", "run_id", "title"}``;
        ``images``: one dict per image × model, sorted by source (see
        :func:`cellpipe.report.write_report` for the keys), each with ``cells``, a dict
        of arrays keyed by :data:`REPORT_CELL_COLUMNS`;
        ``trends``: one dict per batch date × model;
        ``models``, ``parameters``, ``runs``: the ones the selected images refer to (and,
        for a batch date, the runs of that date); each run has its ``summary``, whose
        ``duplicates`` name the files that repeated an image's bytes under another name.

    Raises
    ------
    ValueError
        When both ``batch_date`` and ``run_id`` are given.
    LookupError
        When ``run_id`` does not exist.
    """
    if batch_date is not None and run_id is not None:
        raise ValueError("give a batch date or a run id, not both")
    with read_connection(bind) as connection:
        if run_id is not None:
            if connection.execute(select(Run.id).where(Run.id == run_id)).first() is None:
                raise LookupError(f"no run with id {run_id}")
            condition, title = image_summary.c.run_id == run_id, f"run {run_id}"
        else:
            if batch_date is None:
                batch_date = connection.execute(select(func.max(Image.batch_date))).scalar_one_or_none()
            condition = image_summary.c.batch_date == batch_date
            title = f"batch of {batch_date.isoformat()}" if batch_date else "empty database"
        images = _images(connection, condition)
        _attach_cells(connection, images)
        last_date = max((row["batch_date"] for row in images), default=batch_date)
        return {
            "selection": {"batch_date": batch_date, "run_id": run_id, "title": title},
            "images": images,
            "trends": _trends(connection, last_date, trend_dates) if last_date else [],
            "models": _models(connection, {row["model_id"] for row in images if row["model_id"] is not None}),
            "parameters": _parameters(images),
            "runs": _runs(connection, {row["run_id"] for row in images if row["run_id"] is not None} | (
                {run_id} if run_id is not None else set()) | _runs_of_date(connection, batch_date, run_id)),
        }


#: ``image_summary`` quality columns each image of the report carries.
QUALITY_REPORT_COLUMNS = (
    "pixel_size_um", "pixel_size_source", "cells_per_mm2", "mean_chord_x_px", "mean_chord_x_um", "mean_chord_y_px",
    "mean_chord_y_um", "anisotropy", "apparent_cell_size_px", "apparent_cell_size_um", "wall_fraction",
    "mean_wall_thickness_px", "mean_wall_thickness_um", "d10_px", "d10_um", "d50_px", "d50_um", "d90_px", "d90_um",
)
#: Quality columns averaged over the images of each batch date (NULLs, unknown sizes, left out).
QUALITY_TREND_COLUMNS = ("cells_per_mm2", "apparent_cell_size_um", "d50_um", "anisotropy", "wall_fraction")


def _images(connection, condition) -> list[dict[str, Any]]:
    summary = image_summary.c
    statement = (
        select(summary.image_id, summary.source_uri, summary.batch_date, summary.width, summary.height,
               summary.bit_depth, summary.status, summary.last_error, summary.model_id, summary.model_name,
               summary.model_version, summary.segmentation_id, summary.param_hash, summary.run_id,
               summary.stored_at, summary.n_cells, summary.area_mean, summary.area_median,
               summary.diameter_mean, summary.diameter_median, Segmentation.label_uri,
               Segmentation.parameters, *(summary[name] for name in QUALITY_REPORT_COLUMNS),
               summary.mean_confidence, summary.low_confidence_cells)
        .select_from(image_summary.outerjoin(Segmentation, Segmentation.id == summary.segmentation_id))
        .where(condition)
        .order_by(summary.source_uri, summary.image_id, summary.model_name, summary.model_version)
    )
    return [dict(row._mapping) for row in connection.execute(statement)]


def _attach_cells(connection, images: list[dict[str, Any]]) -> None:
    by_segmentation = {row["segmentation_id"]: row for row in images if row["segmentation_id"] is not None}
    columns: dict[int, dict[str, list]] = {sid: {name: [] for name in REPORT_CELL_COLUMNS} for sid in by_segmentation}
    for chunk in _chunks(sorted(by_segmentation)):
        statement = (select(Cell.segmentation_id, *REPORT_CELL_COLUMNS.values())
                     .where(Cell.segmentation_id.in_(chunk)).order_by(Cell.segmentation_id, Cell.label))
        for segmentation_id, *values in connection.execute(statement):
            for name, value in zip(REPORT_CELL_COLUMNS, values):
                columns[segmentation_id][name].append(value)
    for row in images:
        found = columns.get(row["segmentation_id"], {name: [] for name in REPORT_CELL_COLUMNS})
        row["cells"] = {name: np.asarray(values, dtype=np.int64 if name in ("label", "area") else np.float64)
                        for name, values in found.items()}


def _trends(connection, last_date: dt.date, n_dates: int) -> list[dict[str, Any]]:
    summary = image_summary.c
    dates = [d for (d,) in connection.execute(
        select(summary.batch_date).where(summary.batch_date <= last_date).distinct()
        .order_by(summary.batch_date.desc()).limit(n_dates))]
    if not dates:
        return []
    cells = func.sum(summary.n_cells)
    statement = (
        select(summary.batch_date, summary.model_name, summary.model_version,
               func.count(func.distinct(summary.image_id)).label("n_images"),
               func.count(summary.segmentation_id).label("n_segmented"),
               func.sum(case((summary.status == "failed", 1), else_=0)).label("n_failed"),
               cells.label("n_cells"),
               (func.sum(summary.area_mean * summary.n_cells) / func.nullif(cells, 0)).label("area_mean"),
               (func.sum(summary.diameter_mean * summary.n_cells) / func.nullif(cells, 0)).label("diameter_mean"),
               func.count(summary.pixel_size_um).label("n_calibrated"),
               *(func.avg(summary[name]).label(name) for name in QUALITY_TREND_COLUMNS))
        .where(summary.batch_date >= min(dates), summary.batch_date <= last_date)
        .group_by(summary.batch_date, summary.model_name, summary.model_version)
        .order_by(summary.batch_date, summary.model_name, summary.model_version)
    )
    trends = []
    for row in connection.execute(statement):
        trend = dict(row._mapping)
        trend["n_cells"] = int(trend["n_cells"] or 0)
        trend["cells_per_image"] = trend["n_cells"] / trend["n_segmented"] if trend["n_segmented"] else None
        trends.append(trend)
    return trends


def _models(connection, model_ids: set[int]) -> list[dict[str, Any]]:
    if not model_ids:
        return []
    statement = select(Model.id, Model.name, Model.version, Model.file_hash, Model.location, Model.created_at,
                       Model.is_default, Model.metrics, Model.card).where(Model.id.in_(sorted(model_ids)))
    return [dict(row._mapping) for row in connection.execute(statement.order_by(Model.name, Model.version))]


def _parameters(images: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    sets: dict[str, dict[str, Any]] = {}
    for row in images:
        if row["param_hash"] is not None:
            # The scale is chosen per image: it describes one row, not the parameter set.
            requested = {k: v for k, v in (row["parameters"] or {}).items() if k != "scale"}
            entry = sets.setdefault(row["param_hash"], {"param_hash": row["param_hash"],
                                                        "parameters": requested, "n_images": 0})
            entry["n_images"] += 1
    return list(sets.values())


def _runs_of_date(connection, batch_date: dt.date | None, run_id: int | None) -> set[int]:
    if run_id is not None or batch_date is None:
        return set()
    return set(connection.execute(select(Run.id).where(Run.batch_date == batch_date)).scalars())


def _runs(connection, run_ids: set[int]) -> list[dict[str, Any]]:
    if not run_ids:
        return []
    statement = select(Run.id, Run.batch_date, Run.started_at, Run.finished_at, Run.status, Run.host,
                       Run.code_version, Run.images_seen, Run.images_segmented, Run.images_failed,
                       Run.cells_stored, Run.parameters, Run.summary).where(Run.id.in_(sorted(run_ids))).order_by(Run.id)
    return [dict(row._mapping) for row in connection.execute(statement)]


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield ids[start:start + _IN_CHUNK]


__all__ = ["DEFAULT_TREND_DATES", "REPORT_CELL_COLUMNS", "report_data"]
