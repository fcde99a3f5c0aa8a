"""Per-cell confidence: ``cells.confidence``, in ``cell_metrics``, and its mean per image in ``image_summary``.

- ``cells.confidence`` (0-1; NULL for cells stored before this revision):
  how sure the model was of the cell (:mod:`cellpipe.confidence`);
- ``cell_metrics`` gains ``confidence`` (its last column);
- ``image_summary`` gains ``mean_confidence`` and ``low_confidence_cells``, the cells
  below 0.5 (``cellpipe.confidence.LOW_CONFIDENCE``); both NULL for a segmentation
  whose cells have no confidence.

The views are those of 0006 with these columns appended, dropped and created again;
downgrading recreates 0006's. On PostgreSQL ``cellpipe_reader`` (0004) is granted SELECT
on the new views.

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Spelled out rather than imported: a migration must keep doing what it did.
READER = "cellpipe_reader"
LOW_CONFIDENCE = 0.5

CELL_STATISTICS = (
    "label", "x", "y", "area", "centroid_0", "centroid_1", "bbox_0", "bbox_1", "bbox_2", "bbox_3",
    "axis_major_length", "axis_minor_length", "eccentricity", "orientation", "equivalent_diameter_area",
    "perimeter", "intensity_mean", "intensity_min", "intensity_max", "touches_border",
)
# µm column: (pixel expression, power of the pixel size).
CELL_MICROMETRES = (
    ("area_um2", "c.area", 2),
    ("perimeter_um", "c.perimeter", 1),
    ("equivalent_diameter_um", "c.equivalent_diameter_area", 1),
    ("axis_major_length_um", "c.axis_major_length", 1),
    ("axis_minor_length_um", "c.axis_minor_length", 1),
    ("x_um", "c.x", 1),
    ("y_um", "c.y", 1),
    ("feret_diameter_max_um", "c.feret_diameter_max", 1),
    ("feret_diameter_min_um", "c.feret_diameter_min", 1),
)


def _times_pixel_size(expression: str, power: int) -> str:
    return expression + " * i.pixel_size_um" * power


def _cell_metrics(extra: str) -> str:
    return f"""
CREATE VIEW cell_metrics AS
SELECT s.image_id, i.content_hash AS image_hash, i.source_uri, i.batch_date,
       s.model_id, m.name AS model_name, m.version AS model_version,
       s.id AS segmentation_id, s.param_hash, s.run_id,
       {", ".join("c." + name for name in CELL_STATISTICS)},
       c.feret_diameter_max, c.feret_diameter_min, i.pixel_size_um,
       {", ".join(f"{_times_pixel_size(pixels, power)} AS {name}" for name, pixels, power in CELL_MICROMETRES)}{extra}
FROM cells c
JOIN latest_segmentations s ON s.id = c.segmentation_id
JOIN images i ON i.id = s.image_id
JOIN models m ON m.id = s.model_id
"""


# (px column of segmentation_quality or of the statistics, µm column, power of the pixel size).
SUMMARY_MICROMETRES = (
    ("q.mean_chord_x_px", "mean_chord_x_um", 1),
    ("q.mean_chord_y_px", "mean_chord_y_um", 1),
    ("q.apparent_cell_size_px", "apparent_cell_size_um", 1),
    ("q.mean_wall_thickness_px", "mean_wall_thickness_um", 1),
    ("q.d10_px", "d10_um", 1), ("q.d50_px", "d50_um", 1), ("q.d90_px", "d90_um", 1),
    ("q.d10_all_px", "d10_all_um", 1), ("q.d50_all_px", "d50_all_um", 1), ("q.d90_all_px", "d90_all_um", 1),
    ("st.area_mean", "area_mean_um2", 2), ("st.area_median", "area_median_um2", 2),
    ("st.diameter_mean", "diameter_mean_um", 1), ("st.diameter_median", "diameter_median_um", 1),
)


def _image_summary(ranked_extra: str, statistics_extra: str, extra: str) -> str:
    return f"""
CREATE VIEW image_summary AS
WITH ranked AS (
    SELECT c.segmentation_id,
           CAST(c.area AS DOUBLE PRECISION) AS area,
           CAST(c.equivalent_diameter_area AS DOUBLE PRECISION) AS diameter,
           ROW_NUMBER() OVER (PARTITION BY c.segmentation_id ORDER BY c.area) AS area_rank,
           ROW_NUMBER() OVER (
               PARTITION BY c.segmentation_id
               ORDER BY CASE WHEN c.equivalent_diameter_area IS NULL THEN 1 ELSE 0 END,
                        c.equivalent_diameter_area
           ) AS diameter_rank,
           COUNT(*) OVER (PARTITION BY c.segmentation_id) AS area_count,
           COUNT(c.equivalent_diameter_area) OVER (PARTITION BY c.segmentation_id) AS diameter_count,
           AVG(CAST(c.area AS DOUBLE PRECISION)) OVER (PARTITION BY c.segmentation_id) AS area_mean,
           AVG(CAST(c.equivalent_diameter_area AS DOUBLE PRECISION))
               OVER (PARTITION BY c.segmentation_id) AS diameter_mean{ranked_extra}
    FROM cells c
    JOIN latest_segmentations s ON s.id = c.segmentation_id
),
cell_statistics AS (
    SELECT segmentation_id,
           MAX(area_mean) AS area_mean,
           AVG(CASE WHEN area_rank IN ((area_count + 1) / 2, (area_count + 2) / 2)
                    THEN area END) AS area_median,
           SQRT(SUM((area - area_mean) * (area - area_mean)) / NULLIF(COUNT(*) - 1, 0)) AS area_std,
           MAX(diameter_mean) AS diameter_mean,
           AVG(CASE WHEN diameter_rank IN ((diameter_count + 1) / 2, (diameter_count + 2) / 2)
                    THEN diameter END) AS diameter_median,
           SQRT(SUM((diameter - diameter_mean) * (diameter - diameter_mean))
                / NULLIF(COUNT(diameter) - 1, 0)) AS diameter_std{statistics_extra}
    FROM ranked
    GROUP BY segmentation_id
)
SELECT i.id AS image_id, i.content_hash AS image_hash, i.source_uri, i.batch_date,
       i.size_bytes, i.width, i.height, i.bit_depth, i.status, i.last_error,
       s.model_id, m.name AS model_name, m.version AS model_version,
       s.id AS segmentation_id, s.param_hash, s.run_id, s.stored_at, s.n_cells,
       st.area_mean, st.area_median, st.area_std,
       st.diameter_mean, st.diameter_median, st.diameter_std,
       i.pixel_size_um, i.pixel_size_source, q.n_border_cells,
       CAST(s.n_cells AS DOUBLE PRECISION) * 1000000.0
           / (q.image_area_px * i.pixel_size_um * i.pixel_size_um) AS cells_per_mm2,
       q.mean_chord_x_px, q.mean_chord_y_px, q.anisotropy, q.apparent_cell_size_px,
       q.wall_fraction, q.mean_wall_thickness_px,
       q.d10_px, q.d50_px, q.d90_px, q.d10_all_px, q.d50_all_px, q.d90_all_px,
       {", ".join(f"{_times_pixel_size(pixels, power)} AS {name}" for pixels, name, power in SUMMARY_MICROMETRES)}{extra}
FROM images i
LEFT JOIN latest_segmentations s ON s.image_id = i.id
LEFT JOIN models m ON m.id = s.model_id
LEFT JOIN cell_statistics st ON st.segmentation_id = s.id
LEFT JOIN segmentation_quality q ON q.segmentation_id = s.id
"""


CELL_METRICS = _cell_metrics(",\n       c.confidence")
CELL_METRICS_BEFORE = _cell_metrics("")
IMAGE_SUMMARY = _image_summary(
    ",\n           c.confidence",
    ",\n           AVG(confidence) AS mean_confidence,"
    f"\n           CASE WHEN COUNT(confidence) > 0 THEN SUM(CASE WHEN confidence < {LOW_CONFIDENCE} THEN 1 ELSE 0 END)"
    "\n           END AS low_confidence_cells",
    ",\n       st.mean_confidence, st.low_confidence_cells",
)
IMAGE_SUMMARY_BEFORE = _image_summary("", "", "")

GRANT = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        GRANT SELECT ON cell_metrics, image_summary TO {READER};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute("DROP VIEW image_summary")
    op.execute("DROP VIEW cell_metrics")
    op.add_column("cells", sa.Column("confidence", sa.Double,
                                     comment="0-1, how sure the model was of the cell (cellpipe.confidence)"))
    op.execute(CELL_METRICS)
    op.execute(IMAGE_SUMMARY)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(GRANT)


def downgrade() -> None:
    op.execute("DROP VIEW image_summary")
    op.execute("DROP VIEW cell_metrics")
    # SQLite 3.35+ (cellpipe's minimum) drops columns in place.
    op.execute("ALTER TABLE cells DROP COLUMN confidence")
    op.execute(CELL_METRICS_BEFORE)
    op.execute(IMAGE_SUMMARY_BEFORE)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(GRANT)
