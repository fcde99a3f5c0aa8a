"""Tables of the cell database, as SQLAlchemy 2 typed declarative models.

The schema follows CellProfiler's Per_Image / Per_Object split, with the lineage that
CellProfiler lacks: every set of cells points to the image it came from, the model that
found it, the parameters used and the run that stored it.

==========================  ================================================================
table                       one row per
==========================  ================================================================
``images``                  distinct image content (sha256 of the file's bytes)
``runs``                    batch invocation (the nightly job, or one ``cellpipe segment``)
``models``                  U-Net model version; at most one is the default
``segmentations``           image × model × parameter hash: the latest result for that key
``cells``                   cell of a segmentation, with scikit-image's property names
``segmentation_quality``    segmentation: its label image's quality figures, in pixels
``claims``                  image × model × parameter hash a run is segmenting right now
==========================  ================================================================

The views ``cell_metrics`` and ``image_summary`` (created by migration 0002, extended
by 0006 with µm and quality columns) are what
users query; they are described in :mod:`cellpipe.db.views`.

Alembic migrations in ``migrations/versions`` create these tables; this module is the
reference that ``alembic revision --autogenerate`` compares the database against.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint names are part of the schema: migrations refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONDocument = JSON().with_variant(JSONB(), "postgresql")

IMAGE_STATUSES = ("registered", "segmented", "failed")
#: Where ``images.pixel_size_um`` came from (``cellpipe.units.PIXEL_SIZE_SOURCES``; NULL: unknown).
PIXEL_SIZE_SOURCES = ("ome", "imagej", "sem", "tiff", "setting")
#: "interrupted": the run's process died before it finished (see ``mark_interrupted_runs``).
RUN_STATUSES = ("running", "succeeded", "failed", "interrupted")

#: Per-cell statistics: ``cellpipe.measure.regionprops_table`` name → SQL column.
CELL_STATISTICS: dict[str, str] = {
    "label": "label",
    "area": "area",
    "centroid-0": "centroid_0",
    "centroid-1": "centroid_1",
    "bbox-0": "bbox_0",
    "bbox-1": "bbox_1",
    "bbox-2": "bbox_2",
    "bbox-3": "bbox_3",
    "axis_major_length": "axis_major_length",
    "axis_minor_length": "axis_minor_length",
    "eccentricity": "eccentricity",
    "orientation": "orientation",
    "equivalent_diameter_area": "equivalent_diameter_area",
    "perimeter": "perimeter",
    "intensity_mean": "intensity_mean",
    "intensity_min": "intensity_min",
    "intensity_max": "intensity_max",
    "touches_border": "touches_border",
    "feret_diameter_max": "feret_diameter_max",
    "feret_diameter_min": "feret_diameter_min",
    "confidence": "confidence",
}

#: Statistics a segmentation may lack (stored as NULL): intensity needs an intensity image.
OPTIONAL_CELL_STATISTICS = frozenset(
    {"intensity_mean", "intensity_min", "intensity_max", "touches_border", "feret_diameter_max",
     "feret_diameter_min", "confidence"}
)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every cellpipe table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONDocument}


class Image(Base):
    """One distinct image content, found under ``source_uri`` on ``batch_date``.

    The same bytes found twice (another name, another night) are the same row.
    """

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True, comment="sha256 of the file, hex")
    source_uri: Mapped[str] = mapped_column(Text, comment="where the image was first found")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    bit_depth: Mapped[int | None] = mapped_column(SmallInteger)
    batch_date: Mapped[dt.date] = mapped_column(Date, index=True, comment="date of the batch that found it")
    acquired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    first_seen: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_utc_now, server_default=func.current_timestamp()
    )
    # Not indexed: the status changes once per image and an index would make that
    # update rewrite every index entry; the few failed images are found by a scan.
    status: Mapped[str] = mapped_column(String(16), default="registered", server_default="registered")
    last_error: Mapped[str | None] = mapped_column(Text)
    # Side of a pixel in µm (NULL: unknown) and where it was read (PIXEL_SIZE_SOURCES).
    pixel_size_um: Mapped[float | None] = mapped_column(Double)
    pixel_size_source: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint(f"status IN {IMAGE_STATUSES!r}", name="status"),
        CheckConstraint("length(content_hash) = 64", name="content_hash_length"),
        CheckConstraint("pixel_size_um > 0", name="pixel_size_positive"),
        CheckConstraint(f"pixel_size_source IN {PIXEL_SIZE_SOURCES!r}", name="pixel_size_source"),
    )


class Run(Base):
    """One batch invocation: when, on which host and process, with which code and parameters."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_utc_now, server_default=func.current_timestamp()
    )
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    batch_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    code_version: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer, comment="process id of the run on its host")
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running", server_default="running")
    images_seen: Mapped[int | None] = mapped_column(Integer)
    images_segmented: Mapped[int | None] = mapped_column(Integer)
    images_failed: Mapped[int | None] = mapped_column(Integer)
    cells_stored: Mapped[int | None] = mapped_column(BigInteger)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"),
                                                    comment="duplicates and outages the run reported")

    __table_args__ = (CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),)


class Model(Base):
    """One version of a segmentation model, with its card, metrics and cloud ids."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    file_hash: Mapped[str] = mapped_column(String(64), comment="sha256 of the model file, hex")
    location: Mapped[str] = mapped_column(Text, comment="path or URI of the model file")
    card: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="config and training record")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cloud_ids: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="e.g. Azure ML model id")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_utc_now, server_default=func.current_timestamp()
    )
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    __table_args__ = (
        UniqueConstraint("name", "version"),
        # At most one default model, enforced by the database itself.
        Index(
            "uq_models_one_default",
            "is_default",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )


class Segmentation(Base):
    """The cells found in one image by one model with one parameter set.

    Unique on (image, model, parameter hash): storing that key again replaces its row
    and its cells.
    """

    __tablename__ = "segmentations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), index=True)
    param_hash: Mapped[str] = mapped_column(String(64), comment="sha256 of the canonical JSON of parameters")
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    n_cells: Mapped[int] = mapped_column(Integer)
    label_uri: Mapped[str | None] = mapped_column(Text, comment="where the label image was written")
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict, comment="seconds per stage")
    stored_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_utc_now, server_default=func.current_timestamp()
    )

    __table_args__ = (
        UniqueConstraint("image_id", "model_id", "param_hash"),
        Index("ix_segmentations_image_id_model_id_stored_at", "image_id", "model_id", "stored_at"),
    )


class Claim(Base):
    """An image × model × parameter hash that a run is segmenting right now.

    Taken before segmenting and dropped once the result is stored, so that two runs
    that do not share a scheduler segment each image once (:mod:`cellpipe.db.claims`).
    """

    __tablename__ = "claims"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    param_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Cell(Base):
    """One cell: scikit-image ``regionprops`` statistics of one label of a segmentation.

    Cells are written only by :func:`cellpipe.db.store_segmentation`, in the transaction
    that writes their segmentation; deleting a segmentation (or its image) deletes its
    cells through the trigger ``segmentations_delete_cells``.

    ``centroid_0``/``centroid_1`` are row/column in pixels; ``x`` and ``y`` are generated
    columns that repeat them as column/row for people who think in x/y. ``bbox_0..3`` are min_row, min_col,
    max_row, max_col (max exclusive), as in scikit-image.
    """

    __tablename__ = "cells"

    # No foreign key (it would be checked for every cell inserted, halving the bulk
    # insert rate on PostgreSQL); a trigger deletes the cells of a deleted segmentation.
    segmentation_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[int] = mapped_column(Integer, primary_key=True)
    area: Mapped[int] = mapped_column(Integer)
    centroid_0: Mapped[float] = mapped_column(Double)
    centroid_1: Mapped[float] = mapped_column(Double)
    # Generated from the centroid, so they can never disagree with it (stored on
    # PostgreSQL, which has only stored generated columns; computed on read on SQLite).
    x: Mapped[float] = mapped_column(Double, Computed("centroid_1"), comment="= centroid_1 (column)")
    y: Mapped[float] = mapped_column(Double, Computed("centroid_0"), comment="= centroid_0 (row)")
    bbox_0: Mapped[int] = mapped_column(Integer)
    bbox_1: Mapped[int] = mapped_column(Integer)
    bbox_2: Mapped[int] = mapped_column(Integer)
    bbox_3: Mapped[int] = mapped_column(Integer)
    axis_major_length: Mapped[float | None] = mapped_column(Double)
    axis_minor_length: Mapped[float | None] = mapped_column(Double)
    eccentricity: Mapped[float | None] = mapped_column(Double)
    orientation: Mapped[float | None] = mapped_column(Double)
    equivalent_diameter_area: Mapped[float | None] = mapped_column(Double)
    perimeter: Mapped[float | None] = mapped_column(Double)
    intensity_mean: Mapped[float | None] = mapped_column(Double)
    intensity_min: Mapped[float | None] = mapped_column(Double)
    intensity_max: Mapped[float | None] = mapped_column(Double)
    touches_border: Mapped[bool | None] = mapped_column(Boolean)
    feret_diameter_max: Mapped[float | None] = mapped_column(Double, comment="largest caliper, px")
    feret_diameter_min: Mapped[float | None] = mapped_column(Double, comment="smallest caliper (width), px")
    confidence: Mapped[float | None] = mapped_column(
        Double, comment="0-1, how sure the model was of the cell (cellpipe.confidence)")


class SegmentationQuality(Base):
    """The quality figures of one segmentation's label image, in pixels (``cellpipe.quality``).

    The view ``image_summary`` shows them with their µm values (from the image's pixel
    size). Written with the segmentation, in its transaction; deleted with it.
    """

    __tablename__ = "segmentation_quality"

    segmentation_id: Mapped[int] = mapped_column(ForeignKey("segmentations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    n_border_cells: Mapped[int] = mapped_column(Integer)
    image_area_px: Mapped[int] = mapped_column(BigInteger)
    crossings_x: Mapped[int] = mapped_column(Integer, comment="wall crossings along the rows")
    crossings_y: Mapped[int] = mapped_column(Integer, comment="wall crossings along the columns")
    mean_chord_x_px: Mapped[float | None] = mapped_column(Double)
    mean_chord_y_px: Mapped[float | None] = mapped_column(Double)
    anisotropy: Mapped[float | None] = mapped_column(Double, comment="mean chord y / x")
    apparent_cell_size_px: Mapped[float | None] = mapped_column(Double, comment="ASTM D3576: mean chord / 0.616")
    wall_fraction: Mapped[float | None] = mapped_column(Double)
    mean_wall_thickness_px: Mapped[float | None] = mapped_column(Double)
    d10_px: Mapped[float | None] = mapped_column(Double, comment="equivalent diameter, cells off the border")
    d50_px: Mapped[float | None] = mapped_column(Double)
    d90_px: Mapped[float | None] = mapped_column(Double)
    d10_all_px: Mapped[float | None] = mapped_column(Double, comment="equivalent diameter, every cell")
    d50_all_px: Mapped[float | None] = mapped_column(Double)
    d90_all_px: Mapped[float | None] = mapped_column(Double)


#: Columns of ``cells`` that writers fill, in table order (``segmentation_id`` first;
#: the generated ``x`` and ``y`` are left out).
CELL_COLUMNS: tuple[str, ...] = tuple(
    column.name for column in Cell.__table__.columns if column.computed is None
)

TABLE_NAMES: tuple[str, ...] = tuple(Base.metadata.tables)
