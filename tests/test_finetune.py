"""Fine-tuning on corrected Labelme files: the loss on held-out corrections falls, the card names the parent."""

from __future__ import annotations

import json

import keras
import pytest
from typer.testing import CliRunner

from cellpipe.cli import app
from cellpipe.cli import commands_finetune  # noqa: F401  (registers the command)
from cellpipe.finetune import FinetuneConfig, finetune, split_corrections
from cellpipe.labelme import labelme_document, labels_to_shapes, png_bytes, write_labelme
from cellpipe.pipeline import CellSegmenter, file_sha256
from cellpipe.synthetic import synthetic_cells
from cellpipe.unet import ModelCard, UNetConfig, build_unet, load_model, save_model

pytest_plugins = ["tiny_model"]
runner = CliRunner()


@pytest.fixture(scope="module")
def corrections(tmp_path_factory):
    """Return a folder of three corrected Labelme files: tissue with cells smaller than the tiny model knows."""
    folder = tmp_path_factory.mktemp("corrections")
    for index in range(3):
        sample = synthetic_cells((96, 96), kind="tissue", seed=300 + index, mean_cell_diameter=12, wall_width=(1.0, 3.0))
        document = labelme_document(labels_to_shapes(sample.labels), image_path=f"{index}.png",
                                    shape=sample.image.shape, image_data=png_bytes(sample.image))
        write_labelme(folder / f"{index}.json", document)
    return folder


def tiny_run(corrections, out, parent, **options) -> FinetuneConfig:
    settings = dict(held_out=0.33, max_minutes=2.0, steps=8, max_steps=40, batch_size=2, crop=64,
                    learning_rate=2e-3)
    return FinetuneConfig(corrections, out, parent=parent, **{**settings, **options})


def test_finetuning_lowers_the_held_out_loss_and_the_card_names_the_parent(corrections, tiny_model, tmp_path):
    result = finetune(tiny_run(corrections, tmp_path / "tuned.keras", tiny_model))
    card = json.loads(result.model_path.with_suffix(".json").read_text())
    record = card["finetune"]
    assert record["parent"]["sha256"] == file_sha256(tiny_model)
    assert record["corrections"] == {"folder": str(corrections.resolve()), "train": ["0.json", "1.json"],
                                     "held_out": ["2.json"]}
    assert record["validation_loss"]["after"] < record["validation_loss"]["before"]
    scores = record["held_out_scores"]
    assert set(scores["before"]["files"]) == set(scores["after"]["files"]) == {"2.json"}
    assert 0.0 <= scores["after"]["f1"] <= 1.0
    assert CellSegmenter(result.model_path)(synthetic_cells((96, 96), kind="tissue", seed=9).image).n_cells > 0


def test_the_last_corrections_in_natural_order_are_held_out_and_one_is_always_trained_on(tmp_path):
    files = [tmp_path / f"{n}.json" for n in (10, 2, 1)]
    assert split_corrections(files, 0.25) == ([tmp_path / "1.json", tmp_path / "2.json"], [tmp_path / "10.json"])
    assert split_corrections(files, 0.9) == ([tmp_path / "1.json"], [tmp_path / "2.json", tmp_path / "10.json"])
    assert split_corrections(files[:1], 0.5) == (files[:1], [])
    assert split_corrections(files, 0.0) == (sorted(files, key=lambda p: int(p.stem)), [])


def test_finetune_command_prints_the_scores_before_and_after(corrections, tiny_model, tmp_path):
    out = tmp_path / "cli.keras"
    result = runner.invoke(app, ["model", "finetune", str(corrections), "--out", str(out), "--from", str(tiny_model),
                                 "--max-minutes", "1", "--steps", "4", "--max-steps", "8", "--batch-size", "2",
                                 "--crop", "64", "--held-out", "0.33"])
    assert result.exit_code == 0, result.output
    assert "held-out corrections: F1@0.5" in result.output and out.is_file()
    assert json.loads(out.with_suffix(".json").read_text())["finetune"]["command"].startswith("cellpipe ")


def test_a_folder_without_labelme_files_is_refused_by_name(tiny_model, tmp_path):
    result = runner.invoke(app, ["model", "finetune", str(tmp_path), "--out", str(tmp_path / "m.keras"),
                                 "--from", str(tiny_model)])
    assert result.exit_code == 2
    assert f"no Labelme files (*.json) in {tmp_path}" in result.output


def test_a_batch_norm_parent_is_fine_tuned_with_its_batch_norm_folded(corrections, tmp_path):
    keras.utils.set_random_seed(2)
    parent = save_model(build_unet(UNetConfig(depth=2, base_filters=4, batch_norm=True)), ModelCard(dark_walls=True),
                        tmp_path / "bn.keras")
    result = finetune(tiny_run(corrections, tmp_path / "child.keras", parent, steps=2, max_steps=4))
    child, card = load_model(result.model_path)
    assert UNetConfig.of_model(child).batch_norm is False
    assert card.finetune["parent"]["sha256"] == file_sha256(parent)
