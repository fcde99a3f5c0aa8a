"""U-Net architecture, batch-norm folding, FLOP counting and the model card round trip."""

import json

import keras
import numpy as np
import pytest

from cellpipe.unet import ModelCard, UNetConfig, build_unet, card_path, fold_batch_norm, forward_flops, load_model, save_model

TINY = UNetConfig(depth=2, base_filters=4)


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    model = build_unet(TINY)
    # Non-trivial batch-norm statistics, as after training, so folding has work to do.
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, gamma.shape).astype(np.float32),
                    rng.normal(0.0, 0.5, beta.shape).astype(np.float32),
                    rng.normal(0.0, 0.5, mean.shape).astype(np.float32),
                    rng.uniform(0.2, 3.0, variance.shape).astype(np.float32),
                ]
            )
    return model


def images(count=2, size=32, seed=0):
    return np.random.default_rng(seed).random((count, size, size, 1), dtype=np.float32)


def test_output_is_one_probability_channel_of_the_input_size(tiny_model):
    probability = tiny_model(images(size=32), training=False).numpy()
    assert probability.shape == (2, 32, 32, 1)
    assert probability.min() > 0.0 and probability.max() < 1.0


def test_config_is_recovered_from_a_built_model():
    config = UNetConfig(depth=3, base_filters=6, batch_norm=False, dropout=0.25)
    assert UNetConfig.of_model(build_unet(config)) == config


def test_capped_filters_make_a_deeper_net_no_larger_and_are_recovered():
    capped = UNetConfig(depth=4, base_filters=4, max_filters=16)
    assert [capped.filters_at(level) for level in range(5)] == [4, 8, 16, 16, 16]
    model = build_unet(capped)
    assert UNetConfig.of_model(model) == capped
    shallower = build_unet(UNetConfig(depth=3, base_filters=4))
    # One more level at 16 filters costs less than doubling the bottleneck to 64.
    assert model.count_params() < 2 * shallower.count_params()
    assert build_unet(UNetConfig(depth=4, base_filters=4)).count_params() > 3 * model.count_params()
    assert model(images(size=32), training=False).shape == (2, 32, 32, 1)


def test_a_cap_no_level_reaches_is_no_cap():
    assert UNetConfig(depth=2, base_filters=4, max_filters=16).max_filters is None
    assert UNetConfig.from_dict({"depth": 2, "base_filters": 4}).max_filters is None


def test_a_model_not_built_by_build_unet_has_no_config():
    other = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3)])
    with pytest.raises(ValueError, match="not built by"):
        UNetConfig.of_model(other)


@pytest.mark.parametrize(
    "values", [{"depth": 0}, {"base_filters": 0}, {"dropout": 1.0}, {"base_filters": 8, "max_filters": 4}]
)
def test_invalid_architectures_are_rejected(values):
    with pytest.raises(ValueError):
        UNetConfig(**values)


def test_folding_batch_norm_keeps_predictions(tiny_model):
    folded = fold_batch_norm(tiny_model)
    x = images()
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    np.testing.assert_allclose(folded(x).numpy(), tiny_model(x, training=False).numpy(), atol=2e-6)


def test_flops_of_a_depth_one_unet_match_a_hand_count():
    # 8x8 input, 2 filters: enc 1->2, 2->2 (8x8); bottom 2->4, 4->4 (4x4);
    # up 4->2 (2x2 kernel on 4x4); dec 4->2, 2->2 (8x8); 1x1 2->1. Two FLOPs per MAC.
    by_hand = 2 * (
        64 * 9 * (1 * 2 + 2 * 2) + 16 * 9 * (2 * 4 + 4 * 4) + 16 * 4 * 4 * 2 + 64 * 9 * (4 * 2 + 2 * 2) + 64 * 2
    )
    assert forward_flops(UNetConfig(depth=1, base_filters=2), 8, 8) == by_hand


def test_save_then_load_gives_identical_predictions(tiny_model, tmp_path):
    path = save_model(tiny_model, ModelCard(normalisation={"low": 1.0}), tmp_path / "edges.keras")
    loaded, _ = load_model(path)
    x = images()
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), tiny_model(x, training=False).numpy())


def test_the_card_is_saved_next_to_the_model_and_read_back(tiny_model, tmp_path):
    card = ModelCard(
        normalisation={"low": 1.0, "high": 99.0},
        dark_walls=False,
        training={"command": "cellpipe model train data --out m.keras", "steps_run": 7},
        metrics={"val_dice": 0.9},
    )
    path = save_model(tiny_model, card, tmp_path / "edges.keras")
    assert card_path(path) == tmp_path / "edges.json"
    _, loaded = load_model(path)
    assert loaded.architecture == TINY
    assert (loaded.normalisation, loaded.dark_walls) == (card.normalisation, False)
    assert loaded.training == card.training and loaded.metrics == card.metrics
    assert loaded.versions["keras"] == keras.__version__


def test_loading_a_model_without_its_card_says_so(tiny_model, tmp_path):
    path = save_model(tiny_model, ModelCard(), tmp_path / "edges.keras")
    card_path(path).unlink()
    with pytest.raises(FileNotFoundError, match="card"):
        load_model(path)


def test_loading_a_missing_model_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        load_model(tmp_path / "absent.keras")


def test_a_card_with_unknown_architecture_keys_is_rejected(tiny_model, tmp_path):
    path = save_model(tiny_model, ModelCard(), tmp_path / "edges.keras")
    values = json.loads(card_path(path).read_text())
    values["architecture"]["kernel"] = 5
    card_path(path).write_text(json.dumps(values))
    with pytest.raises(ValueError, match="kernel"):
        load_model(path)


def test_model_path_must_end_in_keras(tiny_model, tmp_path):
    with pytest.raises(ValueError, match=".keras"):
        save_model(tiny_model, ModelCard(), tmp_path / "edges.h5")
