"""The HTML report: what it reads from the database and what it shows for each image."""

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cellpipe.db import (
    finish_run,
    mark_image_failed,
    open_database,
    register_image,
    register_model,
    start_run,
    store_segmentation,
)
from cellpipe.db.report_queries import report_data
from cellpipe.io import write_labels_tiff, write_png
from cellpipe.measure import regionprops_table
from cellpipe.report import write_report
from cellpipe.report_figures import ID_COLOUR, overlay_picture
from cellpipe.synthetic import synthetic_cells

DAY_1, DAY_2 = dt.date(2025, 3, 1), dt.date(2025, 3, 2)
PARAMETERS = {"edge_threshold": 0.5, "min_area": 16}


@dataclass
class Results:
    """A database of segmentation results on two batch dates, and the files it points to."""

    url: str
    runs: dict
    missing_labels: str  # the image whose label file was deleted
    failed: str  # the image that failed


def build_results(folder: Path, url: str | None = None) -> Results:
    """Return a database (SQLite in ``folder`` by default) of 2 + 4 images: one failed, one without labels."""
    url = url or f"sqlite:///{folder / 'cells.sqlite'}"
    engine = open_database(url)
    model_id = register_model(engine, "unet-foam", "2025.02", file_hash="ab" * 32, location="/models/unet.keras",
                              metrics={"ap50": 0.91}, make_default=True)
    runs = {}
    for day, seeds in ((DAY_1, (1, 2)), (DAY_2, (3, 4, 5))):
        runs[day] = run_id = start_run(engine, batch_date=day, parameters=PARAMETERS)
        for seed in seeds:
            sample = synthetic_cells((96, 128), seed=seed, mean_cell_diameter=20 + 2 * seed)
            image_path = write_png(folder / "images" / f"foam-{seed}.png", sample.image)
            labels_path = write_labels_tiff(folder / "labels" / f"foam-{seed}_labels.tif", sample.labels)
            content = image_path.read_bytes()
            image_id = register_image(engine, hashlib.sha256(content).hexdigest(), str(image_path),
                                      size_bytes=len(content), batch_date=day, width=128, height=96, bit_depth=8)
            store_segmentation(engine, image_id, model_id, PARAMETERS, regionprops_table(sample.labels, sample.image),
                               run_id=run_id, label_uri=str(labels_path))
        finish_run(engine, run_id, images_seen=len(seeds))
    (folder / "labels" / "foam-5_labels.tif").unlink()
    failed_id = register_image(engine, "cd" * 32, str(folder / "images" / "broken.png"), size_bytes=10,
                               batch_date=DAY_2)
    mark_image_failed(engine, failed_id, "cannot read image broken.png: the PNG data is truncated")
    engine.dispose()
    return Results(url, runs, missing_labels="foam-5.png", failed="broken.png")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return build_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def report(results, tmp_path_factory):
    engine = open_database(results.url)
    data = report_data(engine)
    engine.dispose()
    index = write_report(tmp_path_factory.mktemp("report"), data)
    return index, index.read_text(encoding="utf-8")


def names(data):
    return [Path(row["source_uri"]).name for row in data["images"]]


def test_report_data_defaults_to_the_latest_batch_date(results):
    engine = open_database(results.url)
    data = report_data(engine)
    assert data["selection"]["batch_date"] == DAY_2
    assert names(data) == ["broken.png", "foam-3.png", "foam-4.png", "foam-5.png"]


def test_report_data_of_a_run_holds_its_segmentations_with_their_cells(results):
    engine = open_database(results.url)
    data = report_data(engine, run_id=results.runs[DAY_1])
    assert names(data) == ["foam-1.png", "foam-2.png"]
    for row in data["images"]:
        assert len(row["cells"]["label"]) == row["n_cells"] > 0
        assert row["parameters"] == PARAMETERS and row["model_name"] == "unet-foam"
    assert [run["id"] for run in data["runs"]] == [results.runs[DAY_1]]


def test_trends_cover_every_date_up_to_the_selected_one(results):
    engine = open_database(results.url)
    trends = report_data(engine, batch_date=DAY_2)["trends"]
    segmented = [t for t in trends if t["model_name"] is not None]
    assert [t["batch_date"] for t in segmented] == [DAY_1, DAY_2]
    assert [t["n_segmented"] for t in segmented] == [2, 3]
    assert [t["batch_date"] for t in report_data(engine, batch_date=DAY_1)["trends"]] == [DAY_1]


def test_report_data_reads_the_same_on_sqlite_and_postgresql(db_url, tmp_path):
    results = build_results(tmp_path, db_url)
    engine = open_database(db_url)
    data = report_data(engine, batch_date=DAY_2)
    engine.dispose()
    assert names(data) == ["broken.png", "foam-3.png", "foam-4.png", "foam-5.png"]
    assert [len(row["cells"]["label"]) for row in data["images"]] == [0] + [row["n_cells"] for row in data["images"][1:]]
    segmented = [t for t in data["trends"] if t["model_name"] is not None]
    assert [(t["batch_date"], t["n_segmented"]) for t in segmented] == [(DAY_1, 2), (DAY_2, 3)]
    assert segmented[1]["area_mean"] == pytest.approx(np.average(
        [row["area_mean"] for row in data["images"][1:]], weights=[row["n_cells"] for row in data["images"][1:]]))
    assert [run["id"] for run in data["runs"]] == [results.runs[DAY_2]]


def test_report_data_refuses_an_unknown_run_and_two_selections(results):
    engine = open_database(results.url)
    with pytest.raises(LookupError, match="no run with id 999"):
        report_data(engine, run_id=999)
    with pytest.raises(ValueError, match="not both"):
        report_data(engine, batch_date=DAY_1, run_id=1)


def test_every_picture_is_a_file_in_the_report_folder_linked_relatively(report):
    index, page = report
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4 + 2  # 4 plots, overlays of foam-3 and foam-4
    for source in sources:
        assert not source.startswith(("/", "file:", "http")) and (index.parent / source).is_file()


def test_image_whose_labels_are_missing_is_reported_without_a_broken_picture(report, results):
    _, page = report
    section = page.split(f">{results.missing_labels}</h3>")[1].split("<h3")[0]
    assert "No overlay: the label image" in section and "foam-5_labels.tif is missing" in section
    assert "<img" not in section


def test_failed_image_shows_its_error(report, results):
    _, page = report
    section = page.split(f">{results.failed}</h3>")[1].split("<h3")[0]
    assert "Not segmented: cannot read image broken.png: the PNG data is truncated" in section


def test_report_names_the_model_and_parameters(report):
    _, page = report
    assert "unet-foam" in page and "2025.02" in page and "&quot;min_area&quot;: 16" in page


def id_pixels(picture):
    """Return where ``picture`` is close to the colour of cell ids (text is anti-aliased)."""
    return (np.abs(picture.astype(int) - ID_COLOUR) < 60).all(axis=2)


def test_overlay_of_a_small_image_is_enlarged_and_shows_cell_ids():
    sample = synthetic_cells((64, 64), seed=1, mean_cell_diameter=24)
    picture, with_ids = overlay_picture(sample.image, sample.labels, regionprops_table(sample.labels))
    assert with_ids and picture.shape == (256, 256, 3)  # 4 x, the largest enlargement
    assert id_pixels(picture).sum() > 3 * sample.n_cells


def test_overlay_of_a_large_image_is_shrunk_and_leaves_out_ids_of_tiny_cells():
    sample = synthetic_cells((300, 500), seed=1, mean_cell_diameter=12, wall_width=(1.5, 3.0))
    picture, with_ids = overlay_picture(sample.image, sample.labels, regionprops_table(sample.labels), max_side=250)
    assert not with_ids and picture.shape == (150, 250, 3)
    assert not id_pixels(picture).any()
