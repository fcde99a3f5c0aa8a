"""The review queue: the least confident images of a batch, written as Labelme projects."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cellpipe import db
from cellpipe.cli import app
from cellpipe.cli import commands_review  # noqa: F401  (registers the command)
from cellpipe.io import write_labels_tiff, write_png
from cellpipe.labelme import read_labelme
from cellpipe.matching import matching
from cellpipe.measure import regionprops_table
from cellpipe.review import QUEUE_FILE, cell_descriptions, review_queue

DAY = dt.date(2024, 6, 1)
runner = CliRunner()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def squares(n_cells: int, shape=(48, 64)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for index in range(n_cells):
        row, col = divmod(index, 4)
        labels[2 + 15 * row:13 + 15 * row, 2 + 15 * col:13 + 15 * col] = index + 1
    return labels


@pytest.fixture
def batch(tmp_path):
    """Return the URL of a database with four segmented images: three of DAY, one of the day before."""
    url = f"sqlite:///{tmp_path / 'cells.db'}"
    engine = db.open_database(url)
    model_id = db.register_model(engine, "unet", "1", file_hash=sha("m"), location="/m.keras")
    # name, batch date, confidence of each cell
    images = [("sure", DAY, [0.95, 0.9, 0.92]), ("unsure", DAY, [0.3, 0.9, 0.2, 0.6]),
              ("middling", DAY, [0.7, 0.4, 0.8]), ("yesterday", DAY - dt.timedelta(days=1), [0.1, 0.1, 0.1])]
    for name, day, confidence in images:
        labels = squares(len(confidence))
        image = np.where(labels > 0, 200, 40).astype(np.uint8)
        write_png(tmp_path / "images" / f"{name}.png", image)
        label_path = write_labels_tiff(tmp_path / "results" / f"{name}_labels.tif", labels)
        image_id = db.register_image(engine, sha(name), str(tmp_path / "images" / f"{name}.png"),
                                     size_bytes=1, batch_date=day)
        cells = {**regionprops_table(labels), "confidence": np.array(confidence)}
        db.store_segmentation(engine, image_id, model_id, {"t": 1}, cells, label_uri=str(label_path))
    engine.dispose()
    return url


def test_review_writes_the_images_with_the_lowest_mean_confidence_lowest_first(batch, tmp_path):
    out = tmp_path / "review"
    result = runner.invoke(app, ["review", "--date", DAY.isoformat(), "--limit", "2", "--out", str(out), "--db", batch])
    assert result.exit_code == 0, result.output
    with open(out / QUEUE_FILE) as handle:
        queue = list(csv.DictReader(handle))
    assert [row["labelme_file"] for row in queue] == ["unsure.json", "middling.json"]
    assert float(queue[0]["mean_confidence"]) == pytest.approx(0.5)
    assert [int(row["low_confidence_cells"]) for row in queue] == [2, 1]
    assert sorted(p.name for p in out.glob("*.json")) == ["middling.json", "unsure.json"]


def test_each_review_file_holds_the_model_cells_with_the_low_ones_flagged(batch, tmp_path):
    out = tmp_path / "review"
    result = runner.invoke(app, ["review", "--date", DAY.isoformat(), "--limit", "1", "--out", str(out), "--db", batch])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "unsure.json").read_text())
    descriptions = [shape["description"] for shape in document["shapes"]]
    assert descriptions == ["LOW CONFIDENCE 0.30: check this cell", "confidence 0.90",
                            "LOW CONFIDENCE 0.20: check this cell", "confidence 0.60"]
    annotation = read_labelme(out / "unsure.json")  # the image is embedded and the polygons are the cells
    assert annotation.image.shape == (48, 64)
    assert matching(squares(4), annotation.cells, thresh=0.9).tp == 4


def test_review_of_a_batch_without_confidences_says_so(batch, tmp_path):
    result = runner.invoke(app, ["review", "--date", "2020-01-01", "--out", str(tmp_path / "r"), "--db", batch])
    assert result.exit_code == 1
    assert "no segmented image of the batch of 2020-01-01 has cell confidences" in result.output


def test_an_image_segmented_by_two_models_is_queued_once_for_the_one_it_trusts_least():
    rows = [{"image_id": 1, "segmentation_id": 10, "source_uri": "/a.png", "mean_confidence": 0.6},
            {"image_id": 1, "segmentation_id": 11, "source_uri": "/a.png", "mean_confidence": 0.2},
            {"image_id": 2, "segmentation_id": 12, "source_uri": "/b.png", "mean_confidence": 0.4},
            {"image_id": 3, "segmentation_id": 13, "source_uri": "/c.png", "mean_confidence": 0.9}]
    queue = review_queue(rows, limit=2)
    assert [(item.image_id, item.segmentation_id) for item in queue] == [(1, 11), (2, 12)]
    with pytest.raises(ValueError, match="at least 1"):
        review_queue(rows, limit=0)


def test_cells_stored_without_a_confidence_get_no_flag():
    assert cell_descriptions([1, 2], [np.nan, 0.1]) == {1: "", 2: "LOW CONFIDENCE 0.10: check this cell"}
