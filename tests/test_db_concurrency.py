"""Two processes writing at the same time: each (image, model, parameters) ends up stored once.

Both processes start on an empty database (so they also race on the first-use
upgrade, on registering the same model and on registering the same images) and store
overlapping image sets, each with its own cell count and an intensity that marks the
writer, so a mix of two writers' cells in one segmentation would show.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing

from db_fixtures import make_cells
from sqlalchemy import func, select

from cellpipe import db
from cellpipe.db import Cell, Image, Model, Segmentation

N_IMAGES = 24
PARAMETERS = {"edge_threshold": 0.5}
WRITERS = {1: range(0, 16), 2: range(8, 24)}  # images 8..15 are written by both
CELLS_PER_WRITER = {1: 120, 2: 70}


def _image_hash(index: int) -> str:
    return hashlib.sha256(f"image {index}".encode()).hexdigest()


def _write(url: str, writer: int, barrier) -> None:
    barrier.wait(timeout=60)
    engine = db.open_database(url)
    try:
        model_id = db.register_model(
            engine, "unet", "1", file_hash=hashlib.sha256(b"weights").hexdigest(), location="/m.keras"
        )
        indices = list(WRITERS[writer])
        for index in indices if writer == 1 else reversed(indices):
            image_id = db.register_image(
                engine, _image_hash(index), f"/w{writer}/{index}.tif", size_bytes=100, batch_date=dt.date(2024, 1, 1)
            )
            cells = make_cells(CELLS_PER_WRITER[writer], seed=index, intensity=float(writer))
            db.store_segmentation(engine, image_id, model_id, PARAMETERS, cells)
    finally:
        engine.dispose()


def test_two_processes_storing_overlapping_images_store_each_key_once(empty_db_url):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [context.Process(target=_write, args=(empty_db_url, writer, barrier)) for writer in WRITERS]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    assert [process.exitcode for process in processes] == [0, 0]

    engine = db.open_database(empty_db_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(Model)).scalar_one() == 1
            assert connection.execute(select(func.count()).select_from(Image)).scalar_one() == N_IMAGES
            keys = connection.execute(
                select(Segmentation.image_id, Segmentation.model_id, Segmentation.param_hash)
            ).all()
            assert len(keys) == len(set(keys)) == N_IMAGES
            per_segmentation = connection.execute(
                select(
                    Segmentation.n_cells,
                    func.count(Cell.label),
                    func.min(Cell.intensity_mean),
                    func.max(Cell.intensity_mean),
                )
                .join(Cell, Cell.segmentation_id == Segmentation.id)
                .group_by(Segmentation.id, Segmentation.n_cells)
            ).all()
    finally:
        engine.dispose()
    assert len(per_segmentation) == N_IMAGES
    for n_cells, stored, first_writer, last_writer in per_segmentation:
        assert first_writer == last_writer, "cells of two writers mixed in one segmentation"
        assert n_cells == stored == CELLS_PER_WRITER[int(first_writer)]
