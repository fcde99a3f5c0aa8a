"""The contrast gray image the U-Net sees: percentile-normalised, dark walls, optional CLAHE.

The edge model is trained on images whose cell walls are darker than the cells, as in
electron microscopy (ISBI 2012) and stained tissue in bright field. Foam SEM images have
bright walls (struts) on dark cells and must be inverted first: set
``ContrastParams(invert=True)``, or let :func:`guess_invert` decide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ContrastParams:
    """How :func:`contrast_gray` maps an image to [0, 1]; recorded with every result.

    Attributes
    ----------
    low_percentile, high_percentile : float
        Intensities at these percentiles map to 0 and 1; values outside are clipped.
        ``0 <= low_percentile < high_percentile <= 100``.
    invert : bool
        Map bright to dark after normalising. Needed when walls are bright (foam SEM)
        because the model expects dark walls.
    clahe : bool
        Apply contrast-limited adaptive histogram equalisation
        (:func:`skimage.exposure.equalize_adapthist`), for uneven illumination.
    clahe_clip_limit : float
        CLAHE clip limit in (0, 1]; higher gives more contrast.
    clahe_kernel_size : int, optional
        CLAHE tile size in pixels; default 1/8 of each image side.
    """

    low_percentile: float = 1.0
    high_percentile: float = 99.0
    invert: bool = False
    clahe: bool = False
    clahe_clip_limit: float = 0.01
    clahe_kernel_size: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.low_percentile < self.high_percentile <= 100:
            raise ValueError(
                "percentiles must satisfy 0 <= low < high <= 100, "
                f"got low={self.low_percentile}, high={self.high_percentile}"
            )
        if not 0 < self.clahe_clip_limit <= 1:
            raise ValueError(f"clahe_clip_limit must be in (0, 1], got {self.clahe_clip_limit}")
        if self.clahe_kernel_size is not None and not (
            isinstance(self.clahe_kernel_size, (int, np.integer)) and self.clahe_kernel_size >= 2
        ):
            raise ValueError(f"clahe_kernel_size must be None or an integer >= 2, got {self.clahe_kernel_size}")

    def as_dict(self) -> dict[str, object]:
        """Return the parameters as a plain dict (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> "ContrastParams":
        """Return the parameters recorded by :meth:`as_dict`."""
        return cls(**values)


def contrast_gray(image: np.ndarray, params: ContrastParams | None = None) -> np.ndarray:
    """Return ``image`` as float32 in [0, 1]: percentile-normalised, optionally equalised and inverted.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Gray image of any real pixel type, as returned by :func:`cellpipe.io.read_image`.
    params : ContrastParams, optional
        Default ``ContrastParams()``: 1st and 99th percentiles, no inversion, no CLAHE.

    Returns
    -------
    ndarray of float32, shape (H, W)
        0 at or below the low percentile, 1 at or above the high one (before inversion).
        A constant image gives all zeros. When the two percentiles coincide but the
        image is not constant (mostly one value), the minimum and maximum are used.

    Raises
    ------
    ValueError
        When ``image`` is not 2-D, not real-valued, or contains NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> contrast_gray(np.array([[0, 50], [100, 200]], np.uint8), ContrastParams(0, 100))
    array([[0.  , 0.25],
           [0.5 , 1.  ]], dtype=float32)
    """
    params = ContrastParams() if params is None else params
    image = _validated(image)
    low, high = _percentiles(image, (params.low_percentile, params.high_percentile))
    if high <= low:
        low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.float32)

    if image.dtype in (np.uint8, np.uint16):
        # A lookup table is exact and several times faster than arithmetic per pixel.
        levels = np.arange(np.iinfo(image.dtype).max + 1, dtype=np.float64)
        table = np.clip((levels - low) / (high - low), 0.0, 1.0).astype(np.float32)
        gray = table[image]
    else:
        gray = image.astype(np.float32)
        gray -= np.float32(low)
        gray *= np.float32(1.0 / (high - low))
        np.clip(gray, 0.0, 1.0, out=gray)

    if params.clahe:
        from skimage.exposure import equalize_adapthist

        gray = equalize_adapthist(gray, kernel_size=params.clahe_kernel_size,
                                  clip_limit=params.clahe_clip_limit).astype(np.float32)
    if params.invert:
        np.subtract(np.float32(1.0), gray, out=gray)
    return gray


def guess_invert(
    image: np.ndarray,
    *,
    sizes: tuple[int, ...] = (3, 5, 9, 17, 33),
    min_ratio: float = 1.5,
    max_side: int = 1024,
) -> bool:
    """Return True when the cell walls in ``image`` look brighter than the cells.

    Walls are thin, cells are wide. A white top-hat (image minus its grey opening) keeps
    thin bright structures, a black top-hat thin dark ones. Going from small to large
    footprints, the first size at which one polarity outweighs the other by
    ``min_ratio`` reveals the walls; larger footprints would start to see whole cells as
    thin structures of the opposite polarity. When no size is decisive, the most
    polarised one decides.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Gray image of any real pixel type.
    sizes : tuple of int
        Square footprint sides to try, increasing.
    min_ratio : float
        Ratio of mean bright to mean dark top-hat (or its inverse) that decides (> 1).
    max_side : int
        Only the central ``max_side`` x ``max_side`` crop is analysed, to bound the cost.

    Returns
    -------
    bool
        True for bright walls (foam SEM: invert before prediction), False for dark
        walls (EM, stained tissue). A constant image gives False.
    """
    image = _validated(image)
    if min_ratio <= 1:
        raise ValueError(f"min_ratio must be > 1, got {min_ratio}")
    top = max(0, (image.shape[0] - max_side) // 2)
    left = max(0, (image.shape[1] - max_side) // 2)
    crop = image[top:top + max_side, left:left + max_side]
    gray = ndimage.gaussian_filter(contrast_gray(crop), 1.0)  # pixel noise is not structure

    most_polarised = 0.0
    threshold = np.log(min_ratio)
    for size in sizes:
        bright = float(np.mean(gray - ndimage.grey_opening(gray, size=size)))
        dark = float(np.mean(ndimage.grey_closing(gray, size=size) - gray))
        if bright + dark <= 0:
            continue
        log_ratio = np.log((bright + 1e-12) / (dark + 1e-12))
        if abs(log_ratio) >= threshold:
            return bool(log_ratio > 0)
        if abs(log_ratio) > abs(most_polarised):
            most_polarised = log_ratio
    return bool(most_polarised > 0)


def _validated(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got an array of shape {image.shape}")
    if image.dtype == np.bool_:
        return image.astype(np.uint8)
    if image.dtype.kind not in "uif":
        raise ValueError(f"expected real-valued pixels, got pixel type {image.dtype}")
    if image.size == 0:
        raise ValueError("the image is empty (0 pixels)")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        n_nan = int(np.isnan(image).sum())
        n_inf = int(np.isinf(image).sum())
        raise ValueError(
            f"the image contains {n_nan} NaN and {n_inf} infinite pixels; replace them "
            "(for example with numpy.nan_to_num) or fix the acquisition before contrast"
        )
    return image


def _percentiles(image: np.ndarray, percents: tuple[float, float]) -> tuple[float, float]:
    """Return the percentiles with numpy's default (linear) method; exact and fast for uint8/16."""
    if image.dtype not in (np.uint8, np.uint16):
        low, high = np.percentile(image, percents)
        return float(low), float(high)
    counts = np.cumsum(np.bincount(image.ravel(), minlength=np.iinfo(image.dtype).max + 1))
    values = []
    for percent in percents:
        position = (image.size - 1) * percent / 100.0
        below = int(np.floor(position))
        # Value of the k-th smallest pixel (0-based) = first level whose count exceeds k.
        low_value = np.searchsorted(counts, below, side="right")
        high_value = np.searchsorted(counts, min(below + 1, image.size - 1), side="right")
        values.append(low_value + (position - below) * (high_value - low_value))
    return float(values[0]), float(values[1])
