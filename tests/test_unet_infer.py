"""Tiled inference: any image size, smooth blending, agreement with whole-image prediction."""

import keras
import numpy as np
import pytest

from cellpipe.unet import EdgePredictor, UNetConfig, build_unet, predict_edges
from cellpipe.unet.infer import plan_tiles, tile_starts, tile_weights


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(3)
    return build_unet(UNetConfig(depth=2, base_filters=4))


@pytest.fixture(scope="module")
def constant_model():
    """A U-Net whose output is 0.25 everywhere: all weights zero, final bias logit(0.25)."""
    model = build_unet(UNetConfig(depth=2, base_filters=4, batch_norm=False))
    for layer in model.layers:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    kernel, _ = model.get_layer("edge_probability").get_weights()
    model.get_layer("edge_probability").set_weights([kernel, np.array([np.log(0.25 / 0.75)], np.float32)])
    return model


def gray(height, width, seed=0):
    return np.random.default_rng(seed).random((height, width), dtype=np.float32)


@pytest.mark.parametrize("shape", [(50, 70), (97, 130), (1, 40), (64, 64), (200, 33)])
def test_output_has_the_shape_of_the_input(tiny_model, shape):
    edge_probability = predict_edges(tiny_model, gray(*shape), tile=64, overlap=16)
    assert edge_probability.shape == shape
    assert edge_probability.dtype == np.float32


def test_output_is_a_probability(tiny_model):
    edge_probability = predict_edges(tiny_model, gray(150, 110), tile=64, overlap=16)
    assert 0.0 <= edge_probability.min() and edge_probability.max() <= 1.0


def test_blending_reproduces_a_constant_prediction_exactly(constant_model):
    edge_probability = predict_edges(constant_model, gray(300, 211), tile=64, overlap=24, batch_size=3)
    np.testing.assert_allclose(edge_probability, 0.25, rtol=1e-6)


def test_tiled_prediction_matches_whole_image_prediction_away_from_tile_seams(tiny_model):
    image = gray(192, 160, seed=4)
    whole = tiny_model(image[None, :, :, None], training=False).numpy()[0, :, :, 0]
    tiled = predict_edges(tiny_model, image, tile=64, overlap=24)
    # Tiles see zero padding at their own borders; the blending weights make that negligible.
    assert np.abs(tiled - whole).max() < 0.02 * np.ptp(whole)
    assert np.abs(tiled - whole).mean() < 0.001 * np.ptp(whole)


def test_an_image_that_fits_one_tile_is_predicted_like_the_whole_image(tiny_model):
    image = gray(64, 64, seed=5)
    whole = tiny_model(image[None, :, :, None], training=False).numpy()[0, :, :, 0]
    np.testing.assert_allclose(predict_edges(tiny_model, image, tile=64, overlap=16), whole, atol=1e-5)


def test_batch_size_does_not_change_the_result(tiny_model):
    image = gray(150, 170, seed=6)
    one = predict_edges(tiny_model, image, tile=64, overlap=16, batch_size=1)
    many = predict_edges(tiny_model, image, tile=64, overlap=16, batch_size=5)
    np.testing.assert_allclose(one, many, atol=1e-6)


def test_an_unfolded_predictor_follows_weight_changes(tiny_model):
    model = keras.models.clone_model(tiny_model)
    predictor = EdgePredictor(model, fold_batch_norm=False)
    image = gray(64, 64)
    before = predictor(image, tile=64, overlap=16)
    final = model.get_layer("edge_probability")
    kernel, bias = final.get_weights()
    final.set_weights([kernel, bias + 1.0])
    assert (predictor(image, tile=64, overlap=16) > before).all()


@pytest.mark.parametrize("length, tile, overlap", [(64, 64, 16), (65, 64, 16), (500, 64, 16), (1000, 256, 32), (97, 64, 0)])
def test_tiles_cover_the_axis_and_overlap_by_at_least_the_requested_amount(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_a_large_image_is_cut_into_fewer_pixels_than_the_nominal_tile_would_need():
    plan = plan_tiles((2048, 2048), tile=512, overlap=32, multiple=16)
    assert plan.n_tiles * plan.tile**2 < 25 * 512**2
    assert plan.tile % 16 == 0 and plan.tile <= 640


def test_an_image_smaller_than_a_tile_is_one_small_tile():
    plan = plan_tiles((300, 200), tile=512, overlap=32, multiple=16)
    assert plan.n_tiles == 1 and plan.tile == 320 and plan.padded_shape == (320, 320)


def test_tile_weights_ramp_only_towards_neighbours():
    weights = tile_weights(64, 16, ramp_start=True, ramp_end=False)
    assert (weights > 0).all()
    assert np.all(np.diff(weights[:16]) > 0) and weights[0] < 0.01
    np.testing.assert_array_equal(weights[16:], 1.0)


@pytest.mark.parametrize(
    "image, match",
    [(np.zeros((4, 4, 3), np.float32), "2-D"), (np.full((8, 8), np.nan, np.float32), "NaN"), (np.zeros((0, 5)), "empty")],
)
def test_invalid_images_are_rejected(tiny_model, image, match):
    with pytest.raises(ValueError, match=match):
        predict_edges(tiny_model, image, tile=64, overlap=16)


def test_a_tile_that_the_network_cannot_divide_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="multiple of 4"):
        predict_edges(tiny_model, gray(100, 100), tile=66, overlap=16)


def test_an_overlap_of_half_a_tile_or_more_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="overlap"):
        predict_edges(tiny_model, gray(100, 100), tile=64, overlap=32)


def test_two_views_average_the_image_and_its_mirror_image(tiny_model):
    image = gray(64, 96, seed=4)
    predictor = EdgePredictor(tiny_model)
    expected = (predictor(image, tile=64, overlap=16) + predictor(image[:, ::-1], tile=64, overlap=16)[:, ::-1]) / 2
    np.testing.assert_allclose(predictor(image, tile=64, overlap=16, views=2), expected, atol=1e-6)


def test_eight_views_make_the_prediction_follow_rotations_and_mirrors_of_the_image(tiny_model):
    # Averaged over the whole dihedral group, the prediction of a turned image is the
    # turned prediction, which one view of an untrained network is far from.
    image = gray(64, 64, seed=5)
    predictor = EdgePredictor(tiny_model)
    for views, close in ((8, True), (1, False)):
        turned = predictor(np.rot90(image).copy(), tile=64, overlap=16, views=views)
        mirrored = predictor(image[::-1].copy(), tile=64, overlap=16, views=views)
        plain = predictor(image, tile=64, overlap=16, views=views)
        agree = np.allclose(turned, np.rot90(plain), atol=1e-5) and np.allclose(mirrored, plain[::-1], atol=1e-5)
        assert agree == close


@pytest.mark.parametrize("views", [0, 3, 16])
def test_a_number_of_views_outside_1_2_4_8_is_rejected(tiny_model, views):
    with pytest.raises(ValueError, match="views must be one of"):
        predict_edges(tiny_model, gray(32, 32), views=views)
