"""Per-cell statistics of a label image, with scikit-image's property names.

:func:`regionprops_table` returns the same numbers as
``skimage.measure.regionprops_table(labels, intensity_image, properties=...)`` for the
columns in :data:`CELL_COLUMNS`, from one pass over the label image in the Cython kernel
``cellpipe._measure`` followed by O(number of cells) arithmetic in numpy.
"""

from __future__ import annotations

import numpy as np

from cellpipe._ext import load_extension

_measure = load_extension("_measure")

#: Columns computed from the labels alone, in output order, with their dtypes.
GEOMETRY_COLUMNS: dict[str, np.dtype] = {
    "label": np.dtype(np.int64),
    "area": np.dtype(np.int64),
    "centroid-0": np.dtype(np.float64),
    "centroid-1": np.dtype(np.float64),
    "bbox-0": np.dtype(np.int64),
    "bbox-1": np.dtype(np.int64),
    "bbox-2": np.dtype(np.int64),
    "bbox-3": np.dtype(np.int64),
    "axis_major_length": np.dtype(np.float64),
    "axis_minor_length": np.dtype(np.float64),
    "eccentricity": np.dtype(np.float64),
    "orientation": np.dtype(np.float64),
    "equivalent_diameter_area": np.dtype(np.float64),
    "perimeter": np.dtype(np.float64),
}

#: Columns present only when an intensity image is given; they follow the geometry.
INTENSITY_COLUMNS: dict[str, np.dtype] = {
    "intensity_mean": np.dtype(np.float64),
    "intensity_min": np.dtype(np.float64),
    "intensity_max": np.dtype(np.float64),
}

#: The last column, always present.
BORDER_COLUMNS: dict[str, np.dtype] = {"touches_border": np.dtype(np.bool_)}

#: Every column :func:`regionprops_table` can return, in output order, with its dtype.
CELL_COLUMNS: dict[str, np.dtype] = {**GEOMETRY_COLUMNS, **INTENSITY_COLUMNS, **BORDER_COLUMNS}

# Label dtypes the kernel reads as they are; any other integer dtype is converted.
_KERNEL_LABEL_DTYPES = frozenset(
    np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64, np.int32, np.int64)
)

# The kernel maps label values to cells with a dense table of this many entries at most
# (int32 each); images with larger label values are relabelled densely first (slower).
_MAX_TABLE_SIZE = 1 << 24


def cell_columns(with_intensity: bool) -> dict[str, np.dtype]:
    """Return the columns, in order, that :func:`regionprops_table` returns, with dtypes."""
    if with_intensity:
        return dict(CELL_COLUMNS)
    return {**GEOMETRY_COLUMNS, **BORDER_COLUMNS}


def regionprops_table(labels, intensity_image=None) -> dict[str, np.ndarray]:
    """Return one row of statistics per cell of a label image, as a dict of columns.

    The columns and their order are those of :data:`CELL_COLUMNS` (without the intensity
    columns when ``intensity_image`` is None). Values equal those of
    ``skimage.measure.regionprops_table(labels, intensity_image, properties=[...])``.

    Parameters
    ----------
    labels : (M, N) array of int
        Label image of any integer dtype; 0 is background, every other value is one cell.
        Labels need not be contiguous.
    intensity_image : (M, N) array, optional
        Image of the same shape whose values are summarised per cell (integer, float or
        bool dtype).

    Returns
    -------
    dict of str to ndarray
        One array per column, one entry per label present, sorted by label:

        - ``label``; ``area``: number of pixels (int64; skimage gives float64);
        - ``centroid-0``, ``centroid-1``: mean row and column;
        - ``bbox-0`` .. ``bbox-3``: min row, min column, max row + 1, max column + 1;
        - ``axis_major_length``, ``axis_minor_length``: ``4 * sqrt(l)`` of the eigenvalues
          ``l1 >= l2`` of the inertia tensor ``[[mu_cc, -mu_rc], [-mu_rc, mu_rr]] / area``
          built from the central moments ``mu`` (r = row, c = column);
        - ``eccentricity``: ``sqrt(1 - l2 / l1)``, 0 for a single pixel;
        - ``orientation``: angle in (-pi/2, pi/2] between the row axis and the major axis,
          ``0.5 * atan2(2 mu_rc, mu_rr - mu_cc)``; when ``mu_rr == mu_cc`` it is ``pi/4``
          if ``mu_rc > 0`` else ``-pi/4`` (skimage's convention);
        - ``equivalent_diameter_area``: diameter of the disc of the same area;
        - ``perimeter``: see Notes;
        - ``intensity_mean``, ``intensity_min``, ``intensity_max`` (float64);
        - ``touches_border``: the cell has a pixel in the first or last row or column.

    Raises
    ------
    TypeError
        When ``labels`` is not of an integer dtype, or ``intensity_image`` is not numeric.
    ValueError
        When ``labels`` is not 2-D or too large, holds a negative value or a value above
        2**63 - 1, or ``intensity_image`` has another shape.

    Notes
    -----
    ``perimeter`` is skimage's ``perimeter(cell_mask, neighborhood=4)`` (Benkrid &
    Crookes). A *border pixel* of a cell is one of its pixels with a 4-neighbour of
    another label or outside the image. Each border pixel gets the code ``1 + 2 * (its
    4-neighbours that are border pixels of the same cell) + 10 * (its diagonal neighbours
    that are border pixels of the same cell)`` and weighs 1 for codes 5, 7, 15, 17, 25, 27;
    ``sqrt(2)`` for 21, 33; ``(1 + sqrt(2)) / 2`` for 13, 23; 0 otherwise. The perimeter
    is the sum of the weights (so a lone pixel has perimeter 0).

    Moments are exact int64 sums of pixel coordinates, turned into central moments
    without cancellation, so values keep their digits on large images (the image may
    have up to about 40000 x 40000 pixels). Ties in the tensor (``mu_rc == 0``,
    ``mu_rr == mu_cc``) are decided exactly here, whereas skimage decides them on rounded
    values: for such a cell an orientation of ``pi/2`` here may be ``-pi/2`` there (the
    same axis), and a cell with ``eccentricity`` 0 has no defined orientation.

    Intensity statistics are computed in float64 whatever the image dtype (skimage
    returns a float32 mean for float32 images); integer intensities are summed exactly.
    NaN intensities make the mean NaN, but their effect on min and max is unspecified.

    Label values up to 2**24 (or 8 times the number of pixels, if larger) are mapped to
    cells with a lookup table; images with larger values are first relabelled with
    ``np.unique``, which is several times slower.

    Examples
    --------
    >>> labels = np.zeros((4, 5), dtype=np.int32)
    >>> labels[0:3, 0:3] = 7
    >>> table = regionprops_table(labels)
    >>> table["label"], table["area"], table["centroid-0"], table["perimeter"]
    (array([7]), array([9]), array([1.]), array([8.]))
    >>> table["touches_border"]
    array([ True])
    """
    labels = _validated_labels(labels)
    intensity, intensity_kind = _validated_intensity(intensity_image, labels.shape)
    if labels.size == 0:
        columns = cell_columns(with_intensity=intensity is not None)
        return {name: np.empty(0, dtype) for name, dtype in columns.items()}
    table_limit = min(_MAX_TABLE_SIZE, max(1 << 16, 8 * labels.size))
    status, cells = _measure.accumulate_cells(labels, intensity, intensity_kind, table_limit)
    if status == _measure.NEGATIVE_LABEL:
        raise _negative_label_error(labels)
    if status == _measure.LABEL_ABOVE_TABLE_LIMIT:
        label_values, dense_labels = _relabel_densely(labels)
        status, cells = _measure.accumulate_cells(
            dense_labels, intensity, intensity_kind, table_limit
        )
        cells["label"] = label_values[cells["label"]]
    return _cell_table(cells, labels.shape, with_intensity=intensity is not None)


def _validated_labels(labels) -> np.ndarray:
    """Return ``labels`` as a C-contiguous array of a dtype the kernel reads."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(
            f"labels must be a 2-D label image; got an array of shape {labels.shape}"
        )
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"labels must have an integer dtype (0 = background, one value per cell); got "
            f"{labels.dtype}. Convert a mask with skimage.measure.label or labels.astype(int)."
        )
    if labels.size * max(labels.shape) ** 2 >= 2**62:
        raise ValueError(
            f"labels of shape {labels.shape} are too large for exact int64 moments (at most "
            "about 40000 x 40000 pixels); measure the image in tiles."
        )
    dtype = labels.dtype.newbyteorder("=")
    if dtype not in _KERNEL_LABEL_DTYPES:
        dtype = np.dtype(np.int64)
    return np.ascontiguousarray(labels, dtype=dtype)


def _validated_intensity(intensity_image, shape) -> tuple[np.ndarray | None, int]:
    """Return the intensity image in a dtype the kernel reads, and that dtype's kind code."""
    if intensity_image is None:
        return None, 0
    intensity = np.asarray(intensity_image)
    if intensity.shape != shape:
        raise ValueError(
            f"intensity_image must have the shape of labels {shape}; got {intensity.shape}"
        )
    if intensity.dtype.kind not in "biuf":
        raise TypeError(
            f"intensity_image must be numeric (bool, int or float); got {intensity.dtype}"
        )
    dtype = intensity.dtype.newbyteorder("=")
    if dtype not in _measure.INTENSITY_KINDS:
        dtype = np.dtype(np.float64)
    intensity = np.ascontiguousarray(intensity, dtype=dtype)
    return intensity, _measure.INTENSITY_KINDS[dtype]


def _negative_label_error(labels: np.ndarray) -> ValueError:
    return ValueError(
        f"labels must be non-negative (0 = background); found {labels.min()}. "
        "Relabel the image, for example with skimage.segmentation.relabel_sequential."
    )


def _relabel_densely(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(label_values, dense)``: ``dense`` numbers the labels 1, 2, ... in order
    (0 stays background) and ``label_values[dense] == labels``."""
    label_values, dense = np.unique(labels, return_inverse=True)
    if label_values[0] < 0:
        raise _negative_label_error(labels)
    if label_values[-1] > np.iinfo(np.int64).max:
        raise ValueError(
            f"label values must be at most 2**63 - 1; found {label_values[-1]}. "
            "Relabel the image, for example with skimage.segmentation.relabel_sequential."
        )
    if label_values[0] != 0:
        dense += 1
        label_values = np.concatenate([[0], label_values])
    dense_dtype = np.int32 if len(label_values) <= np.iinfo(np.int32).max else np.int64
    return label_values.astype(np.int64), dense.reshape(labels.shape).astype(dense_dtype)


def _cell_table(
    cells: np.ndarray, shape: tuple[int, int], with_intensity: bool
) -> dict[str, np.ndarray]:
    """Turn the kernel's per-cell sums into the columns of :func:`regionprops_table`."""
    if np.any(cells["label"][1:] < cells["label"][:-1]):
        cells = np.take(cells, np.argsort(cells["label"]))
    area = cells["area"]
    sum_r, sum_c = cells["sum_r"], cells["sum_c"]

    # Central moments from exact int64 sums, without cancellation: about the integer part
    # q of the mean the sums stay exact, and what is left (rem / area, below one pixel)
    # cannot cancel digits, so the moments keep full precision and exact ties stay ties.
    q_r, rem_r = np.divmod(sum_r, area)
    q_c, rem_c = np.divmod(sum_c, area)
    ss_r = cells["sum_rr"] - 2 * q_r * sum_r + q_r * q_r * area
    ss_c = cells["sum_cc"] - 2 * q_c * sum_c + q_c * q_c * area
    ss_rc = cells["sum_rc"] - q_c * sum_r - q_r * sum_c + q_r * q_c * area
    mu_rr = ss_r - rem_r * rem_r / area
    mu_cc = ss_c - rem_c * rem_c / area
    mu_rc = ss_rc - rem_r * rem_c / area + 0.0  # + 0.0 turns -0.0 into 0.0, as skimage gets
    mu_rr_minus_cc = (ss_r - ss_c) - (rem_r * rem_r - rem_c * rem_c) / area  # exactly 0 on ties

    # Eigenvalues of the inertia tensor [[mu_cc, -mu_rc], [-mu_rc, mu_rr]] / area.
    half_trace = (mu_rr + mu_cc) / (2 * area)
    half_gap = np.hypot(mu_rr_minus_cc / 2, mu_rc) / area
    major = half_trace + half_gap
    minor = np.maximum(half_trace - half_gap, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        eccentricity = np.where(major > 0, np.sqrt(np.minimum(2 * half_gap / major, 1.0)), 0.0)
    orientation = np.where(
        mu_rr_minus_cc == 0,
        np.where(mu_rc > 0, np.pi / 4, -np.pi / 4),
        0.5 * np.arctan2(2 * mu_rc, mu_rr_minus_cc),
    )

    n_rows, n_cols = shape
    columns = {
        "label": cells["label"],
        "area": area,
        # The sums are exact integers, so this rounds once, like numpy's mean.
        "centroid-0": sum_r / area,
        "centroid-1": sum_c / area,
        "bbox-0": cells["row_min"],
        "bbox-1": cells["col_min"],
        "bbox-2": cells["row_stop"],
        "bbox-3": cells["col_stop"],
        "axis_major_length": 4 * np.sqrt(major),
        "axis_minor_length": 4 * np.sqrt(minor),
        "eccentricity": eccentricity,
        "orientation": orientation,
        "equivalent_diameter_area": np.sqrt(4 * area / np.pi),
        "perimeter": 0.5 * cells["perimeter_halves"]
        + (np.sqrt(2) / 2) * cells["perimeter_diagonal_halves"],
    }
    if with_intensity:
        columns["intensity_mean"] = cells["intensity_sum"] / area
        columns["intensity_min"] = cells["intensity_min"]
        columns["intensity_max"] = cells["intensity_max"]
    columns["touches_border"] = (
        (cells["row_min"] == 0) | (cells["col_min"] == 0)
        | (cells["row_stop"] == n_rows) | (cells["col_stop"] == n_cols)
    )
    return {name: np.ascontiguousarray(columns[name], dtype=dtype)
            for name, dtype in cell_columns(with_intensity).items()}
