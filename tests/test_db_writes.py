"""Writes: images, runs and segmentations are idempotent, atomic and complete."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
from db_fixtures import make_cells
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cellpipe import db
from cellpipe.db import Cell, Image, Run, Segmentation

DAY = dt.date(2024, 6, 1)
PARAMETERS = {"edge_threshold": 0.5, "min_area": 16}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_image(engine, name: str = "a.tif") -> int:
    return db.register_image(engine, sha(name), f"/data/{name}", size_bytes=1234, batch_date=DAY, bit_depth=8)


def new_model(engine, version: str = "1") -> int:
    return db.register_model(engine, "unet", version, file_hash=sha(f"model {version}"), location="/m.keras")


def count(engine, column_or_entity, *where) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(column_or_entity).where(*where)).scalar_one()


def test_registering_the_same_bytes_twice_returns_the_same_image(engine):
    first = db.register_image(engine, sha("x"), "/a/x.tif", size_bytes=10, batch_date=DAY)
    second = db.register_image(engine, sha("x"), "/b/copy-of-x.tif", size_bytes=10, batch_date=DAY + dt.timedelta(1))
    assert first == second
    with engine.connect() as connection:
        image = connection.execute(select(Image).where(Image.id == first)).one()
    assert (image.source_uri, image.batch_date, image.status) == ("/a/x.tif", DAY, "registered")
    assert count(engine, Image) == 1


def test_an_image_hash_must_be_a_sha256_digest(engine):
    with pytest.raises(ValueError, match="sha256"):
        db.register_image(engine, "not-a-hash", "/x.tif", size_bytes=1, batch_date=DAY)


def test_cells_are_stored_under_their_sql_names_with_x_and_y(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    cells = make_cells(50, intensity=7.5)
    segmentation_id = db.store_segmentation(engine, image_id, model_id, PARAMETERS, cells)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Cell).where(Cell.segmentation_id == segmentation_id).order_by(Cell.label)
        ).all()
    assert [row.label for row in rows] == cells["label"].tolist()
    assert [row.area for row in rows] == cells["area"].tolist()
    np.testing.assert_allclose([row.centroid_0 for row in rows], cells["centroid-0"])
    np.testing.assert_allclose([row.x for row in rows], cells["centroid-1"])
    np.testing.assert_allclose([row.y for row in rows], cells["centroid-0"])
    assert [row.bbox_3 for row in rows] == cells["bbox-3"].tolist()
    np.testing.assert_allclose([row.eccentricity for row in rows], cells["eccentricity"])
    assert [row.touches_border for row in rows] == cells["touches_border"].tolist()
    assert {row.intensity_mean for row in rows} == {7.5}


def test_storing_the_same_key_again_replaces_the_cells(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    first = db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(80, seed=1))
    second = db.store_segmentation(engine, image_id, model_id, dict(PARAMETERS), make_cells(30, seed=2))
    assert first == second
    assert count(engine, Segmentation) == 1
    assert count(engine, Cell) == 30
    with engine.connect() as connection:
        areas = connection.execute(select(Cell.area).order_by(Cell.label)).scalars().all()
    assert areas == make_cells(30, seed=2)["area"].tolist()


def test_other_parameters_are_stored_as_another_segmentation(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    db.store_segmentation(engine, image_id, model_id, {"min_area": 16}, make_cells(10))
    db.store_segmentation(engine, image_id, model_id, {"min_area": 32}, make_cells(5))
    assert count(engine, Segmentation) == 2
    assert count(engine, Cell) == 15


def test_what_the_pipeline_chose_per_image_is_stored_with_the_parameters_but_not_in_their_hash(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    scale = {"cell_diameter": 31.5, "factor": 0.8889, "source": "estimated", "passes": 2}
    first = db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(4), chosen={"scale": scale})
    again = db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(4),
                                  chosen={"scale": {**scale, "passes": 1}})
    assert first == again and db.is_segmented(engine, image_id, model_id, db.parameter_hash(PARAMETERS))
    with engine.connect() as connection:
        stored = connection.execute(select(Segmentation.parameters)).scalar_one()
    assert stored == {**PARAMETERS, "scale": {**scale, "passes": 1}}


def test_nan_statistics_are_stored_as_null(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    cells = make_cells(3)
    cells["eccentricity"] = np.array([0.5, np.nan, 0.25])
    db.store_segmentation(engine, image_id, model_id, PARAMETERS, cells)
    with engine.connect() as connection:
        values = connection.execute(select(Cell.eccentricity).order_by(Cell.label)).scalars().all()
    assert values == [0.5, None, 0.25]


def test_absent_intensity_statistics_are_stored_as_null(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(4))
    with engine.connect() as connection:
        values = connection.execute(select(Cell.intensity_mean)).scalars().all()
    assert values == [None] * 4


def test_an_empty_segmentation_is_stored_with_zero_cells(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(0))
    with engine.connect() as connection:
        assert connection.execute(select(Segmentation.n_cells)).scalar_one() == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda cells: cells.update(label=np.ones(len(cells["label"]), dtype=int)), "unique"),
        (lambda cells: cells.update(solidity=np.zeros(len(cells["label"]))), "unknown"),
        (lambda cells: cells.pop("area"), "missing"),
        (lambda cells: cells.update(perimeter=np.zeros(3)), "one length"),
        (lambda cells: cells.update(area=cells["area"] + 0.5), "integers"),
        (lambda cells: cells.update({"centroid-0": np.full(len(cells["label"]), np.nan)}), "NaN"),
    ],
    ids=["duplicate-labels", "unknown-column", "missing-column", "ragged", "fractional-area", "nan-centroid"],
)
def test_invalid_cells_are_rejected_before_anything_is_written(engine, change, message):
    image_id, model_id = new_image(engine), new_model(engine)
    cells = make_cells(10)
    change(cells)
    with pytest.raises(ValueError, match=message):
        db.store_segmentation(engine, image_id, model_id, PARAMETERS, cells)
    assert count(engine, Segmentation) == 0


def test_storing_for_an_unknown_image_raises_lookup_error(engine):
    model_id = new_model(engine)
    with pytest.raises(LookupError, match="image 999"):
        db.store_segmentation(engine, 999, model_id, PARAMETERS, make_cells(5))
    assert count(engine, Cell) == 0


def test_a_store_that_fails_midway_leaves_the_earlier_result_intact(engine, monkeypatch):
    image_id, model_id = new_image(engine), new_model(engine)
    db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(20))

    def broken_insert(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("cellpipe.db.writes.insert_cells", broken_insert)
    with pytest.raises(RuntimeError, match="disk full"):
        db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(5))
    assert count(engine, Cell) == 20
    with engine.connect() as connection:
        assert connection.execute(select(Segmentation.n_cells)).scalar_one() == 20


def test_a_session_bind_joins_the_callers_transaction(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    with Session(engine) as session:
        db.store_segmentation(session, image_id, model_id, PARAMETERS, make_cells(5))
        assert session.scalar(select(func.count()).select_from(Cell)) == 5
        session.rollback()
    assert count(engine, Cell) == 0


def test_is_segmented_is_true_only_for_the_stored_key(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    key = db.parameter_hash(PARAMETERS)
    assert not db.is_segmented(engine, image_id, model_id, key)
    db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(3))
    assert db.is_segmented(engine, image_id, model_id, key)
    assert not db.is_segmented(engine, image_id, model_id, db.parameter_hash({"min_area": 99}))


def test_a_failed_image_keeps_its_error_until_it_is_segmented(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    db.mark_image_failed(engine, image_id, "TIFF decode error: truncated strip")
    with engine.connect() as connection:
        assert connection.execute(select(Image.status, Image.last_error)).one() == (
            "failed",
            "TIFF decode error: truncated strip",
        )
    db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(3))
    with engine.connect() as connection:
        assert connection.execute(select(Image.status, Image.last_error)).one() == ("segmented", None)


def test_a_finished_run_counts_what_it_stored(engine):
    model_id = new_model(engine)
    run_id = db.start_run(engine, batch_date=DAY, parameters=PARAMETERS)
    for name, n_cells in (("a.tif", 4), ("b.tif", 6)):
        db.store_segmentation(engine, new_image(engine, name), model_id, PARAMETERS, make_cells(n_cells), run_id=run_id)
    db.finish_run(engine, run_id, images_seen=3, images_failed=1)
    with engine.connect() as connection:
        run = connection.execute(select(Run)).one()
    assert (run.status, run.images_seen, run.images_segmented, run.images_failed, run.cells_stored) == (
        "succeeded",
        3,
        2,
        1,
        10,
    )
    assert run.finished_at is not None and run.parameters == PARAMETERS


def test_parameter_hash_ignores_key_order_and_number_spelling():
    assert db.parameter_hash({"a": 1, "b": 0.5}) == db.parameter_hash({"b": np.float64(0.5), "a": 1.0})


def test_parameter_hash_changes_when_a_value_changes():
    assert db.parameter_hash({"min_area": 16}) != db.parameter_hash({"min_area": 17})


def test_deleting_an_image_deletes_its_segmentations_and_cells(engine):
    image_id, model_id = new_image(engine), new_model(engine)
    kept_image = new_image(engine, "kept.tif")
    db.store_segmentation(engine, image_id, model_id, PARAMETERS, make_cells(6))
    db.store_segmentation(engine, kept_image, model_id, PARAMETERS, make_cells(4))
    with engine.begin() as connection:
        connection.execute(Image.__table__.delete().where(Image.id == image_id))
    assert count(engine, Segmentation) == 1
    assert count(engine, Cell) == 4
