"""Pictures of a segmentation: cell outlines and centroids drawn on the image."""

from __future__ import annotations

import numpy as np

from cellpipe.preprocess import contrast_gray

#: RGB colour of cell outlines.
OUTLINE_COLOUR = (255, 215, 0)
#: RGB colour of centroid marks.
CENTROID_COLOUR = (230, 30, 30)


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray | None = None,
    *,
    marker_radius: int = 2,
) -> np.ndarray:
    """Return an RGB uint8 picture of ``image`` with cell outlines and centroid crosses.

    Parameters
    ----------
    image : (H, W) ndarray
        The image, any dtype; shown as its percentile-normalised contrast gray image.
    labels : (H, W) ndarray of int
        0 = wall/background, 1..N cells.
    centroids : (N, 2) ndarray of float, optional
        (row, col) of each cell, e.g. ``np.column_stack([cells["centroid-0"],
        cells["centroid-1"]])``; each gets a small cross.
    marker_radius : int
        Half-length of a centroid cross arm in pixels. Default 2.

    Returns
    -------
    picture : (H, W, 3) ndarray of uint8

    Examples
    --------
    >>> labels = np.zeros((8, 8), int); labels[2:6, 2:6] = 1
    >>> overlay(np.zeros((8, 8)), labels).shape
    (8, 8, 3)
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.shape != labels.shape or labels.ndim != 2:
        raise ValueError(f"image {image.shape} and labels {labels.shape} must be 2-D of one shape")
    gray = (contrast_gray(image) * 255).astype(np.uint8)
    picture = np.repeat(gray[..., None], 3, axis=2)
    picture[outlines(labels)] = OUTLINE_COLOUR
    if centroids is not None and len(centroids):
        _draw_crosses(picture, np.asarray(centroids, dtype=float), marker_radius)
    return picture


def outlines(labels: np.ndarray) -> np.ndarray:
    """Return a bool mask of the cell pixels that touch another label (4-neighbours).

    Only pixels of cells (label > 0) are marked, so outlines stay inside their cell.
    """
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge &= labels > 0
    return edge


def _draw_crosses(picture: np.ndarray, centroids: np.ndarray, radius: int) -> None:
    height, width = picture.shape[:2]
    rows = np.rint(centroids[:, 0]).astype(np.intp)
    cols = np.rint(centroids[:, 1]).astype(np.intp)
    for offset in range(-radius, radius + 1):
        for r, c in ((rows + offset, cols), (rows, cols + offset)):
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            picture[r[inside], c[inside]] = CENTROID_COLOUR
