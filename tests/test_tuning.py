"""`cellpipe model tune`: post-processing parameters chosen for one model on validation data."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cellpipe.cli import app
from cellpipe.cli import commands_model  # noqa: F401  (registers the command)
from cellpipe.io import write_png
from cellpipe.synthetic import synthetic_cells

pytest_plugins = ["tiny_model"]

runner = CliRunner()


def said(result) -> str:
    """Return what a command printed, with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    """Return two small validation folders: the seed layout (3 images) and the instance layout (2)."""
    root = tmp_path_factory.mktemp("validation")
    for i in range(3):
        sample = synthetic_cells((96, 96), kind="tissue", seed=60 + i, mean_cell_diameter=20)
        label = np.where(sample.labels > 0, 255, 0).astype(np.uint8)
        label[:8] = 128  # a strip of background: not a cell in the truth
        write_png(root / "seed" / "train" / "image" / f"{i}.png", sample.image)
        write_png(root / "seed" / "train" / "label" / f"{i}.png", label)
    for i in range(2):
        sample = synthetic_cells((96, 96), kind="foam", seed=70 + i, mean_cell_diameter=20)
        write_png(root / "instances" / "images" / f"n{i}.png", sample.image)
        write_png(root / "instances" / "masks" / f"n{i}.png", sample.labels.astype(np.uint16))
    return root


@pytest.fixture
def model(tiny_model, tmp_path):
    from tiny_model import model_copy

    return model_copy(tiny_model, tmp_path / "model")


def test_tune_write_stores_parameters_no_worse_than_the_defaults_and_the_model_then_uses_them(model, validation):
    from cellpipe.pipeline import CellSegmenter, card_segment_params

    result = runner.invoke(app, ["model", "tune", str(model), f"{validation / 'seed'}:0,2",
                                 str(validation / "instances"), "--write", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "mean over folders" in said(result)
    card = json.loads(model.with_suffix(".json").read_text())
    tuned_on = card["postprocessing_tuned_on"]
    assert tuned_on["best"] >= tuned_on["defaults"]
    assert [folder["images"] for folder in tuned_on["folders"]] == [["0", "2"], ["n0", "n1"]]
    assert tuned_on["folders"][0]["ids"] == ["0", "2"] and tuned_on["folders"][1]["ids"] is None
    assert tuned_on["command"].startswith("cellpipe model tune ") and tuned_on["candidates"] >= 240
    assert set(card["postprocessing"]) >= {"threshold", "marker_h", "merge_threshold", "min_area"}
    assert CellSegmenter(model).params.segment == card_segment_params(card["postprocessing"])


def test_a_dry_run_prints_the_choice_and_leaves_the_card_as_it_was(model, validation, monkeypatch):
    import cellpipe.tuning

    monkeypatch.setattr(cellpipe.tuning, "GRID", {"threshold": (0.4, 0.6), "min_area": (8,)})
    before = model.with_suffix(".json").read_bytes()
    result = runner.invoke(app, ["model", "tune", str(model), str(validation / "instances"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "dry run" in said(result) and "best: threshold=" in said(result)
    assert model.with_suffix(".json").read_bytes() == before


def test_forked_scoring_gives_the_scores_of_one_process(model, validation):
    from cellpipe.pipeline import CellSegmenter
    from cellpipe.tuning import TuningFolder, tune

    segmenter = CellSegmenter(model)
    folders = [TuningFolder(validation / "seed"), TuningFolder(validation / "instances")]
    grid = {"threshold": (0.4, 0.5, 0.6), "merge_threshold": (0.0, 0.6)}
    alone, forked = (tune(segmenter, folders, grid=grid, jobs=jobs) for jobs in (1, 2))
    assert [c.params for c in alone.ranking] == [c.params for c in forked.ranking]
    assert [c.objective for c in alone.ranking] == [c.objective for c in forked.ranking]
    assert alone.best.objective >= alone.defaults.objective and alone.card is None
    assert alone.images == (("0", "1", "2"), ("n0", "n1"))


def test_a_folder_without_validation_data_or_without_an_asked_id_is_a_usage_error(model, validation, tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["model", "tune", str(model), str(tmp_path / "empty"), "--jobs", "1"])
    assert result.exit_code == 2 and "holds no validation data" in said(result)
    result = runner.invoke(app, ["model", "tune", str(model), f"{validation / 'seed'}:0,7", "--jobs", "1"])
    assert result.exit_code == 2 and "ids ['7']" in said(result)
