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

Since migration 0006 both views carry physical units, computed from the pixel columns
and ``images.pixel_size_um`` (NULL wherever the pixel size is unknown, never 0):
``cell_metrics`` adds ``feret_diameter_max`` / ``_min`` (px), ``pixel_size_um`` and the
µm columns of :data:`CELL_MICROMETRE_COLUMNS`; ``image_summary`` adds the pixel size
and its source, ``cells_per_mm2`` (every cell of the image over the image's area), and
the quality figures of ``segmentation_quality`` (:mod:`cellpipe.quality`) in px and µm.
Its main size percentiles ``d10`` / ``d50`` / ``d90`` leave out the cells that touch
the image border (cut, so they look smaller); ``d10_all``... include them, as do
``area_mean`` and the other statistics of every cell.

Since migration 0007 ``cell_metrics`` ends with each cell's ``confidence`` (0-1,
:mod:`cellpipe.confidence`) and ``image_summary`` with ``mean_confidence`` and
``low_confidence_cells`` (below ``cellpipe.confidence.LOW_CONFIDENCE``, 0.5); all NULL
for cells stored without a confidence.
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

#: µm columns of ``cell_metrics``: px × pixel size (NULL when the image's pixel size is unknown).
CELL_MICROMETRE_COLUMNS: tuple[str, ...] = (
    "area_um2", "perimeter_um", "equivalent_diameter_um", "axis_major_length_um", "axis_minor_length_um",
    "x_um", "y_um", "feret_diameter_max_um", "feret_diameter_min_um",
)
#: Quality figures of ``image_summary`` in pixels or without unit (table ``segmentation_quality``).
SUMMARY_QUALITY_PX: tuple[str, ...] = (
    "mean_chord_x_px", "mean_chord_y_px", "anisotropy", "apparent_cell_size_px", "wall_fraction",
    "mean_wall_thickness_px", "d10_px", "d50_px", "d90_px", "d10_all_px", "d50_all_px", "d90_all_px",
)
#: µm figures of ``image_summary``, in view order.
SUMMARY_MICROMETRE_COLUMNS: tuple[str, ...] = (
    "mean_chord_x_um", "mean_chord_y_um", "apparent_cell_size_um", "mean_wall_thickness_um",
    "d10_um", "d50_um", "d90_um", "d10_all_um", "d50_all_um", "d90_all_um",
    "area_mean_um2", "area_median_um2", "diameter_mean_um", "diameter_median_um",
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
    Column("feret_diameter_max", Double),
    Column("feret_diameter_min", Double),
    Column("pixel_size_um", Double),
    *(Column(name, Double) for name in CELL_MICROMETRE_COLUMNS),
    Column("confidence", Double),
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
    Column("pixel_size_um", Double),
    Column("pixel_size_source", String(16)),
    Column("n_border_cells", Integer),
    Column("cells_per_mm2", Double),
    *(Column(name, Double) for name in SUMMARY_QUALITY_PX),
    *(Column(name, Double) for name in SUMMARY_MICROMETRE_COLUMNS),
    Column("mean_confidence", Double),
    Column("low_confidence_cells", Integer),
)

VIEW_NAMES: tuple[str, ...] = ("latest_segmentations", "cell_metrics", "image_summary")
