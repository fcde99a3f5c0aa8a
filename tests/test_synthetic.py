"""Specification of cellpipe.synthetic: images whose ground truth is exact."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from cellpipe.io import ImageReadError, read_image, read_labels_tiff
from cellpipe.synthetic import (
    CORRUPT_NAME,
    expected_cell_count,
    synthetic_cells,
    truth_path,
    write_samples,
)

KINDS = ["foam", "tissue"]


@pytest.fixture(scope="module", params=KINDS)
def sample(request):
    return synthetic_cells((256, 320), kind=request.param, seed=11)


def test_labels_are_consecutive_from_1_with_0_on_walls(sample):
    assert sample.labels.dtype == np.int32
    np.testing.assert_array_equal(np.unique(sample.labels), np.arange(sample.n_cells + 1))
    assert sample.n_cells > 20


def test_every_cell_is_one_4_connected_region_that_touches_no_other(sample):
    components, count = ndimage.label(sample.labels > 0)
    assert count == sample.n_cells
    # each connected component carries a single label
    label_of = ndimage.maximum(sample.labels, components, np.arange(1, count + 1))
    assert len(np.unique(label_of)) == count


@pytest.mark.parametrize("shape, diameter", [((256, 256), 40.0), ((384, 256), 20.0), ((512, 512), 64.0)])
def test_cell_count_matches_the_mean_diameter(shape, diameter):
    sample = synthetic_cells(shape, kind="tissue", mean_cell_diameter=diameter, seed=1)
    expected = expected_cell_count(shape, diameter)
    # Cells cut by the border add up to about a quarter at these sizes.
    assert 0.9 * expected <= sample.n_cells <= 1.3 * expected


def test_same_seed_gives_the_same_sample():
    first = synthetic_cells((128, 128), kind="foam", seed=5)
    second = synthetic_cells((128, 128), kind="foam", seed=5)
    for field in ("image", "labels", "edges"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))


def test_different_seeds_give_different_samples():
    first = synthetic_cells((128, 128), kind="foam", seed=5)
    second = synthetic_cells((128, 128), kind="foam", seed=6)
    assert not np.array_equal(first.labels, second.labels)
    assert not np.array_equal(first.image, second.image)


@pytest.mark.parametrize("dtype, top", [("uint8", 255), ("uint16", 65535)])
def test_image_has_the_asked_type_and_uses_its_range(dtype, top):
    image = synthetic_cells((128, 128), kind="tissue", seed=2, dtype=dtype).image
    assert image.dtype == np.dtype(dtype) and image.shape == (128, 128)
    assert image.max() > 0.8 * top and image.min() < 0.3 * top


def test_foam_walls_are_bright_and_tissue_walls_dark():
    for kind, walls_brighter in [("foam", True), ("tissue", False)]:
        sample = synthetic_cells((256, 256), kind=kind, seed=3)
        on_walls = sample.image[sample.labels == 0].mean()
        in_cells = sample.image[sample.labels > 0].mean()
        assert (on_walls > in_cells + 40) if walls_brighter else (on_walls < in_cells - 40)
        assert sample.walls_are_bright is walls_brighter


def test_walls_are_between_2_and_about_the_asked_width(sample):
    walls = sample.labels == 0
    # A wall at least 2 px wide everywhere means cells never touch (tested above); no
    # 9 x 9 window inside a plain 2-5 px wall network is all wall except at junctions.
    fully_wall = ndimage.binary_erosion(walls, np.ones((9, 9), bool))
    assert fully_wall.mean() < 0.01
    assert 0.05 < walls.mean() < 0.4


def test_edges_are_1_on_walls_and_below_half_in_cells(sample):
    edges, walls = sample.edges, sample.labels == 0
    assert edges.dtype == np.float32 and 0.0 <= edges.min() and edges.max() <= 1.0
    assert (edges[walls] == 1.0).all()
    assert (edges[~walls] < 0.5).all()


def test_edges_fall_smoothly_from_walls_to_zero_inside(sample):
    walls = sample.labels == 0
    distance = ndimage.distance_transform_edt(~walls)
    next_to_wall = sample.edges[(distance > 0) & (distance <= 1)]
    deep_inside = sample.edges[distance >= 5]
    assert next_to_wall.mean() > 0.2
    assert deep_inside.max() < 1e-3


@pytest.mark.parametrize("options", [
    {"kind": "bone"},
    {"wall_width": (6.0, 3.0)},
    {"wall_width": (0.5, 3.0)},
    {"dtype": "float32"},
    {"mean_cell_diameter": 2.0},
    {"irregularity": 1.5},
])
def test_invalid_arguments_are_refused(options):
    with pytest.raises(ValueError):
        synthetic_cells((64, 64), **options)


def test_write_samples_writes_pngs_cycling_kinds_with_their_truth(tmp_path):
    written = write_samples(tmp_path / "samples", 3, size=(96, 128), seed=7)
    assert [p.name for p in written] == ["foam_000.png", "tissue_001.png", "foam_002.png"]
    for i, path in enumerate(written):
        expected = synthetic_cells((96, 128), kind=path.stem.split("_")[0], seed=7 + i)
        np.testing.assert_array_equal(read_image(path), expected.image)
        np.testing.assert_array_equal(read_labels_tiff(truth_path(path)), expected.labels)


def test_write_samples_adds_an_unreadable_png_when_asked(tmp_path):
    written = write_samples(tmp_path / "samples", 1, kinds=("tissue",), size=64, corrupt=True)
    assert written[-1].name == CORRUPT_NAME and len(written) == 2
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(written[-1])
    assert not truth_path(written[-1]).exists()


def test_synth_command_prints_what_it_wrote(tmp_path):
    from cellpipe.cli import _register_commands, app

    _register_commands()
    result = CliRunner().invoke(
        app, ["synth", str(tmp_path / "images"), "--n", "2", "--size", "80x64", "--kind", "tissue", "--with-corrupt"]
    )
    assert result.exit_code == 0, result.output
    assert "tissue_000.png" in result.output and "tissue_001.png" in result.output
    assert CORRUPT_NAME in result.output and "wrote 3 image(s)" in result.output
    assert read_image(tmp_path / "images" / "tissue_001.png").shape == (64, 80)


def test_synth_writes_the_truth_beside_the_image_folder_so_a_run_lists_the_images_only(tmp_path):
    from cellpipe.cli import _register_commands, app
    from cellpipe.tasks.sources import list_batch

    _register_commands()
    day = dt.date(2024, 6, 1)
    folder = tmp_path / "input" / day.isoformat()
    result = CliRunner().invoke(app, ["synth", str(folder), "--n", "3", "--size", "64"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["foam_000.png", "foam_002.png", "tissue_001.png"]
    truth = tmp_path / "input" / f"{day.isoformat()}-truth"
    assert sorted(p.name for p in truth.iterdir()) == ["foam_000.tif", "foam_002.tif", "tissue_001.tif"]
    assert str(truth) in result.output
    for dated in (True, False):  # the truth folder lies under the input of an undated run
        listing = list_batch(str(tmp_path / "input"), day, dated=dated)
        assert sorted(ref.name for ref in listing.images) == [
            "2024-06-01/foam_000.png", "2024-06-01/foam_002.png", "2024-06-01/tissue_001.png"]
        assert listing.unreadable == ()


def test_synth_writes_the_truth_where_asked(tmp_path):
    from cellpipe.cli import _register_commands, app

    _register_commands()
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "images"), "--n", "1", "--size", "64",
                                      "--truth", str(tmp_path / "labels")])
    assert result.exit_code == 0, result.output
    expected = synthetic_cells((64, 64), kind="foam", seed=0, mean_cell_diameter=40.0).labels
    np.testing.assert_array_equal(read_labels_tiff(tmp_path / "labels" / "foam_000.tif"), expected)
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["foam_000.png"]
