"""Pixel sizes and quality figures in the database: migration 0006 on a database with
rows, µm columns of the views (NULL when the size is unknown), exports, validation."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib

import numpy as np
import pytest
from db_fixtures import make_cells
from sqlalchemy import select, text

from cellpipe import db
from cellpipe.db.engine import create_engine
from cellpipe.db.schema import upgrade
from cellpipe.db.views import cell_metrics, image_summary

DAY = dt.date(2024, 6, 1)
QUALITY = {"n_cells": 5, "n_border_cells": 1, "image_area_px": 10_000, "crossings_x": 40, "crossings_y": 30,
           "mean_chord_x_px": 20.0, "mean_chord_y_px": 30.0, "anisotropy": 1.5,
           "apparent_cell_size_px": 25.0 / 0.616, "wall_fraction": 0.2, "mean_wall_thickness_px": 3.0,
           "d10_px": 10.0, "d50_px": 20.0, "d90_px": 30.0, "d10_all_px": 8.0, "d50_all_px": 19.0,
           "d90_all_px": 31.0}


def sha(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def rows(engine, statement):
    with engine.connect() as connection:
        return connection.execute(statement).all()


def cells_with_feret(n_cells: int) -> dict[str, np.ndarray]:
    cells = make_cells(n_cells)
    cells["feret_diameter_max"] = cells["axis_major_length"] + 1.0
    cells["feret_diameter_min"] = cells["axis_minor_length"] - 0.5
    return cells


@pytest.fixture
def segmented(engine):
    image_id = db.register_image(engine, sha("img"), "/data/img.tif", size_bytes=9, batch_date=DAY,
                                 width=100, height=100)
    model_id = db.register_model(engine, "unet", "3", file_hash=sha("w"), location="/m.keras")
    cells = cells_with_feret(5)
    segmentation_id = db.store_segmentation(engine, image_id, model_id, {"t": 1}, cells, quality=QUALITY)
    return image_id, model_id, segmentation_id, cells


def test_micrometre_columns_are_pixels_times_the_pixel_size(engine, segmented):
    image_id, _, _, cells = segmented
    db.record_pixel_size(engine, image_id, 0.5, "ome")
    result = rows(engine, select(cell_metrics).order_by(cell_metrics.c.label))
    assert [row.pixel_size_um for row in result] == [0.5] * 5
    assert [row.area_um2 for row in result] == [area * 0.5 * 0.5 for area in cells["area"].tolist()]
    for row, index in zip(result, range(5)):
        assert row.perimeter_um == pytest.approx(cells["perimeter"][index] * 0.5, rel=1e-15)
        assert row.equivalent_diameter_um == pytest.approx(cells["equivalent_diameter_area"][index] * 0.5)
        assert row.x_um == pytest.approx(cells["centroid-1"][index] * 0.5)
        assert row.y_um == pytest.approx(cells["centroid-0"][index] * 0.5)
        assert row.feret_diameter_max == pytest.approx(cells["feret_diameter_max"][index])
        assert row.feret_diameter_min_um == pytest.approx(cells["feret_diameter_min"][index] * 0.5)


def test_image_summary_has_quality_figures_in_pixels_and_micrometres(engine, segmented):
    image_id = segmented[0]
    db.record_pixel_size(engine, image_id, 2.0, "setting")
    (row,) = rows(engine, select(image_summary))
    assert (row.pixel_size_um, row.pixel_size_source) == (2.0, "setting")
    assert row.cells_per_mm2 == pytest.approx(5 / (10_000 * 4.0) * 1e6)  # 125 cells/mm²
    assert (row.mean_chord_x_px, row.mean_chord_x_um, row.mean_chord_y_um) == (20.0, 40.0, 60.0)
    assert row.anisotropy == 1.5 and row.wall_fraction == 0.2
    assert row.apparent_cell_size_um == pytest.approx(50.0 / 0.616)
    assert (row.d10_um, row.d50_um, row.d90_um, row.d90_all_um) == (20.0, 40.0, 60.0, 62.0)
    assert row.mean_wall_thickness_um == 6.0 and row.n_border_cells == 1
    assert row.area_mean_um2 == pytest.approx(row.area_mean * 4.0)
    assert row.diameter_median_um == pytest.approx(row.diameter_median * 2.0)


def test_unknown_pixel_size_gives_null_micrometres_not_zeros(engine, segmented):
    (summary,) = rows(engine, select(image_summary))
    assert summary.pixel_size_um is None and summary.pixel_size_source is None
    assert summary.cells_per_mm2 is None and summary.mean_chord_x_um is None and summary.d50_um is None
    assert summary.mean_chord_x_px == 20.0  # the pixel figures are there
    metrics = rows(engine, select(cell_metrics))
    assert {(row.area_um2, row.perimeter_um, row.x_um, row.feret_diameter_max_um) for row in metrics} == \
        {(None, None, None, None)}


def test_storing_again_replaces_the_quality_figures_and_deleting_drops_them(engine, segmented):
    image_id, model_id, segmentation_id, cells = segmented
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, cells, quality={**QUALITY, "anisotropy": 0.9})
    assert rows(engine, text("SELECT anisotropy FROM segmentation_quality")) == [(0.9,)]
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, cells)  # no figures this time
    assert rows(engine, text("SELECT count(*) FROM segmentation_quality")) == [(0,)]
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, cells, quality=QUALITY)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM segmentations WHERE id = :id"), {"id": segmentation_id})
    assert rows(engine, text("SELECT count(*) FROM segmentation_quality")) == [(0,)]


def test_a_later_pixel_size_replaces_the_earlier_one_and_can_be_unknown(engine, segmented):
    image_id = segmented[0]
    db.record_pixel_size(engine, image_id, 0.5, "tiff")
    db.record_pixel_size(engine, image_id, 0.7, "setting")
    assert rows(engine, text("SELECT pixel_size_um, pixel_size_source FROM images")) == [(0.7, "setting")]
    db.record_pixel_size(engine, image_id, None, None)
    assert rows(engine, text("SELECT pixel_size_um, pixel_size_source FROM images")) == [(None, None)]


@pytest.mark.parametrize("size, source, message", [
    (0.0, "ome", "> 0"), (-1.0, "ome", "> 0"), (0.5, "guess", "source"), (0.5, None, "needs its source"),
    (None, "ome", "needs its source"),
])
def test_record_pixel_size_refuses_invalid_values(engine, segmented, size, source, message):
    with pytest.raises(ValueError, match=message):
        db.record_pixel_size(engine, segmented[0], size, source)


def test_the_database_refuses_an_invalid_pixel_size_itself(engine, segmented):
    with pytest.raises(Exception, match="(?i)check"):
        with engine.begin() as connection:
            connection.execute(text("UPDATE images SET pixel_size_um = -2, pixel_size_source = 'ome'"))


def test_export_of_images_carries_the_quality_figures(engine, db_url, segmented, tmp_path):
    db.record_pixel_size(engine, segmented[0], 2.0, "imagej")
    out = tmp_path / "images.csv"
    assert db.export(db_url, "images", out) == 1
    (row,) = list(csv.DictReader(out.open()))
    assert float(row["cells_per_mm2"]) == pytest.approx(125.0)
    assert float(row["mean_chord_y_um"]) == 60.0 and row["pixel_size_source"] == "imagej"


def test_migration_0006_keeps_the_rows_of_an_older_database(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        upgrade(engine, "0005")
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO images (id, content_hash, source_uri, size_bytes, width, height, batch_date, status) "
                "VALUES (1, :hash, '/old.tif', 10, 64, 64, :day, 'segmented')"), {"hash": sha("old"), "day": DAY})
            connection.execute(text(
                "INSERT INTO models (id, name, version, file_hash, location, card, metrics, cloud_ids, is_default) "
                "VALUES (1, 'unet', '1', :hash, '/m.keras', '{}', '{}', '{}', false)"), {"hash": sha("m")})
            connection.execute(text(
                "INSERT INTO runs (id, code_version, host, parameters, status) VALUES (7, 'x', 'h', '{}', 'succeeded')"))
            connection.execute(text(
                "INSERT INTO segmentations (id, image_id, model_id, param_hash, parameters, run_id, n_cells, timings) "
                "VALUES (3, 1, 1, :hash, '{}', 7, 2, '{}')"), {"hash": sha("p")})
            for label, area in ((1, 40), (2, 90)):
                connection.execute(text(
                    "INSERT INTO cells (segmentation_id, label, area, centroid_0, centroid_1, bbox_0, bbox_1, "
                    "bbox_2, bbox_3, perimeter, equivalent_diameter_area) "
                    "VALUES (3, :label, :area, 5, 6, 0, 0, 9, 9, 20, 7)"), {"label": label, "area": area})
        before, after = upgrade(engine, "0006")
        assert (before.current, after.current) == ("0005", "0006")
        assert rows(engine, text("SELECT run_id FROM segmentations")) == [(7,)]
        metrics = rows(engine, select(cell_metrics.c.label, cell_metrics.c.area, cell_metrics.c.area_um2,
                                      cell_metrics.c.feret_diameter_max).order_by(cell_metrics.c.label))
        assert metrics == [(1, 40, None, None), (2, 90, None, None)]
        summary = image_summary.c  # only columns 0006 has: later revisions add more
        assert rows(engine, select(summary.n_cells, summary.area_mean, summary.pixel_size_um,
                                   summary.mean_chord_x_px)) == [(2, 65.0, None, None)]
        db.record_pixel_size(engine, 1, 0.25, "tiff")  # an old image gets a size: its µm figures appear
        assert rows(engine, select(cell_metrics.c.area_um2).order_by(cell_metrics.c.label)) == \
            [(40 * 0.0625,), (90 * 0.0625,)]
    finally:
        engine.dispose()
