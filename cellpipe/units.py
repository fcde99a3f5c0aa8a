"""Pixel size of an image, from its TIFF metadata or a setting, and figures in micrometres.

:func:`read_pixel_size` reads the calibration a TIFF carries, with tifffile, in this
order (the first convention present decides):

==========  =================================================================
source      where the size is
==========  =================================================================
``ome``     OME-XML ``Pixels`` ``PhysicalSizeX`` / ``PhysicalSizeY`` (+ ``...Unit``,
            µm when absent, as the OME schema says)
``imagej``  ImageJ's description ``unit=`` with the XResolution / YResolution tags
            (pixels per unit)
``sem``     FEI / Thermo Fisher ``[Scan] PixelWidth / PixelHeight`` (metres), or Zeiss
            ``AP_PIXEL_SIZE`` / ``AP_IMAGE_PIXEL_SIZE`` (value and unit), as tifffile
            parses the ``FEI_HELIOS`` / ``FEI_SFEG`` and ``CZ_SEM`` tags
``tiff``    baseline XResolution / YResolution with ResolutionUnit inch or
            centimetre (pixels per unit); ResolutionUnit "none" says nothing
==========  =================================================================

Resolutions of exactly 72 or 96 pixels per inch are the defaults that image editors
and screen-capture tools write, not a calibration: they count as no size.
:func:`resolve_pixel_size` puts an explicit setting (``--pixel-size``,
``CELLPIPE_PIXEL_SIZE``, luigi.cfg ``pixel_size``) over the file's metadata. Pixels
whose x and y sizes differ are never averaged: the size is then unknown and the reason
says why. An unknown size is ``None`` everywhere, never a guess.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import tifffile

from cellpipe.io import ImageSource

#: Where a pixel size came from, as stored in ``images.pixel_size_source``.
PIXEL_SIZE_SOURCES = ("ome", "imagej", "sem", "tiff", "setting")

#: Relative difference between the x and y sizes above which pixels are not square.
SQUARE_TOLERANCE = 1e-4

#: Baseline-TIFF resolutions (pixels per inch) that are software defaults, not calibrations.
DEFAULT_DPI = (72.0, 96.0)

# Micrometres per unit, by every spelling of a length unit that OME, ImageJ and the SEM
# vendors write.
_MICROMETRES_PER_UNIT = {
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "pm": 1e-6, "picometer": 1e-6, "picometre": 1e-6,
    "å": 1e-4, "angstrom": 1e-4, "ångström": 1e-4,
    "in": 25400.0, "inch": 25400.0,
}
_RESOLUTION_UNIT_MICROMETRES = {tifffile.RESUNIT.INCH: 25400.0, tifffile.RESUNIT.CENTIMETER: 1e4,
                                tifffile.RESUNIT.MILLIMETER: 1e3, tifffile.RESUNIT.MICROMETER: 1.0}


@dataclass(frozen=True)
class PixelSize:
    """The size of a pixel in micrometres, and where it was read.

    Attributes
    ----------
    x_um, y_um : float
        Width and height of a pixel, µm.
    source : str
        One of :data:`PIXEL_SIZE_SOURCES`.
    """

    x_um: float
    y_um: float
    source: str

    @property
    def is_square(self) -> bool:
        """Return whether x and y agree within :data:`SQUARE_TOLERANCE`."""
        return abs(self.x_um - self.y_um) <= SQUARE_TOLERANCE * max(self.x_um, self.y_um)

    @property
    def um(self) -> float:
        """Return the side of a square pixel, µm (ValueError for non-square pixels)."""
        if not self.is_square:
            raise ValueError(f"pixels are not square ({self.describe()})")
        return self.x_um

    def describe(self) -> str:
        """Return the size for people, e.g. ``"0.5 µm (ome)"``."""
        if self.is_square:
            return f"{self.x_um:.6g} µm ({self.source})"
        return f"x {self.x_um:.6g} µm, y {self.y_um:.6g} µm ({self.source})"


@dataclass(frozen=True)
class ResolvedPixelSize:
    """The pixel size an image is measured with, or why there is none.

    Attributes
    ----------
    um : float or None
        Side of a (square) pixel, µm; None when unknown.
    source : str or None
        One of :data:`PIXEL_SIZE_SOURCES`; None when unknown.
    problem : str
        Why the size is unknown: empty when there is simply no calibration; the reason
        when there is one that cannot be used (non-square pixels).
    """

    um: float | None
    source: str | None
    problem: str = ""

    @property
    def known(self) -> bool:
        """Return whether the size is known."""
        return self.um is not None

    def as_dict(self) -> dict[str, object]:
        """Return the fields as a plain dict (what the segmentation record holds)."""
        return {"um": self.um, "source": self.source, "problem": self.problem}


def read_pixel_size(source: ImageSource, *, page: int | None = None) -> PixelSize | None:
    """Return the pixel size a TIFF's metadata gives, or None (no calibration, not a TIFF).

    Parameters
    ----------
    source : path or bytes
        The image file, as :func:`cellpipe.io.read_image` accepts it.
    page : int, optional
        Page of a multi-page TIFF whose resolution tags are read (default the first).

    Returns
    -------
    PixelSize or None
        The first convention found of OME, ImageJ, SEM vendor tags and baseline TIFF
        (see the module docstring), with both sizes as the file gives them (they may
        differ). None for other formats, unreadable files and TIFFs without a size.

    Examples
    --------
    >>> import io, numpy as np, tifffile
    >>> buffer = io.BytesIO()
    >>> tifffile.imwrite(buffer, np.zeros((4, 4), np.uint8), resolution=(20000, 20000),
    ...                  resolutionunit="CENTIMETER")
    >>> read_pixel_size(buffer.getvalue())
    PixelSize(x_um=0.5, y_um=0.5, source='tiff')
    """
    handle = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    try:
        with tifffile.TiffFile(handle) as tif:
            tiff_page = tif.pages[page or 0]
            return (_ome_size(tif) or _imagej_size(tif, tiff_page) or _fei_size(tif) or _zeiss_size(tif)
                    or _baseline_size(tiff_page))
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError, TypeError):
        return None


def resolve_pixel_size(metadata: PixelSize | None, setting: float | None) -> ResolvedPixelSize:
    """Return the pixel size to use: the setting when given, else the file's square pixels.

    Parameters
    ----------
    metadata : PixelSize or None
        What :func:`read_pixel_size` found.
    setting : float or None
        The ``pixel_size`` setting, µm per pixel (overrides the metadata).

    Examples
    --------
    >>> resolve_pixel_size(PixelSize(0.5, 0.5, "ome"), 2.0)
    ResolvedPixelSize(um=2.0, source='setting', problem='')
    >>> resolve_pixel_size(PixelSize(0.5, 0.75, "ome"), None).um is None
    True
    """
    if setting is not None:
        if not setting > 0:
            raise ValueError(f"the pixel size setting must be > 0 µm, got {setting}")
        return ResolvedPixelSize(float(setting), "setting")
    if metadata is None:
        return ResolvedPixelSize(None, None)
    if not metadata.is_square:
        return ResolvedPixelSize(None, None, f"its pixels are not square ({metadata.describe()}); cellpipe does not "
                                             "average them, so its µm figures are unknown: resample the image to "
                                             "square pixels")
    return ResolvedPixelSize(metadata.x_um, metadata.source)


#: Per-cell columns in pixels, and the power of the pixel size that makes them µm.
MICROMETRE_COLUMNS: dict[str, tuple[str, int]] = {
    "area_um2": ("area", 2),
    "perimeter_um": ("perimeter", 1),
    "equivalent_diameter_um": ("equivalent_diameter_area", 1),
    "axis_major_length_um": ("axis_major_length", 1),
    "axis_minor_length_um": ("axis_minor_length", 1),
    "x_um": ("centroid-1", 1),
    "y_um": ("centroid-0", 1),
    "feret_diameter_max_um": ("feret_diameter_max", 1),
    "feret_diameter_min_um": ("feret_diameter_min", 1),
}


def micrometre_columns(cells: Mapping[str, np.ndarray], pixel_size_um: float) -> dict[str, np.ndarray]:
    """Return the µm columns of :data:`MICROMETRE_COLUMNS` for the pixel columns ``cells`` has.

    Examples
    --------
    >>> micrometre_columns({"area": np.array([4]), "perimeter": np.array([8.0])}, 0.5)
    {'area_um2': array([1.]), 'perimeter_um': array([4.])}
    """
    return {name: np.asarray(cells[pixels], dtype=np.float64) * pixel_size_um ** power
            for name, (pixels, power) in MICROMETRE_COLUMNS.items() if pixels in cells}


def _micrometres(value, unit) -> float | None:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return None
    factor = _MICROMETRES_PER_UNIT.get(str(unit).strip().lower())
    if factor is None or not np.isfinite(size) or size <= 0:
        return None
    return size * factor


def _pair(x_um: float | None, y_um: float | None, source: str) -> PixelSize | None:
    if x_um is None:
        return None
    return PixelSize(x_um, x_um if y_um is None else y_um, source)


def _ome_size(tif: tifffile.TiffFile) -> PixelSize | None:
    if not tif.is_ome or not tif.ome_metadata:
        return None
    image = tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image")
    image = image[0] if isinstance(image, list) else image
    pixels = (image or {}).get("Pixels") or {}
    sizes = [_micrometres(pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm"))
             for axis in "XY"]
    return _pair(sizes[0], sizes[1], "ome")


def _imagej_size(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> PixelSize | None:
    metadata = tif.imagej_metadata
    if not metadata or "unit" not in metadata:
        return None
    per_unit = _MICROMETRES_PER_UNIT.get(str(metadata["unit"]).strip().lower())
    x_per_unit, y_per_unit = page.get_resolution()
    if per_unit is None or not x_per_unit > 0 or not y_per_unit > 0:
        return None  # "pixel" or "inch"-less: no calibration
    return PixelSize(per_unit / x_per_unit, per_unit / y_per_unit, "imagej")


def _fei_size(tif: tifffile.TiffFile) -> PixelSize | None:
    metadata = tif.fei_metadata
    if not metadata:
        return None
    for section in ("Scan", "EScan", "IScan"):
        values = metadata.get(section) or {}
        x_um = _micrometres(values.get("PixelWidth"), "m")
        if x_um is not None:
            return _pair(x_um, _micrometres(values.get("PixelHeight"), "m"), "sem")
    return None


def _zeiss_size(tif: tifffile.TiffFile) -> PixelSize | None:
    metadata = tif.sem_metadata
    if not metadata:
        return None
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = metadata.get(key)
        if isinstance(entry, tuple) and len(entry) == 3:
            size = _micrometres(entry[1], entry[2])
            if size is not None:
                return PixelSize(size, size, "sem")
    return None


def _baseline_size(page: tifffile.TiffPage) -> PixelSize | None:
    if 282 not in page.tags or 283 not in page.tags:  # XResolution, YResolution
        return None
    per_unit = _RESOLUTION_UNIT_MICROMETRES.get(page.resolutionunit)
    x_per_unit, y_per_unit = page.get_resolution()
    if per_unit is None or not x_per_unit > 0 or not y_per_unit > 0:
        return None
    if page.resolutionunit == tifffile.RESUNIT.INCH and x_per_unit in DEFAULT_DPI and y_per_unit in DEFAULT_DPI:
        return None
    return PixelSize(per_unit / x_per_unit, per_unit / y_per_unit, "tiff")


class PixelSizeNotices:
    """What a batch tells people about pixel sizes: an unknown size once, an unusable one per image.

    Feed :meth:`notice` the name and the ``ResolvedPixelSize.as_dict()`` of every image
    segmented; it returns the line to show, or None.

    Examples
    --------
    >>> notices = PixelSizeNotices()
    >>> notices.notice("a.png", {"um": None, "source": None, "problem": ""})[:30]
    'pixel size unknown for a.png ('
    >>> notices.notice("b.png", {"um": None, "source": None, "problem": ""}) is None
    True
    """

    def __init__(self) -> None:
        self.unknown = 0

    def notice(self, name: str, pixel_size: Mapping[str, object]) -> str | None:
        """Return the line to show for image ``name`` measured with ``pixel_size``, or None."""
        if pixel_size.get("um") is not None:
            return None
        if pixel_size.get("problem"):
            return f"pixel size unusable for {name}: {pixel_size['problem']}"
        self.unknown += 1
        if self.unknown > 1:
            return None
        return (f"pixel size unknown for {name} (no OME, ImageJ, SEM or TIFF resolution metadata, no --pixel-size): "
                "its µm figures are NULL, as are those of every other such image in this batch (said once); "
                "give --pixel-size UM or [cellpipe] pixel_size")
