"""The generalist's pieces: class maps with background, the three-class U-Net, scale, the mix."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cellpipe.pipeline import PipelineParams
from cellpipe.scale import ScaleChoice, diameter_of_labels, labels_to_shape, maps_to_shape, resample, scale_factor
from cellpipe.segment import SegmentParams, segment_edges
from cellpipe.synthetic import synthetic_cells
from cellpipe.synthetic.nuclei import synthetic_nuclei
from cellpipe.unet.targets import (
    BACKGROUND,
    INTERIOR,
    TRAINING_DIAMETER,
    WALL,
    classes_from_instances,
    classes_from_label,
    instances_from_classes,
    median_diameter,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# --- labels with background -----------------------------------------------------------------


def test_an_old_label_image_of_walls_and_interiors_has_no_background():
    label = np.array([[255, 0, 255], [255, 0, 255]], np.uint8)
    classes = classes_from_label(label)
    assert not (classes == BACKGROUND).any()
    np.testing.assert_array_equal(classes == WALL, label == 0)


def test_label_value_128_marks_background():
    label = np.array([[255, 0, 128, 128]], np.uint8)
    np.testing.assert_array_equal(classes_from_label(label), [[INTERIOR, WALL, BACKGROUND, BACKGROUND]])


def test_touching_instances_get_a_wall_between_them_and_isolated_ones_none():
    instances = np.zeros((10, 20), np.int32)
    instances[2:8, 2:8] = 1  # alone
    instances[2:8, 10:14] = 2
    instances[2:8, 14:18] = 3  # touches 2
    classes = classes_from_instances(instances)
    assert (classes[instances == 0] == BACKGROUND).all()
    assert not (classes[instances == 1] == WALL).any()
    assert (classes[3:7, 13] == WALL).all() and (classes[3:7, 14] == WALL).all()
    # The wall keeps the two touching cells apart as separate interiors.
    assert instances_from_classes(classes).max() == 3


def test_median_diameter_is_that_of_the_median_cell():
    instances = np.zeros((50, 50), np.int32)
    instances[:10, :10], instances[20:30, 20:30], instances[35:50, 35:50] = 1, 2, 3
    assert median_diameter(instances) == pytest.approx(np.sqrt(4 * 100 / np.pi))


# --- segmentation never makes a cell out of background ---------------------------------------


def test_background_pixels_are_never_part_of_a_cell_even_when_walls_are_labelled():
    edges = np.zeros((40, 40), np.float32)
    background = np.zeros((40, 40), bool)
    background[:, 20:] = True
    edges[background] = 1.0
    for label_walls in (False, True):
        labels = segment_edges(edges, SegmentParams(label_walls=label_walls, merge_threshold=0.0), background=background)
        assert labels.max() == 1
        assert not labels[background].any()


def test_a_background_mask_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="background"):
        segment_edges(np.zeros((8, 8)), background=np.zeros((8, 9), bool))


# --- the three-class U-Net ------------------------------------------------------------------------


def test_a_three_class_unet_outputs_probabilities_that_sum_to_one_and_says_so():
    from cellpipe.unet import UNetConfig, build_unet, fold_batch_norm

    config = UNetConfig(depth=2, base_filters=4, classes=3)
    model = build_unet(config)
    assert model.output_shape == (None, None, None, 3)
    assert UNetConfig.of_model(model) == config
    x = np.random.default_rng(0).random((1, 32, 32, 1)).astype(np.float32)
    p = model(x, training=False).numpy()
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(fold_batch_norm(model)(x).numpy(), p, atol=1e-5)


def test_unet_classes_other_than_one_or_three_are_refused():
    from cellpipe.unet import UNetConfig

    with pytest.raises(ValueError, match="classes"):
        UNetConfig(classes=2)


def test_a_cards_finetune_record_and_promotions_round_trip_as_fields_of_their_own():
    from cellpipe.unet.model import ModelCard

    stored = {"finetune": {"corrections": {"held_out": ["a.json"]}}, "promotions": [{"forced": True}]}
    card = ModelCard.from_dict(stored)
    assert card.finetune == stored["finetune"] and card.promotions == stored["promotions"]
    assert "unknown_card_fields" not in card.training
    assert ModelCard.from_dict(card.as_dict()).as_dict() == card.as_dict()


def test_an_old_card_without_classes_reads_as_an_edge_model():
    from cellpipe.unet import ModelCard

    card = ModelCard.from_dict({"architecture": {"depth": 2, "base_filters": 4, "batch_norm": True, "dropout": 0.0,
                                                 "max_filters": None}})
    assert card.architecture.classes == 1 and card.cell_diameter is None and not card.any_polarity


@pytest.fixture(scope="module")
def tiny_nuclei_model(tmp_path_factory):
    """Return a depth-2 three-class U-Net trained for a few seconds on synthetic nuclei."""
    import keras

    from cellpipe.unet import ModelCard, UNetConfig, build_unet, model_input, save_model

    keras.utils.set_random_seed(0)
    card = ModelCard(any_polarity=True)
    images, targets = [], []
    for seed in range(12):
        image, instances = synthetic_nuclei(96, mean_diameter=16, density=0.4, seed=seed)
        images.append(model_input(image, card))
        targets.append(np.eye(3, dtype=np.float32)[classes_from_instances(instances)])
    model = build_unet(UNetConfig(depth=2, base_filters=8, batch_norm=False, classes=3))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="categorical_crossentropy")
    model.fit(np.stack(images)[..., None], np.stack(targets), batch_size=4, epochs=40, verbose=0)
    return save_model(model, card, tmp_path_factory.mktemp("model") / "nuclei.keras")


def test_nuclei_on_a_dark_background_are_found_and_the_background_is_no_cell(tiny_nuclei_model):
    from cellpipe.matching import matching
    from cellpipe.pipeline import CellSegmenter

    image, truth = synthetic_nuclei(128, mean_diameter=16, density=0.4, seed=99)
    result = CellSegmenter(tiny_nuclei_model)(image)
    assert result.background is not None and result.background.shape == image.shape
    far_from_nuclei = ~ndimage.binary_dilation(truth > 0, iterations=3)
    assert not result.labels[far_from_nuclei].any()  # no giant background "cells"
    assert matching(truth, result.labels).f1 >= 0.6


# --- scale -------------------------------------------------------------------------------------


def test_scale_factor_brings_cells_to_the_training_size_and_skips_small_changes():
    assert scale_factor(56.0, 28.0) == 0.5
    assert scale_factor(14.0, 28.0) == 2.0
    assert scale_factor(30.0, 28.0) == 1.0
    assert scale_factor(1000.0, 28.0) == pytest.approx(1 / 8)
    assert scale_factor(None, 28.0) == 1.0 and scale_factor(30.0, None) == 1.0


def test_resampled_maps_and_labels_come_back_at_native_pixels():
    labels = np.zeros((60, 90), np.int32)
    labels[10:30, 10:40] = 7
    small = labels_to_shape(labels, (30, 45))
    assert set(np.unique(small)) == {0, 7}  # never blended
    back = labels_to_shape(small, (60, 90))
    assert back.shape == (60, 90) and np.mean(back == labels) > 0.95
    maps = np.random.default_rng(1).random((30, 45, 3)).astype(np.float32)
    assert maps_to_shape(maps, (60, 90)).shape == (60, 90, 3)
    assert resample(np.ones((40, 40), np.float32), 0.5).shape == (20, 20)


@pytest.mark.parametrize("diameter", [10, 20, 40, 80, 150])
def test_diameter_of_labels_recovers_the_diameter_of_synthetic_cells(diameter):
    side = int(max(256, 10 * diameter))
    sample = synthetic_cells(side, kind="tissue", mean_cell_diameter=diameter, wall_width=(2, 3), seed=diameter)
    measured = diameter_of_labels(sample.labels)
    # The interiors are the cells minus their walls: a little smaller than the seed spacing.
    assert measured == pytest.approx(median_diameter(sample.labels), rel=1e-6)
    assert 0.75 * diameter <= measured <= 1.05 * diameter


@pytest.mark.slow
@pytest.mark.parametrize("diameter", [
    pytest.param(10, marks=pytest.mark.xfail(strict=True, reason="8 px cells: the generalist merges them into ~40 px "
                                                                 "blobs at native scale, which look like real cells")),
    20, 40, 80, 150,
])
def test_the_shipped_model_estimates_the_cell_diameter_within_15_percent(diameter):
    segmenter = _shipped()
    if segmenter.card.cell_diameter is None:
        pytest.fail("the shipped model has no training scale in its card")
    side = int(min(1536, max(256, 8 * diameter)))
    sample = synthetic_cells(side, kind="tissue", mean_cell_diameter=diameter, wall_width=(2, max(2, diameter / 12)),
                             seed=500 + diameter)
    result = segmenter(sample.image)
    assert result.scale.source == "estimated"
    assert result.scale.cell_diameter == pytest.approx(median_diameter(sample.labels), rel=0.15)


_SEGMENTER = {}


def _shipped():
    from cellpipe.pipeline import CellSegmenter

    if "default" not in _SEGMENTER:
        _SEGMENTER["default"] = CellSegmenter("generalist")
    return _SEGMENTER["default"]


def test_a_pass_is_measured_on_the_cells_at_least_min_area_large():
    from cellpipe.scale import Measured

    labels = np.zeros((40, 40), np.int32)
    labels[:20, :20], labels[20:, 20:], labels[0, 39] = 1, 2, 3  # two 400 px cells and a 1 px speck
    measured = Measured.of_labels(0.5, labels, min_area=8)
    assert measured == Measured(0.5, diameter_of_labels(labels, min_area=8), 2)
    assert Measured.of_labels(1.0, np.zeros((8, 8), np.int32)) == Measured(1.0, None, 0)


def _model_seeing(true_diameter: float, side: int, training: float = 28.0):
    """A stand-in network pass that fails as a real model does far off its size."""
    from cellpipe.scale import Measured

    calls = []

    def measure(factor: float) -> Measured:
        calls.append(factor)
        seen = true_diameter * factor
        if seen < training / 2:  # too small to resolve: a few giant blobs
            return Measured(factor, 0.6 * side, 3)
        if seen > 1.5 * training:  # too large: cut into fragments a little above the model's size
            return Measured(factor, 1.3 * training / factor, int((side * factor / training) ** 2))
        return Measured(factor, true_diameter, int((side * factor / seen) ** 2))

    return measure, calls


@pytest.mark.parametrize("diameter", [10, 28, 45, 70, 150, 200])
def test_the_ladder_search_reads_both_failure_modes_and_keeps_the_pass_at_the_models_size(diameter):
    from cellpipe.scale import best_pass, search_scale

    measure, calls = _model_seeing(diameter, side=2048)
    passes = search_scale(measure, 28.0, 2048)
    best = best_pass(passes, 28.0)
    assert best.diameter == diameter and best.trusted
    assert 0.5 <= diameter * best.factor / 28.0 <= 2.0
    assert calls[0] == 1.0 and len(set(calls)) == len(calls)  # native first, no factor twice


def test_a_native_pass_at_the_models_size_confirmed_by_a_half_size_copy_is_kept_after_two_passes():
    from cellpipe.scale import best_pass, search_scale

    measure, calls = _model_seeing(30.0, side=512)
    passes = search_scale(measure, 28.0, 512)
    assert [m.factor for m in passes] == [1.0, 0.5]
    assert best_pass(passes, 28.0) is passes[0]


def test_cells_cut_into_pieces_of_the_models_size_are_found_whole_on_coarser_copies():
    from cellpipe.scale import Measured, best_pass, search_scale

    def measure(factor: float) -> Measured:  # 120 px cells, cut into 28 px pieces until they fit
        seen = 120.0 * factor
        return Measured(factor, 120.0 if seen <= 40 else 28.0 / factor, 40)

    passes = search_scale(measure, 28.0, 2048)
    assert passes[0].misfit(28.0) == 0.0  # the native pass alone says "right size"
    assert best_pass(passes, 28.0).diameter == 120.0


def test_an_image_without_cells_costs_the_coarse_copies_and_one_double_size_pass_then_stops():
    from cellpipe.scale import Measured, best_pass, search_scale

    passes = search_scale(lambda factor: Measured(factor, None, 0), 28.0, 512)
    assert [m.factor for m in passes] == [1.0, 0.5, 0.25, 0.125, 2.0]
    assert best_pass(passes, 28.0).diameter is None


def test_the_probes_search_stops_at_its_pass_limit_where_the_ladder_goes_on():
    from cellpipe.scale import best_pass, search_scale

    measure, calls = _model_seeing(150.0, side=2048)
    probes = search_scale(measure, 28.0, 2048, strategy="probes", probes=(0.5,), max_passes=3)
    assert len(probes) == 3 and best_pass(probes, 28.0).diameter != 150.0
    with pytest.raises(ValueError, match="scale search"):
        search_scale(measure, 28.0, 2048, strategy="guess")


def test_a_given_cell_diameter_is_part_of_the_parameters_and_an_absent_one_is_not():
    assert "cell_diameter" not in PipelineParams().as_dict()  # hashes of older results stay valid
    given = PipelineParams(cell_diameter=40)
    assert given.as_dict()["cell_diameter"] == 40.0
    assert PipelineParams.from_dict(given.as_dict()) == given
    with pytest.raises(ValueError, match="cell_diameter"):
        PipelineParams(cell_diameter=0)


def test_scale_choice_records_what_was_used():
    assert ScaleChoice(31.234, 0.9, "estimated", 2).as_dict() == {
        "cell_diameter": 31.23, "factor": 0.9, "source": "estimated", "passes": 2}


# --- the training mix -----------------------------------------------------------------------------


def test_training_crops_are_rescaled_to_the_training_diameter():
    from cellpipe.unet.mix import ClassPair, MixAugmentation, mix_crop

    sample = synthetic_cells(512, kind="tissue", mean_cell_diameter=60, wall_width=(2, 3), seed=3)
    classes = np.where(sample.labels == 0, WALL, INTERIOR).astype(np.uint8)
    pair = ClassPair("tissue", "3", (sample.image / 255.0).astype(np.float32)[..., None], classes,
                     median_diameter(sample.labels))
    no_zoom = MixAugmentation(scale_range=(1.0, 1.0), rotation=0.0, stretch=0.0, shear=0.0)
    image, one_hot = mix_crop(pair, 192, np.random.default_rng(0), no_zoom)
    assert image.shape == (192, 192) and one_hot.shape == (192, 192, 3)
    np.testing.assert_allclose(one_hot.sum(-1), 1.0, rtol=1e-5)
    cells = instances_from_classes(np.argmax(one_hot, -1))
    areas = np.bincount(cells.ravel())[1:]
    whole = areas[areas > 0.25 * np.median(areas)]  # cells cut by the crop's border are partial
    assert np.sqrt(4 * np.median(whole) / np.pi) == pytest.approx(TRAINING_DIAMETER, rel=0.25)


def test_the_mix_holds_every_shared_source_with_disjoint_splits():
    from cellpipe.unet.mix import default_sources

    sources = default_sources(SHARED)
    assert {s.name for s in sources} >= {"isbi", "dsb", "gowt1", "foam", "tissue", "nuclei-synthetic"}
    for source in sources:
        train, val, test = (set(source.items(split)) for split in ("train", "val", "test"))
        assert train and val and test
        assert not (train & val) and not (train & test) and not (val & test)
    isbi = next(s for s in sources if s.name == "isbi")
    assert set(isbi.items("test")) == {"20", "21", "22", "23", "24"}


def test_old_and_new_label_layouts_both_load_into_the_mix(tmp_path):
    from PIL import Image

    from cellpipe.unet.mix import Source, load_item

    seed_root, instance_root = tmp_path / "seed", tmp_path / "inst"
    for folder in ("image", "label"):
        (seed_root / folder).mkdir(parents=True)
    for folder in ("images", "masks"):
        (instance_root / folder).mkdir(parents=True)
    sample = synthetic_cells(64, kind="tissue", mean_cell_diameter=16, seed=2)
    Image.fromarray(sample.image).save(seed_root / "image" / "0.png")
    Image.fromarray(np.where(sample.labels > 0, 255, 0).astype(np.uint8)).save(seed_root / "label" / "0.png")
    nuclei, instances = synthetic_nuclei(64, mean_diameter=12, seed=2)
    Image.fromarray(nuclei).save(instance_root / "images" / "0.png")
    Image.fromarray(instances.astype(np.uint16)).save(instance_root / "masks" / "0.png")

    old = load_item(Source("old", "seed", seed_root, {"train": ("0",)}), "0")
    assert not (old.classes == BACKGROUND).any()
    np.testing.assert_array_equal(old.classes == WALL, sample.labels == 0)
    new = load_item(Source("new", "instances", instance_root, {"train": ("0",)}), "0")
    np.testing.assert_array_equal(new.classes == BACKGROUND, instances == 0)
    assert new.image.shape == (64, 64, 1) and 0.0 <= new.image.min() and new.image.max() <= 1.0


def test_source_weights_replace_the_named_sources_only_and_unknown_names_are_refused():
    import argparse

    from cellpipe.unet.mix import default_sources
    from cellpipe.unet.train_mix import parse_weight, with_weights

    sources = default_sources(SHARED)
    weighted = {s.name: s.weight for s in with_weights(sources, dict([parse_weight("isbi=0.5")]))}
    assert weighted["isbi"] == 0.5
    assert all(weighted[s.name] == s.weight for s in sources if s.name != "isbi")
    with pytest.raises(ValueError, match="no source named isbl"):
        with_weights(sources, {"isbl": 0.5})
    for text in ("isbi", "isbi=-1", "=0.5", "isbi=x"):
        with pytest.raises(argparse.ArgumentTypeError, match="SOURCE=WEIGHT"):
            parse_weight(text)


@pytest.mark.slow
def test_a_short_generalist_run_writes_a_three_class_model_whose_card_says_how_it_was_fed(tmp_path):
    from cellpipe.unet import UNetConfig, load_model
    from cellpipe.unet.train_mix import MixConfig, train_generalist

    config = MixConfig(shared_data=SHARED, out=tmp_path / "g.keras", architecture=UNetConfig(depth=2, base_filters=4),
                       max_steps=2, batch_size=2, crop=64, validate_every=1, max_minutes=5,
                       source_weights={"isbi": 0.9})
    lines = []
    train_generalist(config, on_progress=lines.append)
    model, card = load_model(tmp_path / "g.keras")
    assert UNetConfig.of_model(model).classes == 3
    assert card.any_polarity and card.cell_diameter == TRAINING_DIAMETER
    assert set(card.scale["sources"]) == {"isbi", "dsb", "gowt1", "foam", "tissue", "nuclei-synthetic"}
    assert card.training["sources"]["isbi"]["test"] == ["20", "21", "22", "23", "24"]
    assert card.training["sources"]["isbi"]["weight"] == 0.9 and card.training["sources"]["dsb"]["weight"] < 0.9
    assert card.training["steps_run"] == 2 and "validation_loss" in card.metrics
    assert any("step 2" in line for line in lines)
