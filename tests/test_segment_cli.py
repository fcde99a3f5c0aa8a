"""`cellpipe segment` and the settings that decide how images are segmented."""

import csv
import io
import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from cellpipe.cli import app
from cellpipe.cli import commands_segment  # noqa: F401  (registers the command)
from cellpipe.io import write_png
from cellpipe.pipeline import PipelineParams
from cellpipe.segment import SegmentParams
from cellpipe.settings import Settings
from cellpipe.synthetic import synthetic_cells

pytest_plugins = ["tiny_model"]

runner = CliRunner()


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, kind in enumerate(("tissue", "tissue")):
        sample = synthetic_cells((96, 128), kind=kind, seed=40 + i, mean_cell_diameter=20)
        write_png(folder / f"slice{i}.png", sample.image)
    return folder


def test_segment_writes_labels_cells_and_overlay_per_image(tiny_model, images, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(images), "--out", str(out), "--model", str(tiny_model), "--overlay"])
    assert result.exit_code == 0, result.output
    for stem in ("slice0", "slice1"):
        labels = tifffile.imread(out / f"{stem}_labels.tif")
        assert labels.dtype == np.uint32 and labels.shape == (96, 128)
        rows = list(csv.DictReader(io.StringIO((out / f"{stem}_cells.csv").read_text())))
        assert len(rows) == labels.max() > 5
        assert sorted(int(row["label"]) for row in rows) == sorted(set(np.unique(labels)) - {0})
        assert (out / f"{stem}_overlay.png").read_bytes().startswith(b"\x89PNG")


def test_more_views_give_another_segmentation_of_the_same_image(tiny_model, images, tmp_path):
    labels = {}
    for views in ("1", "8"):
        out = tmp_path / f"views{views}"
        result = runner.invoke(app, ["segment", str(images / "slice0.png"), "--out", str(out),
                                     "--model", str(tiny_model), "--views", views])
        assert result.exit_code == 0, result.output
        labels[views] = tifffile.imread(out / "slice0_labels.tif")
    assert not np.array_equal(labels["1"], labels["8"])


def test_a_number_of_views_that_is_not_1_2_4_or_8_is_a_usage_error(tiny_model, images, tmp_path):
    result = runner.invoke(app, ["segment", str(images), "--out", str(tmp_path / "out"),
                                 "--model", str(tiny_model), "--views", "3"])
    assert result.exit_code == 2
    assert "views must be one of (1, 2, 4, 8)" in result.output
    assert not (tmp_path / "out").exists()


def test_merging_flags_change_the_segmentation_and_bad_values_are_usage_errors(tiny_model, images, tmp_path):
    labels = {}
    for name, flags in (("merged", ["--merge-threshold", "0.9", "--marker-h", "1"]),
                        ("unmerged", ["--merge-threshold", "0", "--marker-h", "1"])):
        result = runner.invoke(app, ["segment", str(images / "slice0.png"), "--out", str(tmp_path / name),
                                     "--model", str(tiny_model), *flags])
        assert result.exit_code == 0, result.output
        labels[name] = tifffile.imread(tmp_path / name / "slice0_labels.tif")
    assert labels["merged"].max() < labels["unmerged"].max()
    result = runner.invoke(app, ["segment", str(images), "--out", str(tmp_path / "bad"),
                                 "--model", str(tiny_model), "--merge-threshold", "1.5"])
    assert result.exit_code == 2
    assert "merge_threshold must be in [0, 1]" in result.output


def test_segment_takes_the_edge_threshold_under_runs_name_too(tiny_model, images, tmp_path):
    labels = {}
    for flag in ("--threshold", "--edge-threshold"):
        out = tmp_path / flag.strip("-")
        result = runner.invoke(app, ["segment", str(images / "slice0.png"), "--out", str(out),
                                     "--model", str(tiny_model), flag, "0.9"])
        assert result.exit_code == 0, result.output
        labels[flag] = tifffile.imread(out / "slice0_labels.tif")
    assert np.array_equal(labels["--threshold"], labels["--edge-threshold"])
    result = runner.invoke(app, ["segment", str(images / "slice0.png"), "--out", str(tmp_path / "bad"),
                                 "--model", str(tiny_model), "--edge-threshold", "0"])
    assert result.exit_code == 2 and "threshold must be in (0, 1]" in result.output


def test_segment_records_the_model_parameters_and_given_scale_next_to_the_cells(tiny_model, images, tmp_path):
    from tiny_model import model_copy

    model = model_copy(tiny_model, tmp_path / "scaled", scale={"cell_diameter_px": 20})
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(images / "slice0.png"), "--out", str(out), "--model", str(model),
                                 "--cell-diameter", "20"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "slice0_segmentation.json").read_text())
    assert record["scale"]["cell_diameter"] == 20 and record["scale"]["source"] == "given"
    assert record["scale"]["factor"] == 1.0
    assert record["parameters"] == PipelineParams(cell_diameter=20).as_dict()
    assert record["model"] == str(model.resolve())
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_a_cell_diameter_that_is_not_positive_is_a_usage_error(tiny_model, images, tmp_path):
    result = runner.invoke(app, ["segment", str(images), "--out", str(tmp_path / "out"),
                                 "--model", str(tiny_model), "--cell-diameter", "0"])
    assert result.exit_code == 2 and "cell_diameter must be a positive number" in result.output


def test_segment_uses_the_model_cards_tuned_post_processing_unless_a_flag_overrides_it(tiny_model, images, tmp_path):
    from tiny_model import model_copy

    tuned = {"threshold": 0.9, "marker_h": 1.0, "merge_threshold": 0.0, "min_area": 30}
    model = model_copy(tiny_model, tmp_path / "tuned", postprocessing=tuned)
    default = SegmentParams().threshold
    runs = {  # name: model, flags, the threshold the run must use
        "card": (model, [], 0.9),
        "flags": (tiny_model, ["--edge-threshold", "0.9", "--marker-h", "1", "--merge-threshold", "0",
                               "--min-area", "30"], 0.9),
        "card_and_a_flag": (model, ["--edge-threshold", str(default)], default),
        "flags_but_the_threshold": (tiny_model, ["--marker-h", "1", "--merge-threshold", "0", "--min-area", "30"],
                                    default),
    }
    labels = {}
    for name, (path, flags, threshold) in runs.items():
        result = runner.invoke(app, ["segment", str(images / "slice0.png"), "--out", str(tmp_path / name),
                                     "--model", str(path), *flags])
        assert result.exit_code == 0, result.output
        labels[name] = tifffile.imread(tmp_path / name / "slice0_labels.tif")
        recorded = json.loads((tmp_path / name / "slice0_segmentation.json").read_text())["parameters"]
        assert recorded["segment"]["threshold"] == threshold
    assert np.array_equal(labels["card"], labels["flags"])
    assert np.array_equal(labels["card_and_a_flag"], labels["flags_but_the_threshold"])
    assert not np.array_equal(labels["card"], labels["card_and_a_flag"])


def test_settings_give_the_pipeline_their_threshold_area_markers_merging_views_and_inversion(tmp_path):
    config = tmp_path / "luigi.cfg"
    config.write_text("[cellpipe]\nviews = 4\nedge_threshold = 0.3\nmarker_h = 12\n")
    settings = Settings.load({"min_area": 50}, config_path=config,
                             environ={"CELLPIPE_INVERT": "true", "CELLPIPE_MERGE_THRESHOLD": "0.7"})
    assert settings.pipeline_params() == PipelineParams(
        invert="true", views=4,
        segment=SegmentParams(threshold=0.3, min_area=50, marker_h=12.0, merge_threshold=0.7),
    )
    assert Settings.load(config_path=tmp_path / "none.cfg", environ={}).pipeline_params() == PipelineParams()


def test_post_processing_settings_override_the_model_cards_tuned_values_one_by_one(tmp_path):
    card = {"threshold": 0.35, "marker_h": 3.0, "merge_threshold": 0.45, "min_area": 20}
    config = tmp_path / "luigi.cfg"
    config.write_text("[cellpipe]\nedge_threshold =\nmerge_threshold = 0.5\n")  # empty: not set
    settings = Settings.load({"min_area": 50}, config_path=config, environ={"CELLPIPE_MARKER_H": "4"})
    assert settings.edge_threshold is None
    assert settings.pipeline_params(card).segment == SegmentParams(threshold=0.35, marker_h=4.0,
                                                                   merge_threshold=0.5, min_area=50)
    unset = Settings.load(config_path=tmp_path / "none.cfg", environ={})
    assert unset.pipeline_params(card).segment == SegmentParams(**card)
    assert unset.pipeline_params({}).segment == SegmentParams()


def test_the_cell_diameter_setting_comes_from_flags_env_or_luigi_cfg_and_defaults_to_an_estimate(tmp_path):
    config = tmp_path / "luigi.cfg"
    config.write_text("[cellpipe]\ncell_diameter = 12.5\n")
    assert Settings.load(config_path=config, environ={}).pipeline_params().cell_diameter == 12.5
    assert Settings.load(config_path=config, environ={"CELLPIPE_CELL_DIAMETER": "30"}).cell_diameter == 30.0
    assert Settings.load({"cell_diameter": 40.0}, config_path=config, environ={}).cell_diameter == 40.0
    assert Settings.load(config_path=tmp_path / "none.cfg", environ={}).pipeline_params().cell_diameter is None
    with pytest.raises(ValueError, match="cell_diameter='wide' is not a valid float"):
        Settings.load(config_path=config, environ={"CELLPIPE_CELL_DIAMETER": "wide"})


def test_the_shipped_models_card_values_are_the_default_post_processing(tmp_path):
    from cellpipe.pipeline import card_segment_params
    from cellpipe.tasks.context import resolve_model

    card = resolve_model("").card  # read as JSON, without TensorFlow
    params = Settings.load(config_path=tmp_path / "none.cfg", environ={}).pipeline_params(card.get("postprocessing"))
    assert params.segment == card_segment_params(card.get("postprocessing"))


def test_stored_parameters_give_back_the_pipeline_parameters_they_came_from():
    params = PipelineParams(invert="false", views=2, segment=SegmentParams(threshold=0.4, min_area=8))
    assert PipelineParams.from_dict(params.as_dict()) == params
    written_before_views = {"invert": "auto", "segment": SegmentParams().as_dict()}
    assert PipelineParams.from_dict(written_before_views).views == 1
    before_merging = {k: v for k, v in SegmentParams(merge_threshold=0.6).as_dict().items() if k != "merge_threshold"}
    old = PipelineParams.from_dict({"invert": "auto", "segment": before_merging})
    assert old.segment.merge_threshold == 0.0  # made without merging, whatever today's default


def test_segment_refuses_an_image_over_max_pixels_and_reads_it_under_a_raised_limit(tiny_model, images, tmp_path):
    image = str(images / "slice0.png")
    refused = runner.invoke(app, ["segment", image, "--out", str(tmp_path / "a"), "--model", str(tiny_model),
                                  "--max-pixels", "1000"])
    assert refused.exit_code == 1
    assert "12,288 pixels, more than the limit of 1,000" in " ".join(refused.output.split())
    assert not (tmp_path / "a" / "slice0_labels.tif").exists()
    read = runner.invoke(app, ["segment", image, "--out", str(tmp_path / "b"), "--model", str(tiny_model),
                               "--max-pixels", "12288"])
    assert read.exit_code == 0, read.output
    assert (tmp_path / "b" / "slice0_labels.tif").is_file()


def test_the_max_pixels_setting_comes_from_flags_env_or_luigi_cfg_and_the_shipped_cfg_keeps_the_default(tmp_path):
    from pathlib import Path

    from cellpipe.io import DEFAULT_MAX_PIXELS

    shipped = Path(__file__).resolve().parents[1] / "luigi.cfg"
    assert Settings.load(config_path=shipped, environ={}).max_pixels == DEFAULT_MAX_PIXELS
    config = tmp_path / "luigi.cfg"
    config.write_text("[cellpipe]\nmax_pixels = 500\n")
    assert Settings.load(config_path=config, environ={}).max_pixels == 500
    assert Settings.load(config_path=config, environ={"CELLPIPE_MAX_PIXELS": "600"}).max_pixels == 600
    assert Settings.load({"max_pixels": 700}, config_path=config, environ={}).max_pixels == 700
