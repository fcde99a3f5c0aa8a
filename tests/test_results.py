"""The result files of one image: label TIFF, per-cell CSV, overlay PNG."""

import csv
import io
import os
import pathlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellpipe.measure import regionprops_table
from cellpipe.overlay import CENTROID_COLOUR, OUTLINE_COLOUR, outlines, overlay
from cellpipe.results import cells_csv_bytes, result_files, write_results


def two_cells():
    labels = np.zeros((20, 30), np.int32)
    labels[2:10, 2:12] = 1
    labels[12:18, 15:28] = 7
    image = np.linspace(0, 1000, labels.size).reshape(labels.shape).astype(np.uint16)
    return image, labels, regionprops_table(labels, intensity_image=image)


def test_label_tiff_round_trips_as_uint32():
    image, labels, cells = two_cells()
    files = result_files("a", image, labels, cells)
    stored = tifffile.imread(io.BytesIO(files["a_labels.tif"]))
    assert stored.dtype == np.uint32
    np.testing.assert_array_equal(stored, labels)


def test_cells_csv_has_one_row_per_cell_with_exact_floats():
    _, _, cells = two_cells()
    rows = list(csv.DictReader(io.StringIO(cells_csv_bytes(cells).decode())))
    assert [int(r["label"]) for r in rows] == [1, 7]
    assert [float(r["centroid-1"]) for r in rows] == cells["centroid-1"].tolist()
    assert [r["touches_border"] for r in rows] == ["0", "0"]


def test_overlay_is_only_written_when_asked():
    image, labels, cells = two_cells()
    assert sorted(result_files("a", image, labels, cells)) == ["a_cells.csv", "a_labels.tif"]
    files = result_files("a", image, labels, cells, with_overlay=True)
    picture = np.asarray(Image.open(io.BytesIO(files["a_overlay.png"])))
    assert picture.shape == (20, 30, 3)


def test_overlay_draws_outlines_inside_cells_and_centroid_crosses():
    image, labels, cells = two_cells()
    centroids = np.column_stack([cells["centroid-0"], cells["centroid-1"]])
    picture = overlay(image, labels, centroids, marker_radius=1)
    edge = outlines(labels)
    assert edge[2, 5] and edge[9, 5] and not edge[5, 5] and not edge[0, 0]
    assert tuple(picture[2, 5]) == OUTLINE_COLOUR
    row, col = np.rint(centroids[0]).astype(int)
    assert tuple(picture[row, col]) == CENTROID_COLOUR
    assert picture[0, 0, 0] == picture[0, 0, 1] == picture[0, 0, 2]  # gray background


def test_write_results_leaves_no_temporary_files(tmp_path):
    image, labels, cells = two_cells()
    paths = write_results(tmp_path / "out", result_files("a", image, labels, cells))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_write_results_syncs_the_folder_once_for_all_the_files(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda descriptor: synced.append(descriptor))
    image, labels, cells = two_cells()
    files = result_files("a", image, labels, cells, with_overlay=True)
    write_results(tmp_path / "out", files)
    assert len(files) == 3 and len(synced) == 1
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_write_results_that_fail_midway_leave_no_file_under_a_final_name(tmp_path, monkeypatch):
    written = []
    real_write_bytes = pathlib.Path.write_bytes

    def write_bytes(path, data):
        if written:
            raise OSError("disk full")
        written.append(path)
        return real_write_bytes(path, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    image, labels, cells = two_cells()
    with pytest.raises(OSError, match="disk full"):
        write_results(tmp_path / "out", result_files("a", image, labels, cells))
    assert list((tmp_path / "out").iterdir()) == []
