"""Views: cell_metrics (latest cells with lineage) and image_summary (per-image statistics)."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
from db_fixtures import make_cells
from sqlalchemy import select

from cellpipe import db
from cellpipe.db.views import cell_metrics, image_summary

DAY = dt.date(2024, 6, 1)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def image_and_model(engine):
    image_id = db.register_image(engine, sha("img"), "/data/img.tif", size_bytes=9, batch_date=DAY)
    model_id = db.register_model(engine, "unet", "3", file_hash=sha("w"), location="/m.keras")
    return image_id, model_id


def rows(engine, statement):
    with engine.connect() as connection:
        return connection.execute(statement).all()


def test_cell_metrics_shows_each_cell_with_its_image_and_model(engine, image_and_model):
    image_id, model_id = image_and_model
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, make_cells(5))
    result = rows(engine, select(cell_metrics).order_by(cell_metrics.c.label))
    assert [row.label for row in result] == [1, 2, 3, 4, 5]
    assert {(row.image_hash, row.source_uri, row.batch_date, row.model_name, row.model_version) for row in result} == {
        (sha("img"), "/data/img.tif", DAY, "unet", "3")
    }


def test_cell_metrics_keeps_only_the_latest_result_per_image_and_model(engine, image_and_model):
    image_id, model_id = image_and_model
    other_model = db.register_model(engine, "unet", "4", file_hash=sha("w4"), location="/m4.keras")
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, make_cells(5))
    latest = db.store_segmentation(engine, image_id, model_id, {"t": 2}, make_cells(3))
    other = db.store_segmentation(engine, image_id, other_model, {"t": 1}, make_cells(2))
    result = rows(engine, select(cell_metrics.c.segmentation_id, cell_metrics.c.label))
    assert sorted(result) == sorted([(latest, 1), (latest, 2), (latest, 3), (other, 1), (other, 2)])


@pytest.mark.parametrize("n_cells", [7, 8], ids=["odd", "even"])
def test_image_summary_statistics_match_numpy(engine, image_and_model, n_cells):
    image_id, model_id = image_and_model
    cells = make_cells(n_cells, seed=n_cells)
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, cells)
    (summary,) = rows(engine, select(image_summary))
    area, diameter = cells["area"].astype(float), cells["equivalent_diameter_area"]
    assert summary.n_cells == n_cells
    assert summary.area_mean == pytest.approx(np.mean(area))
    assert summary.area_median == pytest.approx(np.median(area))
    assert summary.area_std == pytest.approx(np.std(area, ddof=1))
    assert summary.diameter_mean == pytest.approx(np.mean(diameter))
    assert summary.diameter_median == pytest.approx(np.median(diameter))
    assert summary.diameter_std == pytest.approx(np.std(diameter, ddof=1))


def test_image_summary_std_of_a_single_cell_is_null(engine, image_and_model):
    image_id, model_id = image_and_model
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, make_cells(1))
    (summary,) = rows(engine, select(image_summary))
    assert (summary.n_cells, summary.area_std, summary.area_median) == (1, None, pytest.approx(summary.area_mean))


def test_image_summary_lists_failed_images_with_their_error(engine, image_and_model):
    image_id, _ = image_and_model
    db.mark_image_failed(engine, image_id, "unreadable")
    (summary,) = rows(engine, select(image_summary))
    assert (summary.status, summary.last_error, summary.model_id, summary.n_cells) == ("failed", "unreadable", None, None)


def test_views_have_the_columns_their_table_descriptions_declare(engine, image_and_model):
    image_id, model_id = image_and_model
    db.store_segmentation(engine, image_id, model_id, {"t": 1}, make_cells(2))
    with engine.connect() as connection:
        for view in (cell_metrics, image_summary):
            result = connection.exec_driver_sql(f"SELECT * FROM {view.name}")
            assert list(result.keys()) == [column.name for column in view.columns]
