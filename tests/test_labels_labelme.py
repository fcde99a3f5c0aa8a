"""Labelme files ↔ cells: the real file format, each shape type, and the round trip."""

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellpipe.labelme import (
    LabelmeError,
    labelme_document,
    labels_to_shapes,
    png_bytes,
    read_labelme,
    shapes_to_cells,
    write_labelme,
)
from cellpipe.synthetic import synthetic_cells

FIXTURE = Path(__file__).parent / "fixtures" / "labelme" / "tissue.json"


def shape(points, shape_type="polygon", label="cell", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "description": "",
            "shape_type": shape_type, "flags": {}, "mask": None}


def best_iou(mask, cells):
    """Return the IoU of ``mask`` with the cell of ``cells`` that overlaps it most."""
    overlapping = cells[mask]
    overlapping = overlapping[overlapping > 0]
    if overlapping.size == 0:
        return 0.0
    match = cells == np.bincount(overlapping).argmax()
    return (mask & match).sum() / (mask | match).sum()


def test_round_trip_gives_back_every_cell_with_iou_of_at_least_0_95(tmp_path):
    sample = synthetic_cells((160, 200), kind="foam", mean_cell_diameter=28, seed=4)
    document = labelme_document(labels_to_shapes(sample.labels), image_path="foam.png",
                                shape=sample.labels.shape, image_data=png_bytes(sample.image))
    annotation = read_labelme(write_labelme(tmp_path / "foam.json", document))

    assert annotation.n_cells == sample.n_cells
    ious = [best_iou(sample.labels == cell, annotation.cells) for cell in range(1, sample.n_cells + 1)]
    assert min(ious) >= 0.95
    np.testing.assert_array_equal(annotation.image, sample.image)


def test_exact_polygons_give_back_the_labels_pixel_for_pixel():
    sample = synthetic_cells((96, 96), seed=2, mean_cell_diameter=24)
    cells, skipped = shapes_to_cells(labels_to_shapes(sample.labels, tolerance=0), sample.labels.shape)
    assert skipped == []
    np.testing.assert_array_equal(cells, sample.labels)


def test_real_labelme_5_file_with_embedded_image_converts():
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    embedded = np.asarray(Image.open(io.BytesIO(base64.b64decode(document["imageData"]))))

    annotation = read_labelme(FIXTURE)

    assert document["version"].startswith("5.")
    assert annotation.image_source == "embedded"
    np.testing.assert_array_equal(annotation.image, embedded)
    assert annotation.cells.shape == (document["imageHeight"], document["imageWidth"])
    assert annotation.n_cells == 5  # polygon, rectangle, circle, a group of two, debris
    assert annotation.skipped == ["shape 5 (point 'nucleus'): a point encloses no area"]


def test_cell_labels_choose_which_shapes_are_cells():
    annotation = read_labelme(FIXTURE, cell_labels={"cell"})
    assert annotation.n_cells == 4
    assert any("'debris'" in reason for reason in annotation.skipped)


def test_a_pixel_belongs_to_a_polygon_when_its_centre_lies_inside():
    # Labelme's canvas draws pixel (r, c) over [c, c + 1) x [r, r + 1).
    cells, _ = shapes_to_cells([shape([[2.0, 1.0], [6.0, 1.0], [6.0, 4.0], [2.0, 4.0]])], (8, 10))
    expected = np.zeros((8, 10), np.int32)
    expected[1:4, 2:6] = 1
    np.testing.assert_array_equal(cells, expected)


def test_rectangle_from_two_corners_covers_the_pixels_between_them():
    cells, _ = shapes_to_cells([shape([[7.0, 6.0], [2.0, 1.0]], "rectangle")], (8, 10))
    assert (cells == 1).sum() == 5 * 5
    rows, cols = np.nonzero(cells)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (1, 5, 2, 6)


def test_circle_from_centre_and_rim_point_covers_a_disc():
    cells, _ = shapes_to_cells([shape([[20.0, 15.0], [20.0, 25.0]], "circle")], (40, 40))
    rows, cols = np.nonzero(cells)
    assert abs(len(rows) - np.pi * 10**2) < 0.05 * np.pi * 10**2
    assert abs(rows.mean() + 0.5 - 15.0) < 0.1 and abs(cols.mean() + 0.5 - 20.0) < 0.1


def test_shapes_of_one_group_are_one_cell():
    shapes = [shape([[0, 0], [4, 0], [4, 4]], group_id=3), shape([[6, 6], [9, 6], [9, 9]], group_id=3),
              shape([[0, 6], [3, 6], [3, 9]])]
    cells, _ = shapes_to_cells(shapes, (10, 10))
    assert cells.max() == 2
    assert set(np.unique(cells[:5, :5])) - {0} == set(np.unique(cells[6:, 6:])) - {0} == {1}


def test_later_shapes_are_drawn_over_earlier_ones():
    shapes = [shape([[0, 0], [10, 10]], "rectangle"), shape([[5, 0], [10, 10]], "rectangle")]
    cells, _ = shapes_to_cells(shapes, (10, 10))
    assert (cells[:, :5] == 1).all() and (cells[:, 5:] == 2).all()


def test_a_cell_in_two_pieces_exports_as_two_polygons_of_one_group():
    labels = np.zeros((12, 12), np.int32)
    labels[1:4, 1:4] = 5
    labels[7:10, 7:10] = 5
    labels[1:4, 7:10] = 6
    shapes = labels_to_shapes(labels)
    assert [s["group_id"] for s in shapes] == [5, 5, None]
    cells, _ = shapes_to_cells(shapes, labels.shape)
    assert cells.max() == 2
    np.testing.assert_array_equal(cells > 0, labels > 0)


def test_exported_shapes_have_the_keys_labelme_5_writes():
    labels = np.zeros((6, 6), np.int32)
    labels[1:5, 1:5] = 1
    document = labelme_document(labels_to_shapes(labels), image_path="a.png", shape=labels.shape)
    assert list(document) == ["version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"]
    assert list(document["shapes"][0]) == ["label", "points", "group_id", "description", "shape_type", "flags",
                                           "mask"]


def test_image_not_embedded_is_read_from_image_path_next_to_the_file(tmp_path):
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    (tmp_path / "tissue.png").write_bytes(base64.b64decode(document["imageData"]))
    document.update(imageData=None, imagePath="C:\\Users\\someone\\tissue.png")
    (tmp_path / "tissue.json").write_text(json.dumps(document), encoding="utf-8")

    annotation = read_labelme(tmp_path / "tissue.json")

    assert annotation.image_source == str(tmp_path / "tissue.png")
    assert annotation.n_cells == 5


def test_missing_image_error_says_where_it_looked(tmp_path):
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    document.update(imageData=None, imagePath="../elsewhere/tissue.png")
    (tmp_path / "a.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(LabelmeError, match="elsewhere/tissue.png.*Save With Image Data"):
        read_labelme(tmp_path / "a.json")


def test_json_that_is_not_labelme_is_rejected(tmp_path):
    (tmp_path / "coco.json").write_text(json.dumps({"images": [], "annotations": []}), encoding="utf-8")
    with pytest.raises(LabelmeError, match="not a Labelme file"):
        read_labelme(tmp_path / "coco.json")
