"""Specification of cellpipe.io: what read_image returns and how it refuses bad files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from cellpipe import io as cellio
from cellpipe.io import ImageReadError, image_info, read_image, read_labels_tiff, write_labels_tiff, write_png

SEED_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed-samples"


def ramp(shape=(32, 48), dtype=np.uint8, top=None):
    """Return an image whose every pixel differs, so round trips are checked exactly."""
    top = np.iinfo(dtype).max if top is None else top
    values = np.linspace(0, top, shape[0] * shape[1]).reshape(shape)
    return values.astype(dtype)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def tiff_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """Return a PNG whose header claims width x height but which holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def luminance_601(rgb: np.ndarray) -> np.ndarray:
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


# --- what comes back -------------------------------------------------------------------


def test_8bit_gray_png_round_trips_exactly(tmp_path):
    image = ramp()
    Image.fromarray(image).save(tmp_path / "gray.png")
    result = read_image(tmp_path / "gray.png")
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, image)


def test_16bit_png_keeps_16_bits(tmp_path):
    image = ramp(dtype=np.uint16)
    Image.fromarray(image).save(tmp_path / "gray16.png")
    result = read_image(tmp_path / "gray16.png")
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result, image)


def test_rgb_png_becomes_gray_by_bt601_luminance(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    result = read_image(tmp_path / "rgb.png")
    assert result.dtype == np.uint8 and result.shape == (20, 30)
    np.testing.assert_allclose(result, luminance_601(rgb.astype(float)), atol=0.5 + 1e-6)


def test_rgba_png_drops_alpha(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    alpha = np.random.default_rng(2).integers(0, 256, (20, 30, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2)).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), read_image(tmp_path / "rgb.png"))


def test_1bit_png_becomes_uint8_0_and_255(tmp_path):
    mask = ramp() > 100
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = read_image(tmp_path / "mask.png")
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, np.where(mask, 255, 0))


def test_jpeg_and_bmp_are_read(tmp_path):
    image = ramp()
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(image).save(tmp_path / "a.bmp")
    jpeg = read_image(tmp_path / "a.jpg")
    assert jpeg.dtype == np.uint8 and np.abs(jpeg.astype(int) - image).mean() < 3
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp"), image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_keeps_its_pixel_type(tmp_path, dtype):
    image = ramp(dtype=dtype, top=1.0 if dtype == np.float32 else None)
    tifffile.imwrite(tmp_path / "a.tif", image)
    result = read_image(tmp_path / "a.tif")
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, image)


def test_compressed_tiff_is_read(tmp_path):
    image = ramp(dtype=np.uint16)
    tifffile.imwrite(tmp_path / "lzw.tif", image, compression="lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "lzw.tif"), image)


def test_16bit_rgb_tiff_becomes_16bit_gray(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 65536, (16, 24, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb, photometric="rgb")
    result = read_image(tmp_path / "rgb16.tif")
    assert result.dtype == np.uint16 and result.shape == (16, 24)
    np.testing.assert_allclose(result, luminance_601(rgb.astype(float)), atol=0.5 + 1e-6)


def test_signed_16bit_tiff_becomes_exact_float32(tmp_path):
    image = np.arange(-300, 300, dtype=np.int16).reshape(20, 30)
    tifffile.imwrite(tmp_path / "signed.tif", image)
    result = read_image(tmp_path / "signed.tif")
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, image)


@pytest.mark.parametrize("encode", [png_bytes, tiff_bytes])
def test_returned_array_is_writable_and_contiguous(encode):
    image = read_image(encode(ramp()))
    assert image.flags.writeable and image.flags.c_contiguous
    image[0, 0] = 1


def test_bytes_give_the_same_image_as_the_path(tmp_path):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, ramp(dtype=np.uint16))
    np.testing.assert_array_equal(read_image(path.read_bytes(), name="blob/a.tif"), read_image(path))
    np.testing.assert_array_equal(read_image(memoryview(png_bytes(ramp()))), ramp())


def test_format_comes_from_content_not_the_name(tmp_path):
    (tmp_path / "really_a_png.tif").write_bytes(png_bytes(ramp()))
    np.testing.assert_array_equal(read_image(tmp_path / "really_a_png.tif"), ramp())


def test_page_selects_one_page_of_a_multipage_tiff(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.stack([np.full((8, 9), value, np.uint16) for value in (10, 20, 30)]),
                     photometric="minisblack")
    result = read_image(path, page=1)
    assert result.shape == (8, 9) and (result == 20).all()


def test_real_seed_sample_is_read_as_2d_uint8():
    if not SEED_SAMPLES.is_dir():
        pytest.skip(f"shared seed samples not found at {SEED_SAMPLES}")
    image = read_image(SEED_SAMPLES / "cell.jpg")
    assert image.dtype == np.uint8 and image.shape == (572, 717)


# --- what is refused, and what the message says ------------------------------------------


def error_of(source, **options) -> ImageReadError:
    with pytest.raises(ImageReadError) as caught:
        read_image(source, **options)
    return caught.value


def test_read_errors_are_value_errors_naming_problem_and_remedy(tmp_path):
    error = error_of(tmp_path / "missing.png")
    assert isinstance(error, ValueError)
    assert error.name == str(tmp_path / "missing.png") and "no such file" in error.problem
    assert str(tmp_path / "missing.png") in str(error) and error.remedy in str(error)


def test_empty_file_is_refused_as_empty(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty (0 bytes)" in str(error_of(tmp_path / "empty.png"))
    assert "upload.bin" in str(error_of(b"", name="upload.bin"))


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".tif", "TIFF")])
def test_truncated_file_is_refused_as_truncated_or_corrupt(tmp_path, suffix, fmt):
    path = tmp_path / f"whole{suffix}"
    image = np.random.default_rng(4).integers(0, 256, (64, 64), dtype=np.uint8)
    if fmt == "TIFF":
        tifffile.imwrite(path, image)
    else:
        Image.fromarray(image).save(path)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    error = error_of(cut)
    assert f"{fmt} data is truncated or corrupt" in error.problem and str(cut) in str(error)


def test_truncated_png_stays_an_error_because_pillow_is_not_told_to_pad():
    error_of(png_bytes(ramp((64, 64)))[:-200])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_random_bytes_are_not_an_image():
    error = error_of(np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8).tobytes())
    assert "not an image" in error.problem and "PNG, JPEG, TIFF" in error.remedy


def test_text_file_named_png_is_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("cell counts for batch 7\nfoam: 210\n")
    assert "text file, not an image" in error_of(tmp_path / "notes.png").problem


def test_known_but_unsupported_format_is_named(tmp_path):
    Image.fromarray(ramp()).save(tmp_path / "a.gif")
    error = error_of(tmp_path / "a.gif")
    assert "GIF files are not supported" in error.problem and "Convert it" in error.remedy


def test_multipage_tiff_without_page_says_how_many_and_how_to_choose(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 9), np.uint8), photometric="minisblack")
    error = error_of(path)
    assert "3 pages" in error.problem and "page=N" in error.remedy and "--page" in error.remedy


def test_page_beyond_the_last_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 9), np.uint8), photometric="minisblack")
    assert "page 3" in error_of(path, page=3).problem
    assert "has 1 page" in error_of(png_bytes(ramp()), page=1).problem


def test_negative_page_is_a_usage_error():
    with pytest.raises(ValueError, match="page must be"):
        read_image(png_bytes(ramp()), page=-1)


@pytest.mark.parametrize("dtype", [np.complex64, np.int32, np.uint32])
def test_unsupported_pixel_type_is_refused(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "odd.tif", np.ones((8, 8), dtype=dtype))
    error = error_of(tmp_path / "odd.tif")
    assert f"pixel type {np.dtype(dtype)} is not supported" in error.problem


def test_many_channel_tiff_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((8, 9, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    assert "5 channels per pixel" in error_of(tmp_path / "five.tif").problem


def test_volumetric_tiff_page_is_refused_as_not_2d(tmp_path):
    tifffile.imwrite(tmp_path / "volume.tif", np.zeros((4, 32, 32), np.uint8), photometric="minisblack",
                     tile=(16, 16), volumetric=True)
    assert "shape (4, 32, 32), not 2-D" in error_of(tmp_path / "volume.tif").problem


def test_single_row_image_is_refused():
    error = error_of(png_bytes(np.zeros((1, 50), np.uint8)))
    assert "50 x 1 pixels" in error.problem and "at least 2 pixels along each axis" in error.remedy


def test_huge_header_is_refused_before_decoding():
    # Decoding would fail as truncated: only a header check can give this message.
    error = error_of(png_header_only(50_000, 50_000), name="bomb.png")
    assert "2,500,000,000 pixels" in error.problem and "max_pixels" in error.remedy


def test_max_pixels_is_checked_on_the_tiff_header_without_decoding(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "a.tif", ramp((40, 50)))

    def must_not_decode(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", must_not_decode)
    assert "2,000 pixels" in error_of(tmp_path / "a.tif", max_pixels=1999).problem


def test_default_limit_admits_8192_squared():
    assert cellio.DEFAULT_MAX_PIXELS >= 8192 * 8192
    np.testing.assert_array_equal(read_image(png_bytes(ramp()), max_pixels=32 * 48), ramp())


# --- image_info and writers ----------------------------------------------------------------


@pytest.mark.parametrize("dtype, bits", [(np.uint8, 8), (np.uint16, 16), (np.float32, 32)])
def test_image_info_reports_shape_and_bit_depth(dtype, bits):
    info = image_info(np.zeros((3, 5), dtype))
    assert info.as_dict() == {"height": 3, "width": 5, "dtype": np.dtype(dtype).name, "bit_depth": bits}


def test_labels_tiff_round_trips_as_compressed_uint32(tmp_path):
    labels = np.zeros((256, 256), np.int32)
    labels[10:100, 20:200] = 70_000
    labels[120:250, 5:50] = 3
    path = write_labels_tiff(tmp_path / "out" / "labels.tif", labels)
    stored = read_labels_tiff(path)
    assert stored.dtype == np.uint32
    np.testing.assert_array_equal(stored, labels)
    assert path.stat().st_size < labels.size * 4 / 10


def test_writers_replace_atomically_and_leave_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "labels.tif"
    write_labels_tiff(path, np.ones((4, 4), np.uint8))
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", crash)
    with pytest.raises(OSError, match="disk full"):
        write_labels_tiff(path, np.zeros((4, 4), np.uint8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["labels.tif"]


def test_negative_labels_are_refused(tmp_path):
    with pytest.raises(ValueError, match="0 .. 2\\*\\*32 - 1"):
        write_labels_tiff(tmp_path / "l.tif", np.full((2, 2), -1))


@pytest.mark.parametrize("image", [ramp(), ramp(dtype=np.uint16)])
def test_png_round_trips_gray_8_and_16_bit(tmp_path, image):
    path = write_png(tmp_path / "a.png", image)
    result = read_image(path)
    assert result.dtype == image.dtype
    np.testing.assert_array_equal(result, image)


def test_png_of_rgb_overlay_is_written(tmp_path):
    overlay = np.random.default_rng(6).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = write_png(tmp_path / "overlay.png", overlay)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), overlay)


def test_png_of_float_image_is_refused(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "a.png", np.zeros((4, 4), np.float32))
