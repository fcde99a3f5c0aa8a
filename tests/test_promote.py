"""cellpipe model promote: a candidate replaces the default only when it is not worse on corrections and validation."""

from __future__ import annotations

import json

import keras
import pytest
from typer.testing import CliRunner

from cellpipe.cli import app
from cellpipe.cli import commands_azure_ml  # noqa: F401  (registers the command)
from cellpipe.db import get_default_model, get_model, open_database, register_model
from cellpipe.labelme import labelme_document, labels_to_shapes, png_bytes, write_labelme
from cellpipe.pipeline import file_sha256
from cellpipe.synthetic import synthetic_cells
from cellpipe.unet import ModelCard, UNetConfig, build_unet, save_model

pytest_plugins = ["tiny_model"]
runner = CliRunner()


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    """Return a model of the tiny model's architecture that was never trained: it finds no real cell."""
    keras.utils.set_random_seed(1)
    model = build_unet(UNetConfig(depth=2, base_filters=8, batch_norm=False))
    return save_model(model, ModelCard(dark_walls=True), tmp_path_factory.mktemp("untrained") / "untrained.keras")


@pytest.fixture(scope="module")
def corrections(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corrections")
    for index in range(2):
        sample = synthetic_cells((96, 96), kind="tissue", seed=400 + index, mean_cell_diameter=20)
        write_labelme(folder / f"{index}.json", labelme_document(
            labels_to_shapes(sample.labels), image_path=f"{index}.png", shape=sample.image.shape,
            image_data=png_bytes(sample.image)))
    return folder


def database_with(tmp_path, default, candidate) -> str:
    url = f"sqlite:///{tmp_path / 'cells.sqlite'}"
    engine = open_database(url)
    register_model(engine, "current", "1", file_hash=file_sha256(default), location=str(default), make_default=True)
    register_model(engine, "candidate", "1", file_hash=file_sha256(candidate), location=str(candidate))
    engine.dispose()
    return url


def promote(url, corrections, tmp_path, *extra):
    return runner.invoke(app, ["model", "promote", "candidate:1", "--db", url, "--corrections", str(corrections),
                               "--shared", str(tmp_path), "--source", "tissue", *extra])


def default_name(url) -> str:
    engine = open_database(url)
    try:
        return get_default_model(engine).name
    finally:
        engine.dispose()


def test_promote_refuses_a_worse_model_and_keeps_the_default(tiny_model, untrained_model, corrections, tmp_path):
    url = database_with(tmp_path, default=tiny_model, candidate=untrained_model)
    result = promote(url, corrections, tmp_path)
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "not promoted" in said and "worse than" in said and "beyond the tolerance of 0.02 on corrections" in said
    assert default_name(url) == "current"


def test_force_promotes_a_worse_model_and_records_that_it_was_forced(tiny_model, untrained_model, corrections,
                                                                     tmp_path):
    card_file = untrained_model.with_suffix(".json")
    card_before = card_file.read_text()
    url = database_with(tmp_path, default=tiny_model, candidate=untrained_model)
    try:
        result = promote(url, corrections, tmp_path, "--force")
        assert result.exit_code == 0, result.output
        assert default_name(url) == "candidate"
        engine = open_database(url)
        (entry,) = get_model(engine, "candidate", "1").metrics["promotions"]
        engine.dispose()
        assert entry["forced"] is True and entry["reason"].startswith("--force although worse on corrections")
        assert entry["check"]["sets"]["corrections"]["change"] < -0.02
        assert json.loads(card_file.read_text())["promotions"][-1]["forced"] is True
    finally:
        card_file.write_text(card_before)


def test_a_better_model_is_promoted_unforced(tiny_model, untrained_model, corrections, tmp_path):
    card_file = tiny_model.with_suffix(".json")
    card_before = card_file.read_text()
    url = database_with(tmp_path, default=untrained_model, candidate=tiny_model)
    try:
        result = promote(url, corrections, tmp_path)
        assert result.exit_code == 0, result.output
        assert default_name(url) == "candidate"
        entry = json.loads(card_file.read_text())["promotions"][-1]
        assert entry["forced"] is False and set(entry["check"]["sets"]) == {"corrections", "val:tissue"}
    finally:
        card_file.write_text(card_before)
