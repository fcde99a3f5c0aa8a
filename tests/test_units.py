"""Pixel sizes read from each metadata convention (files written by tifffile here), the
setting over the metadata, non-square pixels never averaged, and µm columns."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellpipe.io import read_labels_tiff
from cellpipe.results import cells_csv_bytes, labels_tiff_bytes
from cellpipe.settings import Settings
from cellpipe.units import (
    PixelSize,
    PixelSizeNotices,
    micrometre_columns,
    read_pixel_size,
    resolve_pixel_size,
)

PIXELS = np.zeros((8, 10), np.uint8)


def tiff(**options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, PIXELS, **options)
    return buffer.getvalue()


def ome(x, y, unit="µm") -> bytes:
    return tiff(ome=True, metadata={"axes": "YX", "PhysicalSizeX": x, "PhysicalSizeXUnit": unit,
                                    "PhysicalSizeY": y, "PhysicalSizeYUnit": unit})


def test_ome_physical_size_in_micrometres():
    assert read_pixel_size(ome(0.325, 0.325)) == PixelSize(0.325, 0.325, "ome")


def test_ome_physical_size_in_nanometres_is_converted():
    size = read_pixel_size(ome(2.5, 2.5, unit="nm"))
    assert size.source == "ome" and size.x_um == pytest.approx(0.0025, rel=1e-12)


def test_ome_without_unit_means_micrometres_as_the_schema_says():
    size = read_pixel_size(tiff(ome=True, metadata={"axes": "YX", "PhysicalSizeX": 1.5, "PhysicalSizeY": 1.5}))
    assert size == PixelSize(1.5, 1.5, "ome")


@pytest.mark.parametrize("unit", ["um", "micron", "\\u00B5m"])  # ImageJ writes µm escaped
def test_imagej_unit_and_resolution(unit):
    data = tiff(imagej=True, resolution=(1 / 0.25, 1 / 0.25), metadata={"unit": unit})
    size = read_pixel_size(data)
    assert size.source == "imagej" and size.x_um == pytest.approx(0.25) and size.y_um == pytest.approx(0.25)


def test_imagej_in_millimetres():
    size = read_pixel_size(tiff(imagej=True, resolution=(50.0, 50.0), metadata={"unit": "mm"}))
    assert size.source == "imagej" and size.x_um == pytest.approx(20.0)


def test_imagej_file_without_a_unit_has_no_size():
    assert read_pixel_size(tiff(imagej=True, resolution=(4.0, 4.0))) is None


def test_fei_pixel_width_in_metres():
    header = "[User]\nDate=01/02/2024\n[Scan]\nPixelWidth=2.5e-09\nPixelHeight=2.5e-09\n"
    size = read_pixel_size(tiff(extratags=[(34682, "s", 0, header, True)]))
    assert size.source == "sem" and size.x_um == pytest.approx(0.0025, rel=1e-12)


def test_zeiss_image_pixel_size_with_its_unit():
    header = "\r\n0\r\nAP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = 3.5 nm\r\nAP_WD\r\nWD = 8.5 mm\r\n"
    size = read_pixel_size(tiff(extratags=[(34118, "s", 0, header, True)]))
    assert size.source == "sem" and size.x_um == pytest.approx(0.0035, rel=1e-12) and size.y_um == size.x_um


def test_baseline_resolution_in_centimetres():
    assert read_pixel_size(tiff(resolution=(20000.0, 20000.0), resolutionunit="CENTIMETER")) == \
        PixelSize(0.5, 0.5, "tiff")


def test_baseline_resolution_in_inches():
    size = read_pixel_size(tiff(resolution=(25400.0 / 2, 25400.0 / 2), resolutionunit="INCH"))
    assert size == PixelSize(2.0, 2.0, "tiff")


def test_resolution_without_unit_says_nothing():
    assert read_pixel_size(tiff(resolution=(3.0, 3.0), resolutionunit="NONE")) is None
    assert read_pixel_size(tiff()) is None  # tifffile writes 1/1 with unit "none" by default


def test_editor_default_of_72_dpi_is_not_a_calibration():
    assert read_pixel_size(tiff(resolution=(72.0, 72.0), resolutionunit="INCH")) is None


def test_ome_comes_before_the_resolution_tags():
    data = tiff(ome=True, resolution=(20000.0, 20000.0), resolutionunit="CENTIMETER",
                metadata={"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
    assert read_pixel_size(data).source == "ome"


def test_png_has_no_size():
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, format="PNG", dpi=(300, 300))
    assert read_pixel_size(buffer.getvalue()) is None


def test_a_path_is_read_like_bytes(tmp_path):
    path = tmp_path / "a.tif"
    path.write_bytes(ome(0.5, 0.5))
    assert read_pixel_size(path) == PixelSize(0.5, 0.5, "ome")


def test_setting_overrides_metadata():
    resolved = resolve_pixel_size(read_pixel_size(ome(0.5, 0.5)), 2.0)
    assert (resolved.um, resolved.source) == (2.0, "setting")


def test_metadata_is_used_without_a_setting():
    resolved = resolve_pixel_size(read_pixel_size(ome(0.5, 0.5)), None)
    assert (resolved.um, resolved.source, resolved.problem) == (0.5, "ome", "")


def test_unequal_x_and_y_are_never_averaged():
    size = read_pixel_size(ome(0.5, 0.75))
    assert (size.x_um, size.y_um) == (0.5, 0.75)  # both kept as the file gives them
    resolved = resolve_pixel_size(size, None)
    assert resolved.um is None and resolved.source is None
    assert "not square" in resolved.problem and "0.5" in resolved.problem and "0.75" in resolved.problem


def test_no_metadata_and_no_setting_is_unknown():
    resolved = resolve_pixel_size(None, None)
    assert (resolved.um, resolved.source, resolved.problem) == (None, None, "")


def test_pixel_size_setting_from_flag_environment_and_luigi_cfg(tmp_path):
    config = tmp_path / "luigi.cfg"
    config.write_text("[cellpipe]\npixel_size = 0.8\n")
    assert Settings.load(config_path=config, environ={}).pixel_size == 0.8
    assert Settings.load(config_path=config, environ={"CELLPIPE_PIXEL_SIZE": "1.25"}).pixel_size == 1.25
    assert Settings.load({"pixel_size": 3.0}, config_path=config, environ={"CELLPIPE_PIXEL_SIZE": "1.25"}).pixel_size \
        == 3.0
    assert Settings.load(config_path=tmp_path / "none.cfg", environ={}).pixel_size is None


def test_a_pixel_size_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="pixel_size"):
        Settings(pixel_size=0.0)


def test_unknown_size_is_said_once_and_unusable_ones_per_image():
    notices = PixelSizeNotices()
    unknown = {"um": None, "source": None, "problem": ""}
    lines = [notices.notice(name, unknown) for name in ("a.png", "b.png", "c.png")]
    assert lines[0] is not None and "a.png" in lines[0] and lines[1:] == [None, None]
    assert notices.notice("d.tif", {"um": 0.5, "source": "ome", "problem": ""}) is None
    unusable = notices.notice("e.tif", {"um": None, "source": None, "problem": "its pixels are not square"})
    assert "e.tif" in unusable and "not square" in unusable


def test_label_tiff_carries_the_pixel_size():
    labels = np.arange(12, dtype=np.int64).reshape(3, 4)
    data = labels_tiff_bytes(labels, 0.65)
    assert read_pixel_size(data) == PixelSize(0.65, 0.65, "ome")
    with tifffile.TiffFile(io.BytesIO(data)) as tif:  # the resolution tags say it too, in cm
        page = tif.pages[0]
        assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER
        assert page.get_resolution()[0] == pytest.approx(1e4 / 0.65)
    assert np.array_equal(read_labels_tiff(io.BytesIO(data)), labels)


def test_label_tiff_without_a_size_says_none():
    assert read_pixel_size(labels_tiff_bytes(np.ones((3, 4), np.int32))) is None


def test_micrometre_columns_scale_lengths_once_and_areas_twice():
    cells = {"area": np.array([4, 10]), "perimeter": np.array([8.0, 14.0]), "centroid-0": np.array([1.0, 2.0]),
             "centroid-1": np.array([3.0, 4.0]), "feret_diameter_max": np.array([3.0, 5.0])}
    um = micrometre_columns(cells, 0.5)
    assert np.array_equal(um["area_um2"], [1.0, 2.5])
    assert np.array_equal(um["perimeter_um"], [4.0, 7.0])
    assert np.array_equal(um["x_um"], [1.5, 2.0]) and np.array_equal(um["y_um"], [0.5, 1.0])
    assert np.array_equal(um["feret_diameter_max_um"], [1.5, 2.5])
    assert "axis_major_length_um" not in um  # no pixel column, no µm column


def test_csv_has_micrometre_columns_only_with_a_known_size():
    cells = {"label": np.array([1]), "area": np.array([4])}
    assert cells_csv_bytes(cells).decode().splitlines()[0] == "label,area"
    lines = cells_csv_bytes(cells, 2.0).decode().splitlines()
    assert lines == ["label,area,area_um2", "1,4,16.0"]
