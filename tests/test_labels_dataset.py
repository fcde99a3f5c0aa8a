"""Hand labels → training pairs with a mapping file, and the checks of a training folder."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from cellpipe.dataset_check import check_dataset, check_label
from cellpipe.io import read_image, write_labels_tiff, write_png
from cellpipe.labelme import read_labelme
from cellpipe.labels import (
    LabelConversionError,
    TrainingSet,
    convert_labelme,
    convert_painted,
    export_labelme,
    find_original,
    label_sources,
    read_mapping,
    training_label,
)
from cellpipe.synthetic import synthetic_cells

FIXTURE = Path(__file__).parent / "fixtures" / "labelme" / "tissue.json"


@pytest.fixture(scope="module")
def sample():
    return synthetic_cells((96, 128), kind="foam", mean_cell_diameter=24, seed=5)


def test_touching_cells_get_a_wall_of_the_edge_width():
    cells = np.repeat([[1] * 6 + [2] * 6], 4, axis=0)
    for width in (1, 2, 3, 4):
        label = training_label(cells, edge_width=width)
        assert (label[0] == 0).sum() == width
        assert set(np.unique(label)) == {0, 255}


def test_background_between_shapes_stays_wall():
    cells = np.array([[1, 1, 0, 0, 2, 2]])
    np.testing.assert_array_equal(training_label(cells, edge_width=0), [[255, 255, 0, 0, 255, 255]])


def test_labelme_file_becomes_pair_0_with_binary_label_and_mapping_row(tmp_path):
    pair = convert_labelme(FIXTURE, TrainingSet(tmp_path))

    image = read_image(tmp_path / "image" / "0.png")
    label = read_image(tmp_path / "label" / "0.png")
    assert pair.n == 0 and pair.n_cells == 5
    np.testing.assert_array_equal(image, read_labelme(FIXTURE).image)
    assert set(np.unique(label)) == {0, 255}
    [row] = read_mapping(tmp_path / "mapping.csv")
    assert row["n"] == "0" and row["source"] == str(FIXTURE.resolve()) and row["kind"] == "labelme"
    assert row["image_from"] == "embedded" and row["n_cells"] == "5"


def test_converting_a_source_again_keeps_its_number_and_new_sources_get_the_next(tmp_path):
    copy = tmp_path / "second.json"
    shutil.copy(FIXTURE, copy)
    data = tmp_path / "data"
    assert convert_labelme(FIXTURE, TrainingSet(data)).n == 0
    assert convert_labelme(copy, TrainingSet(data)).n == 1
    assert convert_labelme(FIXTURE, TrainingSet(data)).n == 0
    assert [row["n"] for row in read_mapping(data / "mapping.csv")] == ["0", "1"]
    assert sorted(p.name for p in (data / "label").iterdir()) == ["0.png", "1.png"]


def test_numbers_continue_after_pairs_already_in_the_folder(tmp_path):
    write_png(tmp_path / "image" / "7.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "label" / "7.png", np.zeros((4, 4), np.uint8))
    assert convert_labelme(FIXTURE, TrainingSet(tmp_path)).n == 8


def test_painting_on_white_with_its_original_becomes_a_pair(tmp_path, sample):
    write_png(tmp_path / "originals" / "foam.png", sample.image)
    write_png(tmp_path / "painted" / "foam_painted.png", np.where(sample.labels == 0, 0, 255).astype(np.uint8))
    original = find_original(tmp_path / "painted" / "foam_painted.png", tmp_path / "originals")

    pair = convert_painted(tmp_path / "painted" / "foam_painted.png", TrainingSet(tmp_path / "data"),
                           original=original, edge_width=None)

    assert original == tmp_path / "originals" / "foam.png"
    assert pair.kind == "painted on white" and pair.n_cells == sample.n_cells
    np.testing.assert_array_equal(read_image(tmp_path / "data" / "image" / "0.png"), sample.image)
    np.testing.assert_array_equal(read_image(tmp_path / "data" / "label" / "0.png") == 0, sample.labels == 0)


def test_painting_on_white_without_its_original_is_refused(tmp_path, sample):
    write_png(tmp_path / "a.png", np.where(sample.labels == 0, 0, 255).astype(np.uint8))
    with pytest.raises(LabelConversionError, match="--originals"):
        convert_painted(tmp_path / "a.png", TrainingSet(tmp_path / "data"))


def test_painting_on_the_image_without_original_gets_its_strokes_filled_in(tmp_path, sample):
    painting = sample.image.copy()
    painting[sample.labels == 0] = 0
    write_png(tmp_path / "a.png", painting)
    pair = convert_painted(tmp_path / "a.png", TrainingSet(tmp_path / "data"), edge_width=2)
    image = read_image(tmp_path / "data" / "image" / "0.png")
    assert pair.image_from == "painting with strokes filled in"
    assert (image[sample.labels == 0] > 0).mean() > 0.99
    assert check_dataset(tmp_path / "data").ok


def test_folder_sources_skip_images_that_labelme_files_annotate(tmp_path):
    shutil.copy(FIXTURE, tmp_path / "tissue.json")
    write_png(tmp_path / "tissue.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "other_painted.png", np.zeros((4, 4), np.uint8))
    assert label_sources([tmp_path]) == [(tmp_path / "tissue.json", "labelme"),
                                         (tmp_path / "other_painted.png", "painted")]


def test_exported_predictions_convert_back_to_the_same_cells(tmp_path, sample):
    write_labels_tiff(tmp_path / "foam_labels.tif", sample.labels)
    write_png(tmp_path / "foam.png", sample.image)
    path, n_cells = export_labelme(tmp_path / "foam_labels.tif", tmp_path / "foam.png", tmp_path / "labelme")
    pair = convert_labelme(path, TrainingSet(tmp_path / "data"), edge_width=0)
    label = read_image(tmp_path / "data" / "label" / "0.png")
    assert n_cells == pair.n_cells == sample.n_cells
    assert ((label > 0) == (sample.labels > 0)).mean() > 0.97


def test_check_of_converted_data_finds_nothing_wrong(tmp_path):
    convert_labelme(FIXTURE, TrainingSet(tmp_path), edge_width=1)
    check = check_dataset(tmp_path, max_cell_fraction=0.9, max_wall_fraction=0.95)
    assert check.ok and check.n_pairs == 1
    assert "no problems found" in check.report()


def dataset_with_problems(root, sample):
    good = np.where(sample.labels > 0, 255, 0).astype(np.uint8)
    for name in ("0", "1", "2", "3"):
        write_png(root / "image" / f"{name}.png", sample.image)
    write_png(root / "label" / "0.png", good)
    write_png(root / "label" / "1.png", good[:-2])  # size mismatch
    soft = good.copy()
    soft[5:90:7, 5:120:7] = np.where(good[5:90:7, 5:120:7] > 0, 100, 0)  # anti-aliased brush
    write_png(root / "label" / "2.png", soft)
    write_png(root / "label" / "4.png", good)  # no image
    return root


def test_check_names_missing_pairs_size_mismatch_and_non_binary_labels(tmp_path, sample):
    check = check_dataset(dataset_with_problems(tmp_path, sample))
    found = {(p.name, p.what) for p in check.problems}
    assert found == {("1", "size mismatch"), ("2", "not binary"), ("3", "missing label"), ("4", "missing image")}
    report = check.report()
    assert "4 problems" in report and "1: size mismatch: image 1.png is 128 x 96 pixels but label" in report


def test_background_128_is_a_valid_label_value(sample):
    label = np.where(sample.labels > 0, 255, 0).astype(np.uint8)
    label[:, :20] = 128  # a strip of slide with no cell on it
    assert [what for what, _ in check_label(label)] == []


def test_check_finds_specks(sample):
    label = np.where(sample.labels > 0, 255, 0).astype(np.uint8)
    label[40:42, 40:42] = 255
    label[39, 39:43] = label[42, 39:43] = label[39:43, 39] = label[39:43, 42] = 0
    assert [what for what, _ in check_label(label)] == ["specks"]


def test_check_finds_a_cell_flooded_through_an_open_wall(sample):
    label = np.full((100, 100), 255, np.uint8)
    label[50, :] = 0  # one wall: two cells of half the image each
    [(what, detail)] = check_label(label)
    assert what == "flooded cell" and "not closed" in detail


def test_check_finds_labels_without_cells_or_walls_or_swapped():
    assert [w for w, _ in check_label(np.zeros((10, 10), np.uint8))] == ["no cells"]
    assert [w for w, _ in check_label(np.full((10, 10), 255, np.uint8))] == ["no walls"]
    swapped = np.zeros((30, 30), np.uint8)
    swapped[::6, :] = swapped[:, ::6] = 255
    assert "mostly wall" in [w for w, _ in check_label(swapped, max_cell_fraction=1.0)]
