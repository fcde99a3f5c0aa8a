"""Physical units: each image's pixel size, Feret diameters, per-image quality figures, µm in the views.

- ``images.pixel_size_um`` (NULL: unknown) and ``images.pixel_size_source`` (``ome``,
  ``imagej``, ``sem``, ``tiff``, ``setting`` or NULL);
- ``cells.feret_diameter_max`` and ``cells.feret_diameter_min`` (px; NULL for cells
  stored before this revision);
- ``segmentation_quality``: one row per segmentation, the figures of
  :mod:`cellpipe.quality` in pixels (chords by line intercept, anisotropy, ASTM D3576
  apparent cell size, wall fraction and thickness, D10/D50/D90);
- ``cell_metrics`` gains the Feret diameters, the pixel size and µm columns;
  ``image_summary`` gains the pixel size, the quality figures in px and µm and
  ``cells_per_mm2``. µm values are computed in the views from px × pixel size, so
  nothing is stored twice and a corrected pixel size corrects every figure.

Columns are added in place (SQLite's ADD COLUMN takes a named CHECK): batch mode would
rebuild ``images`` and, with foreign keys on, cascade-delete its segmentations (see 0003).
The views are dropped and created again with their old columns first, in their old
order. On PostgreSQL ``cellpipe_reader`` (0004) is granted SELECT on the new table and
the new views.

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Spelled out rather than imported: a migration must keep doing what it did.
READER = "cellpipe_reader"
PIXEL_SIZE_SOURCES = "('ome', 'imagej', 'sem', 'tiff', 'setting')"

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


CELL_METRICS = f"""
CREATE VIEW cell_metrics AS
SELECT s.image_id, i.content_hash AS image_hash, i.source_uri, i.batch_date,
       s.model_id, m.name AS model_name, m.version AS model_version,
       s.id AS segmentation_id, s.param_hash, s.run_id,
       {", ".join("c." + name for name in CELL_STATISTICS)},
       c.feret_diameter_max, c.feret_diameter_min, i.pixel_size_um,
       {", ".join(f"{_times_pixel_size(pixels, power)} AS {name}" for name, pixels, power in CELL_MICROMETRES)}
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

IMAGE_SUMMARY_STATISTICS = """
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
"""

IMAGE_SUMMARY = f"""
CREATE VIEW image_summary AS
{IMAGE_SUMMARY_STATISTICS}
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
       {", ".join(f"{_times_pixel_size(pixels, power)} AS {name}" for pixels, name, power in SUMMARY_MICROMETRES)}
FROM images i
LEFT JOIN latest_segmentations s ON s.image_id = i.id
LEFT JOIN models m ON m.id = s.model_id
LEFT JOIN cell_statistics st ON st.segmentation_id = s.id
LEFT JOIN segmentation_quality q ON q.segmentation_id = s.id
"""

IMAGE_SUMMARY_BEFORE = f"""
CREATE VIEW image_summary AS
{IMAGE_SUMMARY_STATISTICS}
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

CELL_METRICS_BEFORE = f"""
CREATE VIEW cell_metrics AS
SELECT s.image_id, i.content_hash AS image_hash, i.source_uri, i.batch_date,
       s.model_id, m.name AS model_name, m.version AS model_version,
       s.id AS segmentation_id, s.param_hash, s.run_id,
       {", ".join("c." + name for name in CELL_STATISTICS)}
FROM cells c
JOIN latest_segmentations s ON s.id = c.segmentation_id
JOIN images i ON i.id = s.image_id
JOIN models m ON m.id = s.model_id
"""

GRANT = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        GRANT SELECT ON segmentation_quality, cell_metrics, image_summary TO {READER};
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute("DROP VIEW image_summary")
    op.execute("DROP VIEW cell_metrics")
    double = sa.Double().compile(dialect=op.get_bind().dialect)
    op.execute(f"ALTER TABLE images ADD COLUMN pixel_size_um {double} "
               "CONSTRAINT ck_images_pixel_size_positive CHECK (pixel_size_um > 0)")
    op.execute("ALTER TABLE images ADD COLUMN pixel_size_source VARCHAR(16) "
               f"CONSTRAINT ck_images_pixel_size_source CHECK (pixel_size_source IN {PIXEL_SIZE_SOURCES})")
    op.add_column("cells", sa.Column("feret_diameter_max", sa.Double, comment="largest caliper, px"))
    op.add_column("cells", sa.Column("feret_diameter_min", sa.Double, comment="smallest caliper (width), px"))
    op.create_table(
        "segmentation_quality",
        sa.Column("segmentation_id", sa.Integer, nullable=False),
        sa.Column("n_border_cells", sa.Integer, nullable=False),
        sa.Column("image_area_px", sa.BigInteger, nullable=False),
        sa.Column("crossings_x", sa.Integer, nullable=False, comment="wall crossings along the rows"),
        sa.Column("crossings_y", sa.Integer, nullable=False, comment="wall crossings along the columns"),
        sa.Column("mean_chord_x_px", sa.Double),
        sa.Column("mean_chord_y_px", sa.Double),
        sa.Column("anisotropy", sa.Double, comment="mean chord y / x"),
        sa.Column("apparent_cell_size_px", sa.Double, comment="ASTM D3576: mean chord / 0.616"),
        sa.Column("wall_fraction", sa.Double),
        sa.Column("mean_wall_thickness_px", sa.Double),
        sa.Column("d10_px", sa.Double, comment="equivalent diameter, cells off the border"),
        sa.Column("d50_px", sa.Double),
        sa.Column("d90_px", sa.Double),
        sa.Column("d10_all_px", sa.Double, comment="equivalent diameter, every cell"),
        sa.Column("d50_all_px", sa.Double),
        sa.Column("d90_all_px", sa.Double),
        sa.PrimaryKeyConstraint("segmentation_id", name="pk_segmentation_quality"),
        sa.ForeignKeyConstraint(["segmentation_id"], ["segmentations.id"],
                                name="fk_segmentation_quality_segmentation_id_segmentations", ondelete="CASCADE"),
    )
    op.execute(CELL_METRICS)
    op.execute(IMAGE_SUMMARY)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(GRANT)


def downgrade() -> None:
    op.execute("DROP VIEW image_summary")
    op.execute("DROP VIEW cell_metrics")
    op.drop_table("segmentation_quality")
    # SQLite 3.35+ (cellpipe's minimum) drops columns in place, their own CHECK with them.
    for table, name in (("cells", "feret_diameter_max"), ("cells", "feret_diameter_min"),
                        ("images", "pixel_size_source"), ("images", "pixel_size_um")):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
    op.execute(CELL_METRICS_BEFORE)
    op.execute(IMAGE_SUMMARY_BEFORE)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(GRANT.replace("segmentation_quality, ", ""))
