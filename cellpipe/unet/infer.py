"""Tiled U-Net inference at native resolution, in bounded memory.

An image is never resized. It is cut into overlapping square tiles that are fed to the
network in batches through one compiled ``tf.function`` (fixed input signature
``[None, tile, tile, 1]``), and the tile predictions are blended with weights that
ramp smoothly (raised cosine) across each overlap. Tiles are produced and consumed
row by row, so memory holds the image, the output and one batch of tiles, whatever
the image size.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf

from cellpipe.unet import model as unet_model
from cellpipe.unet.model import ModelCard, UNetConfig
from cellpipe.unet.targets import boundary_probability
from cellpipe.views import check_views, from_view, to_view

#: Tile side in pixels: large tiles amortise per-call overhead and waste less on overlap.
DEFAULT_TILE = 512
#: Pixels shared by neighbouring tiles; predictions are blended across them.
DEFAULT_OVERLAP = 32
#: Tiles per network call.
DEFAULT_BATCH = 2


class EdgePredictor:
    """Compiled tiled inference for one U-Net.

    Parameters
    ----------
    model : keras.Model
        A model made by :func:`cellpipe.unet.build_unet` (or loaded with ``load_model``).
    fold_batch_norm : bool
        Run a copy with batch norm folded into the convolutions (faster). The copy is a
        snapshot: use ``False`` while the model is still being trained.

    Notes
    -----
    One ``tf.function`` is traced per tile size and reused for every image.
    """

    def __init__(self, model: keras.Model, *, fold_batch_norm: bool = True) -> None:
        self.config = UNetConfig.of_model(model)
        self._network = unet_model.fold_batch_norm(model) if fold_batch_norm else model
        self._compiled: dict[int, tf.types.experimental.ConcreteFunction] = {}

    def __call__(
        self,
        image: np.ndarray,
        *,
        tile: int = DEFAULT_TILE,
        overlap: int = DEFAULT_OVERLAP,
        batch_size: int = DEFAULT_BATCH,
        views: int = 1,
    ) -> np.ndarray:
        """Return the edge probability of ``image``; see :func:`predict_edges`.

        For a three-class model the edge probability is ``1 - P(interior)``: walls and
        background both bound cells.
        """
        return boundary_probability(self.maps(image, tile=tile, overlap=overlap, batch_size=batch_size, views=views))

    def maps(
        self,
        image: np.ndarray,
        *,
        tile: int = DEFAULT_TILE,
        overlap: int = DEFAULT_OVERLAP,
        batch_size: int = DEFAULT_BATCH,
        views: int = 1,
    ) -> np.ndarray:
        """Return the network's output maps of ``image``: float32, shape ``(H, W, classes)``.

        One channel (edge probability) for an edge model; three (interior, wall,
        background probabilities, summing to 1) for a three-class model.
        """
        image = _checked_image(image)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        views = check_views(views)
        if views == 1:
            return self._predict(image, tile, overlap, batch_size)
        maps = np.zeros((*image.shape, self.config.classes), np.float32)
        for index in range(views):
            maps += from_view(self._predict(to_view(image, index), tile, overlap, batch_size), index)
        maps /= views
        return maps

    def _predict(self, image: np.ndarray, tile: int, overlap: int, batch_size: int) -> np.ndarray:
        plan = self.plan(image.shape, tile=tile, overlap=overlap)
        tile, ys, xs = plan.tile, plan.rows, plan.cols
        padded = _pad_to(image, *plan.padded_shape)
        wy = [tile_weights(tile, overlap, i > 0, i < len(ys) - 1) for i in range(len(ys))]
        wx = [tile_weights(tile, overlap, j > 0, j < len(xs) - 1) for j in range(len(xs))]
        network = self._function(tile)
        maps = np.zeros((*padded.shape, self.config.classes), np.float32)
        for batch in _batches(((i, j) for i in range(len(ys)) for j in range(len(xs))), batch_size):
            tiles = np.stack([padded[ys[i] : ys[i] + tile, xs[j] : xs[j] + tile] for i, j in batch])
            predictions = network(tf.constant(tiles[..., None])).numpy()
            for (i, j), prediction in zip(batch, predictions):
                window = maps[ys[i] : ys[i] + tile, xs[j] : xs[j] + tile]
                window += prediction * (wy[i][:, None] * wx[j][None, :])[..., None]
        # The weights of a grid of tiles are separable: their sum is an outer product.
        maps /= _weight_sum(padded.shape[0], ys, wy)[:, None, None]
        maps /= _weight_sum(padded.shape[1], xs, wx)[None, :, None]
        return np.ascontiguousarray(maps[: image.shape[0], : image.shape[1]])

    def plan(self, shape: tuple[int, int], *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP) -> "TilePlan":
        """Return how an image of ``shape`` is cut into tiles; see :func:`plan_tiles`."""
        return plan_tiles(shape, tile=tile, overlap=overlap, multiple=self.config.size_multiple)

    def _function(self, tile: int):
        if tile not in self._compiled:
            network = self._network

            @tf.function(input_signature=[tf.TensorSpec([None, tile, tile, 1], tf.float32)], autograph=False)
            def forward(tiles):
                return network(tiles, training=False)

            self._compiled[tile] = forward
        return self._compiled[tile]


_PREDICTORS: "weakref.WeakKeyDictionary[keras.Model, EdgePredictor]" = weakref.WeakKeyDictionary()


def predict_edges(
    model: keras.Model | EdgePredictor,
    image: np.ndarray,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH,
    views: int = 1,
) -> np.ndarray:
    """Return the edge probability of ``image``: float32, same shape, 1 on cell walls.

    Parameters
    ----------
    model : keras.Model or EdgePredictor
        The U-Net. A Keras model is compiled (batch norm folded) the first time it is
        used and the compiled copy is reused for later images; weights changed after
        that are not seen (use ``EdgePredictor(model, fold_batch_norm=False)`` then).
    image : ndarray, shape (H, W)
        The network input: a contrast gray image in [0, 1] with dark cell walls, as
        made by :func:`model_input`. Any size; it is never resized.
    tile : int
        Nominal tile side, a multiple of ``2 ** depth``. The side used is the one of
        :func:`plan_tiles` that computes the fewest pixels (between ``tile / 2`` and
        ``1.25 * tile``, or one smaller tile holding a small, mirror-padded image).
    overlap : int
        Minimum overlap of neighbouring tiles; predictions are blended across it with
        raised-cosine weights. Should exceed the model's border artefacts (~16 px).
    batch_size : int
        Tiles per network call. Memory grows with ``batch_size * tile**2``.
    views : {1, 2, 4, 8}
        Test-time augmentation: the mean of the predictions of this many mirrored and
        rotated views of the image, each mapped back (2: the image and its mirror
        image; 8: all flips and quarter turns). Each view costs one more prediction.

    Returns
    -------
    edge_probability : ndarray of float32, shape (H, W)

    Examples
    --------
    >>> from cellpipe.unet import build_unet, UNetConfig
    >>> model = build_unet(UNetConfig(depth=2, base_filters=4))
    >>> predict_edges(model, np.zeros((50, 70), np.float32)).shape
    (50, 70)
    """
    if isinstance(model, EdgePredictor):
        predictor = model
    else:
        predictor = _PREDICTORS.get(model)
        if predictor is None:
            predictor = _PREDICTORS[model] = EdgePredictor(model)
    return predictor(image, tile=tile, overlap=overlap, batch_size=batch_size, views=views)


def model_input(image: np.ndarray, card: ModelCard, *, invert: bool = False) -> np.ndarray:
    """Return the network input for ``image``: the contrast gray image the card asks for.

    Parameters
    ----------
    image : ndarray
        Raw 2-D image as read by :func:`cellpipe.io.read_image`.
    card : ModelCard
        Card of the model that will see the input (its normalisation is applied).
    invert : bool
        Invert after normalising, for images whose cell walls are bright while the
        model expects dark walls (``card.dark_walls``).
    """
    from cellpipe.preprocess import contrast_gray

    gray = contrast_gray(image, card.contrast_params()).astype(np.float32, copy=False)
    return (1.0 - gray) if invert else gray


@dataclass(frozen=True)
class TilePlan:
    """How tiled inference cuts an image: the tile side and the tiles' start offsets.

    Attributes
    ----------
    tile : int
        Side of the square tiles fed to the network.
    rows, cols : tuple of int
        Start offsets of the tiles along the height and the width; every pair is a tile.
    padded_shape : (int, int)
        The image is mirror-padded to this shape (only when it is smaller than a tile).
    """

    tile: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    padded_shape: tuple[int, int]

    @property
    def n_tiles(self) -> int:
        """Return the number of tiles."""
        return len(self.rows) * len(self.cols)


def plan_tiles(shape: tuple[int, int], *, tile: int, overlap: int, multiple: int) -> TilePlan:
    """Return the cheapest tiling of an image of ``shape`` with tiles of about ``tile`` pixels.

    Candidate sides are ``tile`` itself, the multiples of 64 (or of ``multiple`` when
    larger) from ``tile / 2`` to ``1.25 * tile``, and the smallest such multiple that
    holds the whole image when that is no larger. The candidate with the fewest pixels
    to compute wins, ties going to the larger side: a 2048 x 2048 image takes 5 x 5
    tiles of 448 (1.2 times its pixels) rather than 5 x 5 of 512 (1.56 times), a
    300 x 200 image one tile of 320. The bounded set of sides keeps the number of
    compiled functions small.

    Raises
    ------
    ValueError
        When ``tile`` is not a multiple of ``multiple`` or ``overlap`` is not in ``[0, tile / 2)``.
    """
    if tile < multiple or tile % multiple:
        raise ValueError(f"tile must be a positive multiple of {multiple} for this model, got {tile}")
    if not 0 <= overlap < tile // 2:
        raise ValueError(f"overlap must be in [0, tile/2) = [0, {tile // 2}), got {overlap}")
    height, width = shape
    largest = tile + tile // 4
    step = max(multiple, 64)
    candidates = {tile, step * math.ceil(max(height, width) / step)}
    candidates |= set(range(step * math.ceil(tile / 2 / step), largest + 1, step))

    def cost(side: int) -> float:
        if max(height, width) <= side <= max(tile, largest):
            return float(side * side)
        if side <= 2 * overlap or side > largest:
            return math.inf
        rows = 1 if height <= side else math.ceil((height - overlap) / (side - overlap))
        cols = 1 if width <= side else math.ceil((width - overlap) / (side - overlap))
        return float(rows * cols * side * side)

    side = min(sorted(candidates, reverse=True), key=cost)
    padded = (max(height, side), max(width, side))
    rows, cols = tile_starts(padded[0], side, overlap), tile_starts(padded[1], side, overlap)
    return TilePlan(side, tuple(rows), tuple(cols), padded)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Return the start offsets of tiles covering ``length`` pixels, overlapping by at least ``overlap``.

    Tiles are spread evenly from 0 to ``length - tile``; ``length`` must be at least ``tile``.
    """
    if length < tile:
        raise ValueError(f"length {length} is shorter than the tile {tile}")
    if length == tile:
        return [0]
    count = max(2, math.ceil((length - overlap) / (tile - overlap)))
    return [int(round(s)) for s in np.linspace(0, length - tile, count)]


def tile_weights(tile: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """Return 1-D blending weights of a tile: 1 inside, a raised-cosine ramp over ``overlap`` pixels.

    Only sides that overlap a neighbour ramp; a side on the image border keeps weight 1.
    Every weight is positive.
    """
    weights = np.ones(tile, np.float32)
    if overlap > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        if ramp_start:
            weights[:overlap] = ramp
        if ramp_end:
            weights[tile - overlap :] = ramp[::-1]
    return weights


def _weight_sum(length: int, starts: list[int], weights: list[np.ndarray]) -> np.ndarray:
    total = np.zeros(length, np.float32)
    for start, w in zip(starts, weights):
        total[start : start + len(w)] += w
    return total


def _batches(items: Iterator[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    batch: list[tuple[int, int]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    pad = ((0, height - image.shape[0]), (0, width - image.shape[1]))
    if pad == ((0, 0), (0, 0)):
        return image
    # Mirror without repeating the border pixel; a 1-pixel side can only be repeated.
    mode = "reflect" if min(image.shape) > 1 else "edge"
    return np.pad(image, pad, mode=mode)


def _checked_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got an array of shape {image.shape}")
    if image.size == 0:
        raise ValueError("cannot predict edges of an empty image")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise ValueError(f"expected a real-valued image, got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    return image
