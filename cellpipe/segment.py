"""Turn an edge-probability map into one label per cell: markers, then a watershed.

:func:`segment_edges` is the pipeline stage; :func:`cell_markers` and
:func:`watershed` are its two steps, usable on their own. The flood of
:func:`watershed` runs in the Cython kernel ``cellpipe._watershed`` and returns
exactly the labels of :func:`skimage.segmentation.watershed`, only faster.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import skimage.segmentation

from cellpipe._ext import load_extension
from cellpipe.agglomerate import merge_weak_boundaries

__all__ = ["SegmentParams", "cell_markers", "quantise_edges", "segment_edges", "watershed"]

# Elevation dtypes flooded by the bucket queue, mapped to an order-preserving
# unsigned view: how to get there, and the number of grey levels.
_LEVEL_DTYPES = {
    np.dtype(np.uint8): (None, 256),
    np.dtype(np.uint16): (None, 65536),
    np.dtype(np.bool_): (np.uint8, 256),  # a view, no copy
    np.dtype(np.int8): (np.uint8, 256),
    np.dtype(np.int16): (np.uint16, 65536),
}
# Raveled pixel indices are int32 in the kernel.
_MAX_PIXELS = 2**31 - 1


def _neighbour_offsets(padded_width: int, connectivity: int) -> np.ndarray:
    # scikit-image's order (_offsets_to_raveled_neighbors): by distance, then raster.
    w = padded_width
    offsets = [-w, -1, 1, w]
    if connectivity == 2:
        offsets += [-w - 1, -w + 1, w - 1, w + 1]
    return np.array(offsets, dtype=np.intp)


def _check_connectivity(connectivity: Any) -> int:
    if isinstance(connectivity, (bool, np.bool_)) or not isinstance(
        connectivity, (int, np.integer)
    ) or connectivity not in (1, 2):
        raise ValueError(
            f"connectivity must be 1 (4 neighbours) or 2 (8 neighbours), got {connectivity!r}"
        )
    return int(connectivity)


def _check_same_shape(name: str, array: np.ndarray, reference_name: str, reference: np.ndarray) -> None:
    if array.shape != reference.shape:
        raise ValueError(
            f"{name} (shape {array.shape}) must have the shape of {reference_name} (shape {reference.shape})"
        )


def _as_levels(elevation: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Return ``elevation`` as uint8/uint16 grey levels with the same order, or None."""
    if elevation.dtype not in _LEVEL_DTYPES:
        return None
    target, n_levels = _LEVEL_DTYPES[elevation.dtype]
    if elevation.dtype == np.int8:
        return elevation.view(np.uint8) ^ np.uint8(0x80), n_levels
    if elevation.dtype == np.int16:
        return elevation.view(np.uint16) ^ np.uint16(0x8000), n_levels
    return (elevation if target is None else elevation.view(target)), n_levels


def watershed(
    elevation: np.ndarray,
    markers: np.ndarray,
    mask: np.ndarray | None = None,
    connectivity: int = 1,
) -> np.ndarray:
    """Return the watershed labels of a 2-D ``elevation`` flooded from ``markers``.

    The labels equal ``skimage.segmentation.watershed(elevation, markers, mask=mask,
    connectivity=connectivity)`` pixel for pixel. Integer elevations (uint8, uint16,
    and bool, int8, int16 through an order-preserving conversion) are flooded by a
    Cython bucket queue, several times faster than scikit-image's heap; any other
    dtype (floats, wider integers) is passed on to scikit-image.

    Parameters
    ----------
    elevation : (M, N) ndarray
        Flooded from low to high; ties are settled by distance to the marker.
    markers : (M, N) ndarray of int
        Seeds: each nonzero value is a label. Markers outside ``mask`` are ignored.
    mask : (M, N) ndarray of bool, optional
        Only pixels where ``mask`` is true are labelled. Default: the whole image.
    connectivity : {1, 2}, optional
        1: 4-neighbourhood (default); 2: 8-neighbourhood.

    Returns
    -------
    labels : (M, N) ndarray, dtype of ``markers``
        Every pixel reachable from a marker inside ``mask`` carries that marker's
        label; the rest is 0.

    Raises
    ------
    ValueError
        If an array is not 2-D, the shapes differ, or ``connectivity`` is not 1 or 2.
    TypeError
        If ``markers`` is not an integer array.

    Examples
    --------
    >>> elevation = np.array([[0, 1, 9, 1, 0]], dtype=np.uint8)
    >>> watershed(elevation, np.array([[1, 0, 0, 0, 2]]))
    array([[1, 1, 1, 2, 2]])
    """
    elevation = np.asarray(elevation)
    markers = np.asarray(markers)
    connectivity = _check_connectivity(connectivity)
    if elevation.ndim != 2:
        raise ValueError(f"elevation must be a 2-D image, got {elevation.ndim} dimensions")
    _check_same_shape("markers", markers, "elevation", elevation)
    if markers.dtype == np.bool_ or not np.issubdtype(markers.dtype, np.integer):
        raise TypeError(f"markers must be an integer label image, got dtype {markers.dtype}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        _check_same_shape("mask", mask, "elevation", elevation)

    as_levels = _as_levels(elevation)
    height, width = elevation.shape
    if as_levels is None or (height + 2) * (width + 2) > _MAX_PIXELS:
        return skimage.segmentation.watershed(
            elevation, markers, mask=mask, connectivity=connectivity
        )
    levels, n_levels = as_levels

    # A one-pixel border outside the mask spares the kernel all bounds checks.
    # free_level: the level of each pixel that may be labelled, a sentinel elsewhere.
    free_dtype = np.uint16 if n_levels == 256 else np.uint32
    free_level = np.full((height + 2, width + 2), np.iinfo(free_dtype).max, dtype=free_dtype)
    labels = np.zeros((height + 2, width + 2), dtype=markers.dtype)
    if mask is None:
        free_level[1:-1, 1:-1] = levels
        labels[1:-1, 1:-1] = markers
    else:
        np.copyto(free_level[1:-1, 1:-1], levels, where=mask)
        np.multiply(markers, mask, out=labels[1:-1, 1:-1], casting="unsafe")
    if labels.size:
        load_extension("_watershed").flood(
            free_level.ravel(),
            labels.ravel(),
            _neighbour_offsets(width + 2, connectivity),
            width + 2,
            n_levels,
        )
    return labels[1:-1, 1:-1].copy()


def _check_edge_probability(edge_probability: Any) -> np.ndarray:
    edge_probability = np.asarray(edge_probability)
    if edge_probability.ndim != 2:
        raise ValueError(
            f"edge_probability must be a 2-D image, got {edge_probability.ndim} dimensions "
            f"(shape {edge_probability.shape})"
        )
    if edge_probability.dtype.kind not in "biuf":
        raise TypeError(
            f"edge_probability must be a real-valued array, got dtype {edge_probability.dtype}"
        )
    edge_probability = edge_probability.astype(np.float32, copy=False)
    if edge_probability.size:
        if np.isnan(edge_probability).any():
            raise ValueError("edge_probability contains NaN; mask or fill the missing pixels")
        low, high = edge_probability.min(), edge_probability.max()
        if low < 0 or high > 1:
            raise ValueError(
                f"edge_probability must lie in [0, 1], got values in [{low:g}, {high:g}]; "
                "rescale it (a uint8 map: divide by 255)"
            )
    return edge_probability


def cell_markers(
    edge_probability: np.ndarray,
    threshold: float = 0.5,
    h: float = 2.0,
    connectivity: int = 1,
) -> np.ndarray:
    """Return one marker label per cell interior of an edge-probability map.

    Algorithm:

    1. interior = ``edge_probability < threshold`` (walls are the rest);
    2. distance = exact Euclidean distance of each interior pixel to the nearest wall
       pixel (the image border is not a wall; without any wall, the whole image is one
       cell and its marker);
    3. persistent maxima: interior pixels are joined into components by union-find
       from the largest distance down (Cython kernel ``cellpipe._markers``). Where two
       components meet, the one whose peak rises less than ``h`` above the meeting
       point (the saddle) merges into the other: a bump, not another cell. Touching
       cells whose wall is missing stay apart as long as the gap is narrower than
       their interiors (their peaks stand higher than ``h`` above the gap's saddle);
    4. each surviving component is a cell; its marker is its core, the pixels whose
       distance is within ``h`` of the component's peak. Labels run 1..N in raster
       order of each core's first pixel.

    Parameters
    ----------
    edge_probability : (M, N) ndarray of float
        Probability of a cell wall at each pixel, in [0, 1].
    threshold : float, optional
        Pixels at or above this probability are walls. Default 0.5.
    h : float, optional
        Minimum height, in pixels of distance, of a distance peak above its saddle for
        it to seed a cell of its own; must be > 0. Default 2.0. Larger values merge
        more, smaller values split elongated or irregular cells more.
    connectivity : {1, 2}, optional
        Neighbourhood of the interior components: 1 (4 neighbours, default; a one-pixel
        diagonal wall separates cells) or 2 (8 neighbours).

    Returns
    -------
    markers : (M, N) ndarray of int32
        0 outside the cores; 1..N on the core of each cell.

    Raises
    ------
    ValueError
        If the map is not 2-D, contains NaN or values outside [0, 1], or a parameter
        is out of range.
    """
    edge_probability = _check_edge_probability(edge_probability)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if not h > 0:
        raise ValueError(f"h must be a positive distance in pixels, got {h!r}")
    return _interior_markers(
        edge_probability < threshold, h, _check_connectivity(connectivity)
    )


def _interior_markers(interior: np.ndarray, h: float, connectivity: int) -> np.ndarray:
    """Return :func:`cell_markers` of a validated boolean interior mask."""
    height, width = interior.shape
    if height**2 + width**2 >= _MAX_PIXELS:
        raise ValueError(f"image of shape {interior.shape} is too large")
    if interior.all():  # no wall anywhere: one cell, all core
        return interior.astype(np.int32)
    kernel = load_extension("_markers")
    squared_distance = np.zeros((height + 2, width + 2), dtype=np.int32)
    max_key = kernel.squared_distances(interior.view(np.uint8), squared_distance)
    markers = np.zeros((height, width), dtype=np.int32)
    kernel.persistent_maxima(
        squared_distance,
        max_key,
        _neighbour_offsets(width + 2, connectivity),
        connectivity,
        float(h),
        markers,
    )
    return markers


@dataclass(frozen=True)
class SegmentParams:
    """Parameters of :func:`segment_edges`; record them with :meth:`as_dict`.

    Attributes
    ----------
    threshold : float
        Edge probability at or above which a pixel is a cell wall. Default 0.5.
    marker_h : float
        ``h`` of :func:`cell_markers`: how far, in pixels, a distance peak must rise
        above its saddle to seed a cell of its own. Default 2.0: every distinct peak
        seeds a region, and merging (``merge_threshold``) joins the regions of one
        cell again. Without merging, use a large ``h`` (e.g. 32): a closed interior is
        then split only where it narrows to a neck much thinner than both of its lobes,
        and elongated or irregular cells with several distance peaks stay whole.
    min_area : int
        Cells with fewer pixels are dropped: their pixels become 0 (wall/background),
        they are not given to a neighbour. Default 8.
    merge_threshold : float
        0 (no merging) or the mean edge probability below which the boundary between
        two neighbouring regions is not a wall: the whole map is flooded from the
        markers, neighbours meet on the ridge of edge probability between them, and
        neighbours whose ridge is weaker than this on average are merged, weakest
        first (:func:`cellpipe.agglomerate.merge_weak_boundaries`). A cell that a small
        ``marker_h`` splits in two is joined again (no wall runs between its parts),
        while cells that touch through a gap in their wall keep the rest of the wall
        between them. Default 0.6.
    connectivity : int
        1 (4 neighbours, default) or 2 (8 neighbours), for cell interiors and the flood.
    label_walls : bool
        False (default): wall pixels (``edge_probability >= threshold``) are 0 in the
        output and cells are their interiors. True: walls are flooded too and split
        between the cells on either side, so cells tile the image.

    Notes
    -----
    The defaults of ``threshold``, ``marker_h``, ``min_area`` and ``merge_threshold``
    were chosen together for the shipped model by ``benchmarks/tune_segment.py --fold``:
    a grid search on out-of-fold edge maps of ISBI 2012 slices 0–19 (four models of
    the shipped recipe, each predicting the five slices it was not trained on), by
    mean V_rand; slices 20–24 stay held out.
    """

    threshold: float = 0.5
    marker_h: float = 2.0
    min_area: int = 8
    merge_threshold: float = 0.6
    connectivity: int = 1
    label_walls: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if not self.marker_h > 0:
            raise ValueError(f"marker_h must be > 0 pixels, got {self.marker_h!r}")
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0 pixels, got {self.min_area!r}")
        if not 0 <= self.merge_threshold <= 1:
            raise ValueError(f"merge_threshold must be in [0, 1] (0: no merging), got {self.merge_threshold!r}")
        _check_connectivity(self.connectivity)

    def as_dict(self) -> dict[str, Any]:
        """Return the parameters as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)


def quantise_edges(edge_probability: np.ndarray, threshold: float) -> np.ndarray:
    """Return ``edge_probability`` as uint8 levels 0..255, walls strictly above interiors.

    Levels are ``round(255 * p)``, clamped so that every interior pixel
    (``p < threshold``) lies below every wall pixel: a flood then fills each
    interior before it crosses any wall.
    """
    levels = np.rint(edge_probability * 255).astype(np.uint8)
    wall_level = np.uint8(min(max(int(np.ceil(threshold * 255)), 1), 255))
    walls = edge_probability >= threshold
    np.maximum(levels, wall_level, out=levels, where=walls)
    np.minimum(levels, wall_level - np.uint8(1), out=levels, where=~walls)
    return levels


def segment_edges(
    edge_probability: np.ndarray, params: SegmentParams | None = None, *, background: np.ndarray | None = None
) -> np.ndarray:
    """Return the cell labels of an edge-probability map: 0 = wall/background, 1..N cells.

    Steps: binarise at ``params.threshold`` → :func:`cell_markers` → quantise the map
    to uint8 → :func:`watershed` from the markers (inside the interiors only, unless
    ``params.label_walls`` or ``params.merge_threshold``) → with
    ``params.merge_threshold``, merge neighbours across weak boundaries, then clear
    the walls unless ``params.label_walls`` → cells under ``params.min_area`` pixels
    become 0 → relabel 1..N consecutively, in raster order of the markers.

    Marker pixels are set to level 0 before the flood: a marker seeds its cell
    whatever the edge probability under it, and markers on one level keep the flood
    on its fast path.

    Parameters
    ----------
    edge_probability : (M, N) ndarray of float
        Probability of a cell wall at each pixel, in [0, 1] (high on walls).
    params : SegmentParams, optional
        Default: ``SegmentParams()``.
    background : (M, N) ndarray of bool, optional
        Pixels that belong to no cell (a three-class model's background). They are 0 in
        the output whatever else holds, ``label_walls`` included: no cell is ever made of
        background. The edge map should be high there too (``1 - P(interior)``), so that
        no marker starts in it and no merge crosses it.

    Returns
    -------
    labels : (M, N) ndarray of int32
        0 on walls, background and dropped cells; 1..N, one label per cell.

    Raises
    ------
    ValueError
        If the map is not 2-D or contains NaN or values outside [0, 1].

    Examples
    --------
    >>> edges = np.zeros((8, 9)); edges[:, 4] = 1.0
    >>> segment_edges(edges, SegmentParams(min_area=4))[0]
    array([1, 1, 1, 1, 0, 2, 2, 2, 2], dtype=int32)
    """
    params = SegmentParams() if params is None else params
    edge_probability = _check_edge_probability(edge_probability)
    interior = edge_probability < params.threshold
    if background is not None:
        background = np.asarray(background, dtype=bool)
        _check_same_shape("background", background, "edge_probability", edge_probability)
        interior &= ~background
    markers = _interior_markers(interior, params.marker_h, params.connectivity)
    elevation = quantise_edges(edge_probability, params.threshold)
    elevation[markers != 0] = 0
    if params.merge_threshold > 0:
        # Walls are flooded too, so that neighbours meet on the ridge between them.
        cells = watershed(elevation, markers, connectivity=params.connectivity)
        cells = merge_weak_boundaries(cells, edge_probability, params.merge_threshold)
        if not params.label_walls:
            cells[~interior] = 0
    else:
        cells = watershed(
            elevation,
            markers,
            mask=None if params.label_walls else interior,
            connectivity=params.connectivity,
        )
    if background is not None:
        cells[background] = 0
    areas = np.bincount(cells.ravel(), minlength=int(markers.max(initial=0)) + 1)
    keep = (areas >= params.min_area) & (areas > 0)  # merged-away labels have no pixels
    keep[0] = False
    new_label = np.zeros(areas.size, dtype=np.int32)
    new_label[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_label[cells]
