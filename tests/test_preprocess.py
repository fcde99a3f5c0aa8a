"""Specification of cellpipe.preprocess: the contrast gray image and the wall-polarity guess."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from cellpipe.io import read_image
from cellpipe.preprocess import ContrastParams, contrast_gray, guess_invert
from cellpipe.synthetic import synthetic_cells

SEED_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed-samples"


def noisy_image(dtype, shape=(64, 80), seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.normal(100.0, 30.0, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_contrast_is_float32_in_unit_range_with_the_input_shape(dtype):
    gray = contrast_gray(noisy_image(dtype))
    assert gray.dtype == np.float32 and gray.shape == (64, 80)
    assert gray.min() == 0.0 and gray.max() == 1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int16])
@pytest.mark.parametrize("low, high", [(1.0, 99.0), (0.0, 100.0), (5.5, 60.25)])
def test_percentiles_map_to_0_and_1_as_numpy_computes_them(dtype, low, high):
    image = noisy_image(dtype if dtype != np.int16 else np.uint8).astype(dtype)
    gray = contrast_gray(image, ContrastParams(low_percentile=low, high_percentile=high))
    lo, hi = np.percentile(image.astype(np.float64), [low, high])
    expected = np.clip((image.astype(np.float64) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(gray, expected, atol=1e-6)


def test_invert_maps_bright_to_dark():
    image = noisy_image(np.uint16)
    plain = contrast_gray(image)
    inverted = contrast_gray(image, ContrastParams(invert=True))
    np.testing.assert_allclose(inverted, 1.0 - plain, atol=1e-7)


def test_constant_image_gives_zeros_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gray = contrast_gray(np.full((16, 16), 7.5, np.float32))
    assert gray.dtype == np.float32 and not gray.any()


def test_mostly_constant_image_falls_back_to_min_and_max():
    image = np.zeros((100, 100), np.uint8)
    image[0, :5] = 200  # 0.05 % of the pixels: both percentiles are 0
    gray = contrast_gray(image)
    assert gray[0, 0] == 1.0 and gray[50, 50] == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels_are_a_clear_error(bad):
    image = np.ones((8, 8), np.float32)
    image[3, 4] = bad
    with pytest.raises(ValueError, match="NaN and .* infinite pixels"):
        contrast_gray(image)


def test_non_2d_input_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        contrast_gray(np.zeros((4, 4, 3), np.uint8))


def test_clahe_keeps_the_unit_range_and_changes_the_image():
    image = synthetic_cells((128, 128), kind="tissue", seed=2, illumination=0.6).image
    plain = contrast_gray(image)
    equalised = contrast_gray(image, ContrastParams(clahe=True, clahe_clip_limit=0.03, clahe_kernel_size=32))
    assert equalised.dtype == np.float32
    assert 0.0 <= equalised.min() and equalised.max() <= 1.0
    assert np.abs(equalised - plain).mean() > 0.01


def test_params_are_recorded_and_restored_as_plain_json():
    params = ContrastParams(low_percentile=0.5, high_percentile=99.5, invert=True, clahe=True,
                            clahe_kernel_size=64)
    recorded = json.loads(json.dumps(params.as_dict()))
    assert recorded["invert"] is True and recorded["clahe_kernel_size"] == 64
    assert ContrastParams.from_dict(recorded) == params


def test_params_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ContrastParams().invert = True


@pytest.mark.parametrize("options", [
    {"low_percentile": 50, "high_percentile": 50},
    {"low_percentile": -1},
    {"high_percentile": 101},
    {"clahe_clip_limit": 0},
    {"clahe_kernel_size": 1},
])
def test_invalid_params_are_refused(options):
    with pytest.raises(ValueError):
        ContrastParams(**options)


# --- guess_invert ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("diameter, walls", [(40.0, (2.0, 5.0)), (15.0, (2.0, 3.0)), (90.0, (3.0, 8.0))])
def test_synthetic_foam_has_bright_walls(seed, diameter, walls):
    foam = synthetic_cells((256, 256), kind="foam", seed=seed, mean_cell_diameter=diameter, wall_width=walls)
    assert guess_invert(foam.image) is True


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("diameter, walls", [(40.0, (2.0, 5.0)), (15.0, (2.0, 3.0)), (90.0, (3.0, 8.0))])
def test_synthetic_tissue_has_dark_walls(seed, diameter, walls):
    tissue = synthetic_cells((256, 256), kind="tissue", seed=seed, mean_cell_diameter=diameter, wall_width=walls)
    assert guess_invert(tissue.image) is False


def test_inverting_foam_flips_the_guess():
    foam = synthetic_cells((256, 256), kind="foam", seed=3, dtype="uint16")
    assert guess_invert(foam.image) is True
    assert guess_invert(np.iinfo(np.uint16).max - foam.image) is False


def test_constant_image_is_not_inverted():
    assert guess_invert(np.full((32, 32), 3, np.uint8)) is False


def seed_sample(name: str) -> np.ndarray:
    if not SEED_SAMPLES.is_dir():
        pytest.skip(f"shared seed samples not found at {SEED_SAMPLES}")
    return read_image(SEED_SAMPLES / name)


def test_real_polyurethane_foam_sem_has_bright_walls():
    assert guess_invert(seed_sample("polyurethane.jpg")) is True


def test_real_stained_plant_tissue_has_dark_walls():
    # cell.jpg: magenta-stained cells outlined by thin dark walls, each lined by a pale halo.
    assert guess_invert(seed_sample("cell.jpg")) is False
