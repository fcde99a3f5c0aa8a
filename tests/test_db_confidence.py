"""Per-cell confidence in the database: cells.confidence, cell_metrics, image_summary (migration 0007)."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
from db_fixtures import make_cells
from sqlalchemy import select, text

from cellpipe import db
from cellpipe.confidence import LOW_CONFIDENCE
from cellpipe.db import create_engine, upgrade
from cellpipe.db.schema import downgrade
from cellpipe.db.views import cell_metrics, image_summary

DAY = dt.date(2024, 6, 1)


def sha(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def rows(engine, statement):
    with engine.connect() as connection:
        return connection.execute(statement).all()


@pytest.fixture
def image_and_model(engine):
    image_id = db.register_image(engine, sha("img"), "/data/img.tif", size_bytes=9, batch_date=DAY)
    model_id = db.register_model(engine, "unet", "3", file_hash=sha("w"), location="/m.keras")
    return image_id, model_id


def test_each_cell_keeps_its_confidence_in_cell_metrics(engine, image_and_model):
    confidence = np.array([0.9, 0.2, 0.75, 0.49, 1.0])
    db.store_segmentation(engine, *image_and_model, {"t": 1}, {**make_cells(5), "confidence": confidence})
    stored = rows(engine, select(cell_metrics.c.confidence).order_by(cell_metrics.c.label))
    assert [value for (value,) in stored] == pytest.approx(confidence.tolist())


def test_image_summary_has_the_mean_confidence_and_counts_the_cells_below_one_half(engine, image_and_model):
    confidence = np.array([0.9, 0.2, 0.75, LOW_CONFIDENCE - 0.01, LOW_CONFIDENCE, 0.1])
    db.store_segmentation(engine, *image_and_model, {"t": 1}, {**make_cells(6), "confidence": confidence})
    ((mean, low),) = rows(engine, select(image_summary.c.mean_confidence, image_summary.c.low_confidence_cells))
    assert mean == pytest.approx(confidence.mean())
    assert low == 3


def test_cells_stored_without_a_confidence_give_null_not_zero(engine, image_and_model):
    db.store_segmentation(engine, *image_and_model, {"t": 1}, make_cells(4))
    assert {value for (value,) in rows(engine, select(cell_metrics.c.confidence))} == {None}
    assert rows(engine, select(image_summary.c.mean_confidence, image_summary.c.low_confidence_cells)) == \
        [(None, None)]


def test_a_confidence_outside_the_cells_columns_is_refused_by_name(engine, image_and_model):
    with pytest.raises(ValueError, match="confidence"):
        db.store_segmentation(engine, *image_and_model, {"t": 1},
                              {**make_cells(2), "confidence": np.array(["high", "low"])})


def test_migration_0007_keeps_older_cells_and_downgrades_to_0006(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        upgrade(engine, "0006")
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO images (id, content_hash, source_uri, size_bytes, width, height, batch_date, status) "
                "VALUES (1, :hash, '/old.tif', 10, 64, 64, :day, 'segmented')"), {"hash": sha("old"), "day": DAY})
            connection.execute(text(
                "INSERT INTO models (id, name, version, file_hash, location, card, metrics, cloud_ids, is_default) "
                "VALUES (1, 'unet', '1', :hash, '/m.keras', '{}', '{}', '{}', false)"), {"hash": sha("m")})
            connection.execute(text(
                "INSERT INTO segmentations (id, image_id, model_id, param_hash, parameters, n_cells, timings) "
                "VALUES (3, 1, 1, :hash, '{}', 2, '{}')"), {"hash": sha("p")})
            for label, area in ((1, 40), (2, 90)):
                connection.execute(text(
                    "INSERT INTO cells (segmentation_id, label, area, centroid_0, centroid_1, bbox_0, bbox_1, "
                    "bbox_2, bbox_3, perimeter, equivalent_diameter_area) "
                    "VALUES (3, :label, :area, 5, 6, 0, 0, 9, 9, 20, 7)"), {"label": label, "area": area})
        before, after = upgrade(engine, "0007")
        assert (before.current, after.current) == ("0006", "0007")
        assert rows(engine, select(cell_metrics.c.label, cell_metrics.c.confidence).order_by(cell_metrics.c.label)) \
            == [(1, None), (2, None)]
        assert rows(engine, select(image_summary.c.n_cells, image_summary.c.area_mean,
                                   image_summary.c.mean_confidence)) == [(2, 65.0, None)]
        downgrade(engine, "0006")
        assert rows(engine, text("SELECT label, area FROM cell_metrics ORDER BY label")) == [(1, 40), (2, 90)]
        with pytest.raises(Exception, match="confidence"):
            rows(engine, text("SELECT confidence FROM cells"))
    finally:
        engine.dispose()
