"""Training data: folder layouts, id lists, held-out splits and augmented crops."""

import numpy as np
import pytest
from PIL import Image

from cellpipe.unet.data import (
    Augmentation,
    TrainingPair,
    augmented_crop,
    dataset_folders,
    list_pairs,
    load_pair,
    parse_ids,
    random_batches,
    split_names,
)


def write_pair(folder, name, image, label):
    (folder / "image").mkdir(parents=True, exist_ok=True)
    (folder / "label").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "image" / f"{name}.png")
    Image.fromarray(label).save(folder / "label" / f"{name}.png")


def stripes(size=40):
    label = np.full((size, size), 255, np.uint8)
    label[::8] = 0
    image = np.where(label == 0, 30, 200).astype(np.uint8)
    return image, label


def pair(size=48, seed=0):
    rng = np.random.default_rng(seed)
    return TrainingPair("p", rng.random((size, size), dtype=np.float32), (rng.random((size, size)) < 0.2).astype(np.float32))


@pytest.mark.parametrize("nested", [True, False])
def test_both_folder_layouts_are_accepted(tmp_path, nested):
    root = tmp_path / "train" if nested else tmp_path
    write_pair(root, "0", *stripes())
    assert dataset_folders(tmp_path) == (root / "image", root / "label")


def test_a_folder_without_images_and_labels_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/image"):
        dataset_folders(tmp_path)


def test_pairs_are_matched_by_name_and_sorted_naturally(tmp_path):
    for name in ("10", "2", "1"):
        write_pair(tmp_path, name, *stripes())
    Image.fromarray(stripes()[0]).save(tmp_path / "image" / "unlabelled.png")
    assert [name for name, _, _ in list_pairs(tmp_path)] == ["1", "2", "10"]


def test_the_edge_target_is_where_the_label_is_zero(tmp_path):
    image, label = stripes()
    write_pair(tmp_path, "0", image, label)
    loaded = load_pair(*list_pairs(tmp_path)[0])
    np.testing.assert_array_equal(loaded.edges, (label == 0).astype(np.float32))
    assert loaded.image.dtype == np.float32 and 0 <= loaded.image.min() and loaded.image.max() <= 1


def test_inverting_makes_dark_walls_bright(tmp_path):
    write_pair(tmp_path, "0", *stripes())
    plain = load_pair(*list_pairs(tmp_path)[0])
    inverted = load_pair(*list_pairs(tmp_path)[0], invert=True)
    np.testing.assert_allclose(inverted.image, 1 - plain.image)


def test_a_label_of_another_size_is_rejected(tmp_path):
    image, label = stripes()
    write_pair(tmp_path, "0", image, label[:-1])
    with pytest.raises(ValueError, match="label"):
        load_pair(*list_pairs(tmp_path)[0])


def test_id_lists_accept_ranges_and_names():
    assert parse_ids("20-22, 7,a") == ["20", "21", "22", "7", "a"]


@pytest.mark.parametrize("spec", ["", "5-3"])
def test_empty_or_backward_id_lists_are_rejected(spec):
    with pytest.raises(ValueError):
        parse_ids(spec)


def test_listed_validation_ids_are_held_out():
    names = [str(i) for i in range(25)]
    train, validation = split_names(names, val_ids="20-24")
    assert validation == ["20", "21", "22", "23", "24"] and train == names[:20]


def test_without_ids_the_last_fraction_is_held_out():
    names = [str(i) for i in range(6)]
    assert split_names(names, val_fraction=0.2) == (names[:5], ["5"])


def test_a_single_image_is_not_held_out():
    assert split_names(["0"], val_fraction=0.2) == (["0"], [])


def test_holding_out_everything_is_refused():
    with pytest.raises(ValueError, match="no training images"):
        split_names(["0", "1"], val_ids="0-1")


def test_without_augmentation_a_crop_is_a_window_of_the_image():
    source = pair()
    image, edges = augmented_crop(source, 16, np.random.default_rng(1), Augmentation.none())
    windows = np.lib.stride_tricks.sliding_window_view(source.image, (16, 16))
    row, col = np.argwhere((windows == image).all(axis=(2, 3)))[0]
    np.testing.assert_array_equal(edges, source.edges[row : row + 16, col : col + 16])


def test_augmented_crops_keep_shapes_and_ranges():
    image, edges = augmented_crop(pair(), 32, np.random.default_rng(2), Augmentation())
    assert image.shape == edges.shape == (32, 32)
    assert 0 <= image.min() and image.max() <= 1 and 0 <= edges.min() and edges.max() <= 1


def test_a_crop_larger_than_the_image_is_mirrored_not_failed():
    image, _ = augmented_crop(pair(size=20), 32, np.random.default_rng(3), Augmentation())
    assert image.shape == (32, 32) and np.isfinite(image).all()


def test_batches_depend_only_on_the_seed():
    first = next(random_batches([pair()], crop=16, batch_size=3, seed=5))
    again = next(random_batches([pair()], crop=16, batch_size=3, seed=5))
    other = next(random_batches([pair()], crop=16, batch_size=3, seed=6))
    assert first[0].shape == (3, 16, 16, 1)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])
