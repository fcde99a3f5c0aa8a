"""The views users query instead of joins, described as typed tables.

Migration 0002 creates the views with SQL that works on SQLite and PostgreSQL alike;
the :class:`~sqlalchemy.Table` objects here mirror their columns so that exports and
tests can select from them with the right Python types (dates as dates, not strings).

``latest_segmentations``
    ``segmentations`` restricted to the most recently stored row per image × model.
``cell_metrics``
    One row per cell of the latest segmentation per image × model, with the image's
    hash, source and batch date and the model's name and version.
``image_summary``
    One row per image × model (latest segmentation), or one row with NULL model columns
    for an image without any segmentation: status, last error, cell count, and mean,
    median and sample standard deviation (n − 1) of ``area`` and of
    ``equivalent_diameter_area`` (called ``diameter`` here). The median is the mean of
    the middle one or two values, computed with window functions; the standard
    deviation is NULL for a single cell.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from cellpipe.db.models import Cell

view_metadata = MetaData()

#: Cell columns in the order ``cell_metrics`` shows them: the ones people look at first.
CELL_METRICS_STATISTICS: tuple[str, ...] = (
    "label", "x", "y", "area", "centroid_0", "centroid_1", "bbox_0", "bbox_1", "bbox_2",
    "bbox_3", "axis_major_length", "axis_minor_length", "eccentricity", "orientation",
    "equivalent_diameter_area", "perimeter", "intensity_mean", "intensity_min",
    "intensity_max", "touches_border",
)

cell_metrics = Table(
    "cell_metrics",
    view_metadata,
    Column("image_id", Integer),
    Column("image_hash", String(64)),
    Column("source_uri", Text),
    Column("batch_date", Date),
    Column("model_id", Integer),
    Column("model_name", String(128)),
    Column("model_version", String(64)),
    Column("segmentation_id", Integer),
    Column("param_hash", String(64)),
    Column("run_id", Integer),
    *(Column(name, Cell.__table__.c[name].type) for name in CELL_METRICS_STATISTICS),
)

image_summary = Table(
    "image_summary",
    view_metadata,
    Column("image_id", Integer),
    Column("image_hash", String(64)),
    Column("source_uri", Text),
    Column("batch_date", Date),
    Column("size_bytes", Integer),
    Column("width", Integer),
    Column("height", Integer),
    Column("bit_depth", Integer),
    Column("status", String(16)),
    Column("last_error", Text),
    Column("model_id", Integer),
    Column("model_name", String(128)),
    Column("model_version", String(64)),
    Column("segmentation_id", Integer),
    Column("param_hash", String(64)),
    Column("run_id", Integer),
    Column("stored_at", DateTime(timezone=True)),
    Column("n_cells", Integer),
    Column("area_mean", Double),
    Column("area_median", Double),
    Column("area_std", Double),
    Column("diameter_mean", Double),
    Column("diameter_median", Double),
    Column("diameter_std", Double),
)

VIEW_NAMES: tuple[str, ...] = ("latest_segmentations", "cell_metrics", "image_summary")
