"""Read microscope images into 2-D gray arrays; write label images and PNGs atomically.

:func:`read_image` accepts a path or the bytes of a file (images also come from blob
storage and HTTP payloads), recognises the format from its first bytes, never from the
file name, and returns a 2-D array that keeps the bit depth:

=========================================  ===========================================
stored as                                  returned as
=========================================  ===========================================
8-bit gray, 1-bit (0/255), 8-bit RGB(A)    uint8
16-bit gray, 16-bit RGB(A) TIFF            uint16
32-bit float, 16-bit float, 64-bit float   float32
8/16-bit signed integer TIFF               float32 (exact)
=========================================  ===========================================

Colour becomes gray by ITU-R BT.601 luminance, ``0.299 R + 0.587 G + 0.114 B`` (the
weights of Pillow's ``convert("L")``); alpha is dropped, not composited. Formats: PNG,
JPEG, BMP (read with Pillow) and TIFF, including BigTIFF and compressed TIFF (read
with tifffile and imagecodecs). 16-bit RGB PNGs are read at 8 bits, as Pillow does.

Every problem with the file itself raises :class:`ImageReadError`, whose message names
the file, says what was wrong and what to do about it.
"""

from __future__ import annotations

import io
import os
import struct
import uuid
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import tifffile
from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

DEFAULT_MAX_PIXELS = 16384 * 16384
"""Largest image, in pixels, that :func:`read_image` decodes unless told otherwise.

268 million pixels: 4 times an 8192 x 8192 image, 0.5 GiB as uint16 and 1 GiB per
float32 working copy. A larger header is far more often a corrupt or hostile file than a
real section; pass ``max_pixels`` to read a genuine one.
"""

MIN_SIDE = 2
"""Fewest pixels along each axis: a single row or column is a line profile, not a section."""

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights of R, G, B used to turn colour images gray."""

SUPPORTED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)
_KNOWN_UNSUPPORTED = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\x93NUMPY", "NumPy .npy"),
    (b"\x89HDF", "HDF5"),
    (b"8BPS", "Photoshop"),
)
_PILLOW_READERS = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.JpegImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
}
# Pixel types returned unchanged, and those converted exactly (or nearly) on reading.
_KEPT_DTYPES = {np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)}
_CONVERTED_DTYPES = {
    np.dtype(np.bool_): np.uint8,
    np.dtype(np.int8): np.float32,
    np.dtype(np.int16): np.float32,
    np.dtype(np.float16): np.float32,
    np.dtype(np.float64): np.float32,
}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError,
                  struct.error, zlib.error, tifffile.TiffFileError)


class ImageReadError(ValueError):
    """An image file cannot be read: empty, corrupt, unsupported or implausibly large.

    Attributes
    ----------
    name : str
        The file's path or the ``name`` given for bytes.
    problem : str
        What is wrong with it.
    remedy : str
        What the user can do.
    """

    def __init__(self, name: str, problem: str, remedy: str) -> None:
        self.name, self.problem, self.remedy = name, problem, remedy
        super().__init__(f"cannot read image {name}: {problem}. {remedy}")


@dataclass(frozen=True)
class ImageInfo:
    """Shape and pixel type of an image, as recorded in the database.

    Attributes
    ----------
    height, width : int
        Size in pixels.
    dtype : str
        ``"uint8"``, ``"uint16"`` or ``"float32"``.
    bit_depth : int
        Bits per pixel: 8, 16 or 32.
    """

    height: int
    width: int
    dtype: str
    bit_depth: int

    def as_dict(self) -> dict[str, object]:
        """Return the fields as a plain dict."""
        return asdict(self)


def image_info(image: np.ndarray) -> ImageInfo:
    """Return the height, width, pixel type and bit depth of a 2-D image array."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got an array of shape {image.shape}")
    return ImageInfo(height=int(image.shape[0]), width=int(image.shape[1]),
                     dtype=str(image.dtype), bit_depth=8 * image.dtype.itemsize)


def read_image(
    source: ImageSource,
    *,
    name: str | None = None,
    page: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Return the image in ``source`` as a 2-D gray array, keeping its bit depth.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray or memoryview
        A file path, or the content of an image file.
    name : str, optional
        How to call the image in error messages; default the path, or ``"<bytes>"``.
    page : int, optional
        Which page of a multi-page TIFF to read, from 0. Required for a TIFF with more
        than one page; other formats accept only ``None`` or 0.
    max_pixels : int
        Largest width x height accepted, checked on the header before any pixel is
        decoded (a guard against decompression bombs). Default :data:`DEFAULT_MAX_PIXELS`.

    Returns
    -------
    ndarray of uint8, uint16 or float32, shape (H, W)
        See the module docstring for how each pixel type is mapped.

    Raises
    ------
    ImageReadError
        The file is missing, empty, truncated or corrupt, not an image, in an unsupported
        format or pixel type, not 2-D, or larger than ``max_pixels``.

    Examples
    --------
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.fromarray(np.zeros((4, 6), np.uint8)).save(buffer, format="PNG")
    >>> read_image(buffer.getvalue(), name="blank.png").shape
    (4, 6)
    """
    if page is not None and (isinstance(page, bool) or not isinstance(page, (int, np.integer)) or page < 0):
        raise ValueError(f"page must be None or an integer >= 0, got {page!r}")
    display, head, handle = _open_source(source, name)
    fmt = _sniff_format(display, head)
    try:
        if fmt == "TIFF":
            image = _read_tiff(handle, display, page, max_pixels)
        else:
            image = _read_with_pillow(_PILLOW_READERS[fmt], handle, display, fmt, page, max_pixels)
    except ImageReadError:
        raise
    except _DECODE_ERRORS as error:
        raise _decode_error(display, fmt, error) from error
    image = _supported_pixels(image, display)
    if image.ndim != 2:
        raise ImageReadError(display, f"the image has shape {image.shape}, not 2-D",
                             "Save a single 2-D gray or colour image (one slice of a stack).")
    if min(image.shape) < MIN_SIDE:
        raise ImageReadError(display, f"the image is {image.shape[1]} x {image.shape[0]} pixels",
                             f"An image needs at least {MIN_SIDE} pixels along each axis.")
    return image


def _open_source(source: ImageSource, name: str | None):
    """Return (display name, first bytes, path or file object) for ``source``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        display = name or "<bytes>"
        if not data:
            raise ImageReadError(display, "it is empty (0 bytes)", "Upload or copy the file again.")
        return display, data[:16], io.BytesIO(data)
    try:
        path = Path(source)
    except TypeError:
        raise TypeError(f"source must be a path or bytes, got {type(source).__name__}") from None
    display = name or str(path)
    try:
        if path.is_dir():
            raise ImageReadError(display, "it is a folder", "Give the path of an image file.")
        with open(path, "rb") as file:
            head = file.read(16)
    except FileNotFoundError:
        raise ImageReadError(display, "no such file", "Check the path.") from None
    except PermissionError:
        raise ImageReadError(display, "permission denied", "Check the file's permissions.") from None
    if not head:
        raise ImageReadError(display, "it is empty (0 bytes)",
                             "The copy or export probably failed; copy or export it again.")
    return display, head, path


def _sniff_format(display: str, head: bytes) -> str:
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature):
            return fmt
    supported = ", ".join(SUPPORTED_FORMATS)
    for signature, fmt in _KNOWN_UNSUPPORTED:
        if head.startswith(signature):
            raise ImageReadError(display, f"{fmt} files are not supported",
                                 f"Convert it to one of {supported} (TIFF keeps 16-bit and float data).")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        raise ImageReadError(display, "WebP files are not supported", f"Convert it to one of {supported}.")
    looks_like_text = _looks_like_text(head)
    what = "it is a text file, not an image" if looks_like_text else "it is not an image"
    raise ImageReadError(
        display, f"{what} (it starts with {head[:8]!r})",
        f"cellpipe reads {supported} files, recognised by their content, not their name.",
    )


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end
            return False
        text = head[: error.start].decode("utf-8")
    return bool(text) and all(char.isprintable() or char.isspace() for char in text)


def _read_with_pillow(reader: Callable, handle, display: str, fmt: str, page, max_pixels: int) -> np.ndarray:
    # The format plugin is used directly so that our max_pixels, not Pillow's global
    # MAX_IMAGE_PIXELS, decides which images are too large; LOAD_TRUNCATED_IMAGES is
    # left False, so load() raises on truncated data.
    with reader(handle) as picture:
        _check_page(display, fmt, page, 1)
        _check_pixel_count(display, picture.size[0] * picture.size[1], max_pixels)
        picture.load()
        mode = picture.mode
        if mode in ("1", "L", "F"):
            return np.asarray(picture)
        if mode.startswith("I;16"):
            return np.asarray(picture).astype(np.uint16)
        if mode == "I":
            values = np.asarray(picture)
            if values.size and (values.min() < 0 or values.max() > 65535):
                raise ImageReadError(display, "it holds 32-bit integer pixels beyond the 16-bit range",
                                     "Save it as 16-bit or 32-bit float TIFF.")
            return values.astype(np.uint16)
        if mode in ("LA", "La"):
            return np.asarray(picture)[..., 0]
        if mode not in ("RGB", "RGBA", "RGBX", "RGBa"):
            picture = picture.convert("RGB")  # palette, CMYK, YCbCr
        return _luminance(np.asarray(picture)[..., :3])


def _read_tiff(handle, display: str, page, max_pixels: int) -> np.ndarray:
    with tifffile.TiffFile(handle) as tif:
        n_pages = len(tif.pages)
        if page is None and n_pages > 1:
            raise ImageReadError(
                display, f"it is a multi-page TIFF with {n_pages} pages",
                f"Choose one with page=N (0 <= N < {n_pages}; on the command line --page N).",
            )
        _check_page(display, "TIFF", page, n_pages)
        tiff_page = tif.pages[page or 0]
        _check_pixel_count(display, tiff_page.imagewidth * tiff_page.imagelength * tiff_page.imagedepth,
                           max_pixels)
        if tiff_page.dtype is None:
            raise ImageReadError(display, f"its pixel type ({tiff_page.bitspersample}-bit "
                                 f"{tiff_page.sampleformat.name}) cannot be decoded",
                                 "Save it as 8/16-bit unsigned or 32-bit float TIFF.")
        _supported_dtype(tiff_page.dtype, display)  # before decoding
        photometric = tiff_page.photometric
        if photometric == tifffile.PHOTOMETRIC.PALETTE:
            raise ImageReadError(display, "it is a palette (indexed colour) TIFF",
                                 "Save it as gray or RGB.")
        pixels = tiff_page.asarray()
        axes = tiff_page.axes
    if "S" in axes:
        pixels = np.moveaxis(pixels, axes.index("S"), -1)
        if photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR) and pixels.shape[-1] >= 3:
            return _luminance(pixels[..., :3])
        if pixels.shape[-1] == 2:  # gray + alpha
            return pixels[..., 0]
        raise ImageReadError(display, f"it has {pixels.shape[-1]} channels per pixel",
                             "Save one channel as a gray image, or the image as RGB.")
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE and pixels.dtype.kind in "bu":
        pixels = ~pixels  # 0 means white in this photometric interpretation
    return pixels


def _check_page(display: str, fmt: str, page, n_pages: int) -> None:
    if page is not None and page >= n_pages:
        valid = "0" if n_pages == 1 else f"0 to {n_pages - 1}"
        raise ImageReadError(display, f"page {page} was asked for but the {fmt} file has "
                             f"{n_pages} page{'s' if n_pages > 1 else ''}", f"Use page {valid}.")


def _check_pixel_count(display: str, n_pixels: int, max_pixels: int) -> None:
    if n_pixels > max_pixels:
        raise ImageReadError(
            display, f"its header claims {n_pixels:,} pixels, more than the limit of {max_pixels:,}",
            "If the image is genuine, raise the limit: --max-pixels N on `cellpipe segment` and `cellpipe run`, "
            "max_pixels in the [cellpipe] section of luigi.cfg, or read_image(..., max_pixels=N); "
            "otherwise the file is corrupt.",
        )


def _supported_dtype(dtype: np.dtype, display: str) -> None:
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype not in _KEPT_DTYPES and dtype not in _CONVERTED_DTYPES:
        raise ImageReadError(display, f"its pixel type {dtype} is not supported",
                             "Save it as 8/16-bit unsigned integer or 32-bit float.")


def _supported_pixels(image: np.ndarray, display: str) -> np.ndarray:
    _supported_dtype(image.dtype, display)
    if image.dtype.byteorder not in ("=", "|"):
        image = image.astype(image.dtype.newbyteorder("="))
    dtype = np.dtype(image.dtype)
    if dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    if dtype in _CONVERTED_DTYPES:
        return image.astype(_CONVERTED_DTYPES[dtype])
    if not (image.flags.writeable and image.flags.c_contiguous):
        image = image.copy()  # Pillow's arrays are read-only views of its buffer
    return image


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Return the BT.601 luminance of an (..., 3) array, in the input's pixel type."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    gray = LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b
    if rgb.dtype.kind == "u":
        return np.clip(np.rint(gray), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
    return gray


def _decode_error(display: str, fmt: str, error: Exception) -> ImageReadError:
    detail = str(error) or type(error).__name__
    if "imagecodecs" in detail:
        return ImageReadError(display, f"its TIFF compression needs a codec that is missing ({detail})",
                              "Install it: pip install imagecodecs.")
    return ImageReadError(display, f"the {fmt} data is truncated or corrupt ({detail})",
                          "Copy or export the file again; the original may be damaged.")


def read_labels_tiff(source: str | os.PathLike) -> np.ndarray:
    """Return the 2-D integer label image stored by :func:`write_labels_tiff`."""
    labels = tifffile.imread(source)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"{source}: expected a 2-D integer label image, got {labels.dtype} {labels.shape}")
    return labels


def write_labels_tiff(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write ``labels`` as a zlib-compressed uint32 TIFF, atomically; return the path.

    Parameters
    ----------
    path : str or Path
        Destination; its folder is created when missing. The file appears complete or
        not at all (written next to it under a temporary name, then renamed).
    labels : ndarray of integers, shape (H, W)
        0 for background or walls, 1..N for cells; values must fit in uint32.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint32).max):
        raise ValueError("labels must lie in 0 .. 2**32 - 1")
    data = labels.astype(np.uint32)
    return _write_atomically(path, lambda tmp: tifffile.imwrite(tmp, data, compression="zlib",
                                                                  photometric="minisblack"))


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``image`` as a PNG, atomically; return the path.

    Parameters
    ----------
    path : str or Path
        Destination; its folder is created when missing.
    image : ndarray
        2-D bool, uint8 or uint16 gray, or (H, W, 3) / (H, W, 4) uint8 RGB(A).
    """
    image = np.asarray(image)
    gray = image.ndim == 2 and image.dtype in (np.bool_, np.uint8, np.uint16)
    colour = image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8
    if not (gray or colour):
        raise ValueError("image must be 2-D bool/uint8/uint16 or (H, W, 3|4) uint8, "
                         f"got {image.dtype} of shape {image.shape}")
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * np.uint8(255)
    picture = Image.fromarray(np.ascontiguousarray(image))
    return _write_atomically(path, lambda tmp: picture.save(tmp, format="PNG"))


def _write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
