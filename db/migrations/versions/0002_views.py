"""Views users query: latest_segmentations, cell_metrics, image_summary.

Plain SQL that runs unchanged on SQLite (>= 3.25, window functions) and PostgreSQL.
The median is the mean of the middle one or two values by ROW_NUMBER; the standard
deviation is the sample one (n - 1), from the sum of squared deviations from the mean.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CELL_STATISTICS = (
    "label, x, y, area, centroid_0, centroid_1, bbox_0, bbox_1, bbox_2, bbox_3, "
    "axis_major_length, axis_minor_length, eccentricity, orientation, "
    "equivalent_diameter_area, perimeter, intensity_mean, intensity_min, intensity_max, "
    "touches_border"
)

LATEST_SEGMENTATIONS = """
CREATE VIEW latest_segmentations AS
SELECT id, image_id, model_id, param_hash, parameters, run_id, n_cells, label_uri,
       timings, stored_at
FROM (
    SELECT s.*,
           ROW_NUMBER() OVER (
               PARTITION BY s.image_id, s.model_id ORDER BY s.stored_at DESC, s.id DESC
           ) AS recency
    FROM segmentations s
) ranked
WHERE recency = 1
"""

CELL_METRICS = f"""
CREATE VIEW cell_metrics AS
SELECT s.image_id, i.content_hash AS image_hash, i.source_uri, i.batch_date,
       s.model_id, m.name AS model_name, m.version AS model_version,
       s.id AS segmentation_id, s.param_hash, s.run_id,
       {", ".join("c." + name.strip() for name in CELL_STATISTICS.split(","))}
FROM cells c
JOIN latest_segmentations s ON s.id = c.segmentation_id
JOIN images i ON i.id = s.image_id
JOIN models m ON m.id = s.model_id
"""

IMAGE_SUMMARY = """
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
               OVER (PARTITION BY c.segmentation_id) AS diameter_mean
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
                / NULLIF(COUNT(diameter) - 1, 0)) AS diameter_std
    FROM ranked
    GROUP BY segmentation_id
)
SELECT i.id AS image_id, i.content_hash AS image_hash, i.source_uri, i.batch_date,
       i.size_bytes, i.width, i.height, i.bit_depth, i.status, i.last_error,
       s.model_id, m.name AS model_name, m.version AS model_version,
       s.id AS segmentation_id, s.param_hash, s.run_id, s.stored_at, s.n_cells,
       st.area_mean, st.area_median, st.area_std,
       st.diameter_mean, st.diameter_median, st.diameter_std
FROM images i
LEFT JOIN latest_segmentations s ON s.image_id = i.id
LEFT JOIN models m ON m.id = s.model_id
LEFT JOIN cell_statistics st ON st.segmentation_id = s.id
"""


def upgrade() -> None:
    op.execute(LATEST_SEGMENTATIONS)
    op.execute(CELL_METRICS)
    op.execute(IMAGE_SUMMARY)


def downgrade() -> None:
    op.execute("DROP VIEW image_summary")
    op.execute("DROP VIEW cell_metrics")
    op.execute("DROP VIEW latest_segmentations")
