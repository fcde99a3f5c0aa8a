"""The mirrored/rotated views of test-time augmentation, without TensorFlow.

A view is the image mirrored left/right or not, then turned by quarter turns. Views are
added in a fixed order: the mirror image first (it cancels the most left/right asymmetry
of the network's receptive field), then the half turn and its mirror, then the quarter
turns; all 8 are the whole dihedral group of the square.

>>> image = np.arange(6).reshape(2, 3)
>>> all(np.array_equal(from_view(to_view(image, v), v), image) for v in range(8))
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["VIEW_COUNTS", "check_views", "from_view", "to_view"]

#: Accepted numbers of views averaged by test-time augmentation.
VIEW_COUNTS = (1, 2, 4, 8)
# View i as (quarter turns, mirrored first).
_VIEWS = ((0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True))


def check_views(views: object) -> int:
    """Return ``views`` if it is an accepted view count; raise ValueError otherwise."""
    if isinstance(views, bool) or views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views!r}")
    return int(views)  # type: ignore[call-overload]


def to_view(image: np.ndarray, index: int) -> np.ndarray:
    """Return view ``index`` (0..7) of ``image``, C-contiguous; view 0 is the image itself."""
    turns, mirrored = _VIEWS[index]
    return np.ascontiguousarray(np.rot90(image[:, ::-1] if mirrored else image, turns))


def from_view(view: np.ndarray, index: int) -> np.ndarray:
    """Return ``view`` (a map of view ``index``) turned back to the image's orientation."""
    turns, mirrored = _VIEWS[index]
    back = np.rot90(view, -turns)
    return back[:, ::-1] if mirrored else back
