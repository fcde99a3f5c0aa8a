"""The report's "to review" section: the least confident images of the batch, from the database."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import numpy as np

from cellpipe.db import open_database, register_image, register_model, store_segmentation
from cellpipe.db.report_queries import report_data
from cellpipe.io import write_labels_tiff, write_png
from cellpipe.measure import regionprops_table
from cellpipe.report import write_report

DAY = dt.date(2025, 3, 1)


def batch_with_confidences(folder, confidences):
    """Return the URL of a database with one segmented image per entry of ``confidences`` (None: no confidence)."""
    url = f"sqlite:///{folder / 'cells.sqlite'}"
    engine = open_database(url)
    model_id = register_model(engine, "unet", "1", file_hash="ab" * 32, location="/m.keras")
    labels = np.zeros((32, 32), np.int32)
    labels[2:14, 2:14], labels[2:14, 18:30], labels[18:30, 2:14] = 1, 2, 3
    for name, confidence in confidences.items():
        image_path = write_png(folder / f"{name}.png", np.where(labels > 0, 180, 30).astype(np.uint8))
        labels_path = write_labels_tiff(folder / f"{name}_labels.tif", labels)
        image_id = register_image(engine, hashlib.sha256(name.encode()).hexdigest(), str(image_path),
                                  size_bytes=1, batch_date=DAY)
        cells = regionprops_table(labels)
        if confidence is not None:
            cells["confidence"] = np.array(confidence)
        store_segmentation(engine, image_id, model_id, {"t": 1}, cells, label_uri=str(labels_path))
    return engine


def review_rows(page: str) -> list[str]:
    section = page.split('<h2 id="to-review">To review</h2>', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<a href="#[^"]+">([^<]+)</a>', section)


def test_the_report_lists_the_least_confident_images_first_and_says_how_to_review_them(tmp_path):
    engine = batch_with_confidences(tmp_path, {"clear": [0.9, 0.95, 0.9], "murky": [0.2, 0.3, 0.9],
                                               "fair": [0.6, 0.7, 0.4], "old": None})
    data = report_data(engine, batch_date=DAY)
    engine.dispose()
    rows = {row["source_uri"].rsplit("/", 1)[-1]: row for row in data["images"]}
    assert rows["murky.png"]["low_confidence_cells"] == 2
    page = write_report(tmp_path / "report", data).read_text(encoding="utf-8")
    assert review_rows(page) == ["murky.png", "fair.png", "clear.png"]  # "old" has no confidence
    assert "cellpipe review --date 2025-03-01 --limit 3 --out DIR" in page


def test_a_batch_without_confidences_has_no_review_section(tmp_path):
    engine = batch_with_confidences(tmp_path, {"old": None})
    data = report_data(engine, batch_date=DAY)
    engine.dispose()
    page = write_report(tmp_path / "report", data).read_text(encoding="utf-8")
    assert "To review" not in page and "Per image" in page
