"""``cellpipe label convert|export``, ``cellpipe dataset check`` and ``cellpipe report``."""

import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cellpipe.cli import app
from cellpipe.cli import commands_label  # noqa: F401  (registers the commands)
from cellpipe.io import write_labels_tiff, write_png
from cellpipe.labels import read_mapping
from cellpipe.synthetic import synthetic_cells
from test_report import build_results

runner = CliRunner()
FIXTURE = Path(__file__).parent / "fixtures" / "labelme" / "tissue.json"


def run(*arguments):
    return runner.invoke(app, [str(a) for a in arguments])


def test_convert_turns_a_folder_of_labelme_files_and_paintings_into_pairs(tmp_path):
    sample = synthetic_cells((64, 80), seed=3, mean_cell_diameter=20)
    shutil.copy(FIXTURE, tmp_path / "tissue.json")
    write_png(tmp_path / "labels" / "foam_painted.png", np.where(sample.labels > 0, 255, 0).astype(np.uint8))
    write_png(tmp_path / "originals" / "foam.png", sample.image)

    result = run("label", "convert", tmp_path / "tissue.json", tmp_path / "labels", "--out", tmp_path / "data",
                 "--originals", tmp_path / "originals")

    assert result.exit_code == 0, result.output
    assert "tissue.json → 0 (labelme, 5 cells)" in result.output
    assert f"foam_painted.png → 1 (painted on white, {sample.n_cells} cells)" in result.output
    assert [row["n"] for row in read_mapping(tmp_path / "data" / "mapping.csv")] == ["0", "1"]


def test_convert_fails_for_a_painting_on_white_without_its_original(tmp_path):
    write_png(tmp_path / "a.png", np.where(synthetic_cells((64, 64), seed=1).labels > 0, 255, 0).astype(np.uint8))
    result = run("label", "convert", tmp_path / "a.png", "--out", tmp_path / "data")
    assert result.exit_code == 1
    assert "--originals" in result.output and "0 converted, 1 failed" in result.output


def test_export_writes_a_labelme_file_per_label_image(tmp_path):
    sample = synthetic_cells((64, 64), seed=2, mean_cell_diameter=20)
    write_labels_tiff(tmp_path / "seg" / "a_labels.tif", sample.labels)
    write_png(tmp_path / "seg" / "a.png", sample.image)

    result = run("label", "export", tmp_path / "seg" / "a_labels.tif", "--out", tmp_path / "labelme")

    assert result.exit_code == 0, result.output
    assert f"({sample.n_cells} cells)" in result.output and (tmp_path / "labelme" / "a.json").is_file()


def test_export_fails_clearly_without_the_image(tmp_path):
    write_labels_tiff(tmp_path / "a_labels.tif", synthetic_cells((64, 64), seed=2).labels)
    result = run("label", "export", tmp_path / "a_labels.tif", "--out", tmp_path / "labelme")
    assert result.exit_code == 1 and "no image for" in result.output and "--images" in result.output


def test_dataset_check_exit_code_says_whether_problems_were_found(tmp_path):
    run("label", "convert", FIXTURE, "--out", tmp_path / "data", "--edge-width", "1")
    ok = run("dataset", "check", tmp_path / "data", "--max-cell-fraction", "0.9", "--max-wall-fraction", "0.95")
    (tmp_path / "data" / "label" / "0.png").unlink()
    broken = run("dataset", "check", tmp_path / "data")
    assert ok.exit_code == 0 and "no problems found" in ok.output
    assert broken.exit_code == 1 and "0: missing label" in broken.output


def test_report_writes_index_html_from_the_database(tmp_path):
    results = build_results(tmp_path / "results")
    result = run("report", "--db", results.url, "--date", "2025-03-01", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "batch of 2025-03-01: 2 images" in result.output
    assert (tmp_path / "report" / "index.html").is_file()


def test_report_errors_name_what_is_wrong(tmp_path):
    results = build_results(tmp_path / "results")
    unknown = run("report", "--db", results.url, "--run", "999", "--out", tmp_path / "report")
    both = run("report", "--db", results.url, "--run", "1", "--date", "2025-03-01", "--out", tmp_path / "report")
    assert unknown.exit_code == 1 and "no run with id 999" in unknown.output
    assert both.exit_code == 2 and "not both" in both.output
