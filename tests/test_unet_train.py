"""Training: the loss falls, the best model and its card are saved, runs repeat, transfer learning."""

import json
import runpy
import sys
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from typer.testing import CliRunner

from cellpipe.unet import UNetConfig, card_path, load_model
from cellpipe.unet.train import TrainConfig, edge_loss, train

TINY = UNetConfig(depth=2, base_filters=4)
training_run = pytest.mark.slow  # each of these trains a tiny U-Net for a few steps (seconds)


def write_cells(folder, count=6, size=64, seed=0):
    """Write Voronoi-cell images (dark walls) and labels (255 inside, 0 on walls) in the user layout."""
    rng = np.random.default_rng(seed)
    (folder / "train" / "image").mkdir(parents=True)
    (folder / "train" / "label").mkdir(parents=True)
    rows, cols = np.mgrid[0:size, 0:size]
    for i in range(count):
        seeds = rng.uniform(0, size, size=(12, 2))
        distance = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
        cell = distance.argmin(axis=-1)
        wall = (cell != np.roll(cell, 1, axis=0)) | (cell != np.roll(cell, 1, axis=1))
        image = np.where(wall, 60, 190) + rng.normal(0, 12, size=(size, size))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "train" / "image" / f"{i}.png")
        Image.fromarray(np.where(wall, 0, 255).astype(np.uint8)).save(folder / "train" / "label" / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def cells_dir(tmp_path_factory):
    return write_cells(tmp_path_factory.mktemp("cells"))


def tiny_config(cells_dir, out, **changes):
    config = TrainConfig(
        data_dir=cells_dir,
        out=out,
        val_ids="5",
        architecture=TINY,
        epochs=2,
        steps=8,
        batch_size=4,
        crop=32,
        learning_rate=1e-2,
        seed=7,
    )
    return replace(config, **changes)


def run(config):
    losses = []
    result = train(config, on_progress=lambda progress: losses.append(progress.loss))
    return result, losses


@pytest.fixture(scope="module")
def trained(cells_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "edges.keras"
    config = tiny_config(cells_dir, out, command="cellpipe model train cells --out edges.keras")
    result, losses = run(config)
    return config, result, losses


@training_run
def test_a_few_training_steps_lower_the_loss(trained):
    _, _, losses = trained
    step_losses = losses[:8] + losses[9:17]  # each epoch's last report is the epoch mean
    assert np.mean(step_losses[-4:]) < 0.9 * np.mean(step_losses[:4])


@training_run
def test_the_best_model_is_saved_with_a_card_that_says_how_it_was_made(trained):
    config, result, _ = trained
    model, card = load_model(result.model_path)
    assert card.architecture == TINY
    assert card.training["command"] == "cellpipe model train cells --out edges.keras"
    assert card.training["steps_run"] == 16 and card.training["wall_seconds"] > 0
    assert set(card.metrics) >= {"val_loss", "val_bce", "val_dice", "val_accuracy"}
    assert card.normalisation["low_percentile"] < card.normalisation["high_percentile"]
    assert model.count_params() > 0


@training_run
def test_held_out_images_are_not_trained_on(trained):
    _, result, _ = trained
    assert result.card.training["validation_images"] == ["5"]
    assert result.card.training["train_images"] == ["0", "1", "2", "3", "4"]


@training_run
def test_the_same_seed_repeats_the_run(cells_dir, tmp_path, trained):
    config, _, first = trained
    _, again = run(replace(config, out=tmp_path / "again.keras"))
    np.testing.assert_allclose(again, first, rtol=1e-4)


@training_run
def test_a_frozen_encoder_keeps_its_weights_while_the_decoder_learns(cells_dir, tmp_path, trained):
    _, start, _ = trained
    config = tiny_config(cells_dir, tmp_path / "tuned.keras", init_from=start.model_path, freeze_encoder=True, epochs=1)
    result, _ = run(config)
    before, _ = load_model(start.model_path)
    after, card = load_model(result.model_path)
    for name in ("enc0_conv1", "bottom_conv2"):
        np.testing.assert_array_equal(after.get_layer(name).get_weights()[0], before.get_layer(name).get_weights()[0])
    assert not np.array_equal(after.get_layer("dec0_conv1").get_weights()[0], before.get_layer("dec0_conv1").get_weights()[0])
    assert card.training["settings"]["init_from"] == str(start.model_path)


def test_unknown_validation_ids_are_reported(cells_dir, tmp_path):
    with pytest.raises(ValueError, match="'9'.* no image"):
        train(tiny_config(cells_dir, tmp_path / "m.keras", val_ids="9"))


def test_a_crop_the_network_cannot_divide_is_rejected(cells_dir, tmp_path):
    with pytest.raises(ValueError, match="multiple of 4"):
        train(tiny_config(cells_dir, tmp_path / "m.keras", crop=30))


def test_edge_loss_is_lower_for_a_better_prediction():
    edges = tf.constant([[0.0, 1.0, 0.0, 0.0]])
    good = edge_loss(edges, tf.constant([[0.1, 0.9, 0.1, 0.1]]))
    poor = edge_loss(edges, tf.constant([[0.4, 0.6, 0.4, 0.4]]))
    assert 0 < float(good) < float(poor)


def test_freezing_the_encoder_of_a_fresh_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="init_from"):
        TrainConfig(data_dir=tmp_path, out=tmp_path / "m.keras", freeze_encoder=True)


@training_run
def test_the_command_line_trains_and_records_its_command(cells_dir, tmp_path, monkeypatch):
    from cellpipe.cli import app
    from cellpipe.cli import commands_model  # noqa: F401  (registers `model train`)

    out = tmp_path / "cli.keras"
    args = ["model", "train", str(cells_dir), "--out", str(out), "--val-ids", "5", "--depth", "2",
            "--base-filters", "4", "--max-filters", "8", "--epochs", "1", "--steps", "2", "--batch-size", "2",
            "--crop", "32", "--no-deterministic"]
    monkeypatch.setattr(sys, "argv", ["cellpipe", *args])
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    card = json.loads(card_path(out).read_text())
    assert card["training"]["command"].startswith(f"cellpipe model train {cells_dir} --out {out}")
    assert card["architecture"] == {"depth": 2, "base_filters": 4, "batch_norm": True, "dropout": 0.0, "max_filters": 8, "classes": 1}
    assert UNetConfig.of_model(load_model(out)[0]).max_filters == 8


def test_the_command_line_reports_missing_data_without_a_traceback(tmp_path):
    from cellpipe.cli import app
    from cellpipe.cli import commands_model  # noqa: F401

    result = CliRunner().invoke(app, ["model", "train", str(tmp_path), "--out", str(tmp_path / "m.keras")])
    assert result.exit_code == 2
    assert "train/image" in result.output


@pytest.mark.filterwarnings("ignore:.cellpipe.unet.train. found in sys.modules:RuntimeWarning")
def test_the_cloud_entry_point_is_the_same_command(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("cellpipe.unet.train", run_name="__main__")
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert "--init-from" in usage and "--freeze-encoder" in usage
