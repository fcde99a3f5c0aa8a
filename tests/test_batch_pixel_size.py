"""Wall grids of known pitch, written with each pixel-size convention, through ``cellpipe run``:
the stored size and source, µm columns, density, chords and anisotropy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from cellpipe.cli import _register_commands, app
from cellpipe.units import read_pixel_size

pytest_plugins = ["tiny_model"]  # the session fixture `tiny_model`

DAY = dt.date(2024, 6, 1)
WALL = 3


def grid_image(pitch_x: int, pitch_y: int, n_x: int, n_y: int, seed: int) -> np.ndarray:
    """Return a gray image of bright cells in a dark wall grid (walls on every side), lightly noisy."""
    height, width = n_y * pitch_y + WALL, n_x * pitch_x + WALL
    image = np.full((height, width), 190.0)
    for k in range(n_x + 1):
        image[:, k * pitch_x : k * pitch_x + WALL] = 40.0
    for k in range(n_y + 1):
        image[k * pitch_y : k * pitch_y + WALL, :] = 40.0
    image += np.random.default_rng(seed).normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_grid(path: Path, convention: str, pixel_size_um: float, pitch=(20, 20), n=(9, 9), seed=0) -> np.ndarray:
    image = grid_image(*pitch, *n, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    per_um = 1 / pixel_size_um
    if convention == "ome":
        tifffile.imwrite(path, image, ome=True, metadata={"axes": "YX", "PhysicalSizeX": pixel_size_um,
                                                          "PhysicalSizeY": pixel_size_um})
    elif convention == "imagej":
        tifffile.imwrite(path, image, imagej=True, resolution=(per_um, per_um), metadata={"unit": "um"})
    elif convention == "sem":
        header = f"[Scan]\nPixelWidth={pixel_size_um * 1e-6!r}\nPixelHeight={pixel_size_um * 1e-6!r}\n"
        tifffile.imwrite(path, image, extratags=[(34682, "s", 0, header, True)])
    elif convention == "tiff-cm":
        tifffile.imwrite(path, image, resolution=(1e4 * per_um, 1e4 * per_um), resolutionunit="CENTIMETER")
    elif convention == "tiff-inch":
        tifffile.imwrite(path, image, resolution=(25400 * per_um, 25400 * per_um), resolutionunit="INCH")
    elif convention == "none":
        Image.fromarray(image).save(path, format="PNG")
    return image


def run(tmp_path: Path, model: Path, *extra: str):
    _register_commands()
    result = CliRunner().invoke(app, ["run", "--date", DAY.isoformat(), "--db", f"sqlite:///{tmp_path / 'c.sqlite'}",
                                      "--model", str(model), "--input", str(tmp_path / "input"),
                                      "--output", str(tmp_path / "results"), *extra])
    return result


def query(tmp_path: Path, sql: str) -> list[tuple]:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def summary(tmp_path: Path) -> dict[str, dict]:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    try:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT * FROM image_summary")).mappings().all()
    finally:
        engine.dispose()
    return {Path(row["source_uri"]).name: dict(row) for row in found}


CONVENTIONS = {"ome.tif": ("ome", 0.5, "ome"), "imagej.tif": ("imagej", 1.25, "imagej"),
               "sem.tif": ("sem", 0.004, "sem"), "cm.tif": ("tiff-cm", 2.0, "tiff"),
               "inch.tif": ("tiff-inch", 0.8, "tiff"), "plain.png": ("none", None, None)}


def test_each_convention_gives_the_exact_size_and_the_figures_of_the_grid(tmp_path, tiny_model):
    folder = tmp_path / "input" / DAY.isoformat()
    for seed, (name, (convention, size, _)) in enumerate(CONVENTIONS.items()):
        write_grid(folder / name, convention, size or 1.0, seed=seed)
    result = run(tmp_path, tiny_model)
    assert result.exit_code == 0, result.output
    rows = summary(tmp_path)
    n_true, area_px = 81, (9 * 20 + WALL) ** 2
    for name, (_, size, source) in CONVENTIONS.items():
        row = rows[name]
        assert (row["pixel_size_um"], row["pixel_size_source"]) == (size, source), name
        assert row["n_cells"] == n_true, name  # the grid is segmented cell for cell
        assert row["mean_chord_x_px"] == pytest.approx(20.0, rel=0.05), name
        assert row["mean_chord_y_px"] == pytest.approx(20.0, rel=0.05), name
        if size is None:
            assert row["cells_per_mm2"] is None and row["mean_chord_x_um"] is None and row["d50_um"] is None
            continue
        assert row["cells_per_mm2"] == pytest.approx(n_true / (area_px * size**2) * 1e6, rel=0.01), name
        assert row["mean_chord_x_um"] == pytest.approx(20.0 * size, rel=0.05), name
        assert row["mean_chord_y_um"] == pytest.approx(20.0 * size, rel=0.05), name
    for area, area_um2, size in query(tmp_path, "SELECT area, area_um2, pixel_size_um FROM cell_metrics"):
        assert (area_um2 is None) == (size is None)
        if size is not None:
            assert area_um2 == pytest.approx(area * size * size, rel=1e-12)
    # A file without a size is said once per batch, and its µm figures are NULL, not zeros.
    assert result.output.count("pixel size unknown") == 1 and "plain.png" in result.output
    assert query(tmp_path, "SELECT count(*) FROM cell_metrics WHERE area_um2 = 0") == [(0,)]
    # The label TIFF of a calibrated image carries its size.
    labels = tmp_path / "results" / DAY.isoformat() / "ome_labels.tif"
    assert read_pixel_size(labels).x_um == 0.5


def test_the_setting_overrides_the_metadata(tmp_path, tiny_model):
    folder = tmp_path / "input" / DAY.isoformat()
    write_grid(folder / "ome.tif", "ome", 0.5)
    write_grid(folder / "plain.png", "none", 1.0, seed=1)
    result = run(tmp_path, tiny_model, "--pixel-size", "3.5")
    assert result.exit_code == 0, result.output
    assert {(name, row["pixel_size_um"], row["pixel_size_source"]) for name, row in summary(tmp_path).items()} == \
        {("ome.tif", 3.5, "setting"), ("plain.png", 3.5, "setting")}
    assert "pixel size unknown" not in result.output


def test_anisotropy_of_a_grid_stretched_in_y(tmp_path, tiny_model):
    write_grid(tmp_path / "input" / DAY.isoformat() / "stretched.tif", "ome", 1.0, pitch=(16, 24), n=(11, 8))
    result = run(tmp_path, tiny_model)
    assert result.exit_code == 0, result.output
    row = summary(tmp_path)["stretched.tif"]
    assert row["anisotropy"] == pytest.approx(1.5, rel=0.05)
    assert row["mean_chord_x_um"] == pytest.approx(16.0, rel=0.05)
    assert row["mean_chord_y_um"] == pytest.approx(24.0, rel=0.05)


def test_non_square_pixels_are_unknown_and_said_for_that_image(tmp_path, tiny_model):
    path = tmp_path / "input" / DAY.isoformat() / "skewed.tif"
    tifffile.imwrite(path.parent.mkdir(parents=True) or path, grid_image(20, 20, 4, 4, seed=0), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.6})
    result = run(tmp_path, tiny_model)
    assert result.exit_code == 0, result.output
    row = summary(tmp_path)["skewed.tif"]
    assert row["pixel_size_um"] is None and row["cells_per_mm2"] is None
    assert "pixel size unusable for 2024-06-01/skewed.tif" in result.output and "not square" in result.output


def test_report_and_export_carry_the_figures_in_micrometres(tmp_path, tiny_model):
    folder = tmp_path / "input" / DAY.isoformat()
    write_grid(folder / "ome.tif", "ome", 0.5)
    write_grid(folder / "plain.png", "none", 1.0, seed=1)
    assert run(tmp_path, tiny_model).exit_code == 0
    row = summary(tmp_path)["ome.tif"]
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    report = CliRunner().invoke(app, ["report", "--date", DAY.isoformat(), "--db", db, "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "r" / "index.html").read_text()
    assert "<h2>Quality</h2>" in page and "<h2>Quality by batch date</h2>" in page
    assert "0.5 µm (ome)" in page and f"{row['cells_per_mm2']:.4g}</td>" in page
    assert f"{row['mean_chord_x_um']:.4g} µm" in page
    assert f"{summary(tmp_path)['plain.png']['mean_chord_x_px']:.4g} px" in page  # no size: shown in px
    out = tmp_path / "images.csv"
    export = CliRunner().invoke(app, ["export", "images", "--db", db, "--out", str(out)])
    assert export.exit_code == 0, export.output
    header = out.read_text().splitlines()[0].split(",")
    assert {"pixel_size_um", "cells_per_mm2", "mean_chord_x_um", "anisotropy", "apparent_cell_size_um",
            "d50_um", "d50_all_um", "mean_wall_thickness_um"} <= set(header)
