"""One synthetic foam- or tissue-like image with exact ground truth, drawn in memory.

Cells are the Voronoi regions of seeds on a jittered hexagonal lattice; walls are the
pixels near the Voronoi boundaries. Each sample carries the rendered ``image``, the true
``labels`` and the ``edges`` map a perfect edge predictor would return, all derived from
the same wall mask so they agree pixel for pixel.

- ``kind="foam"`` looks like a polyurethane foam SEM: bright struts, thicker at the
  junctions (Plateau borders), on dark cell faces that brighten towards the struts,
  with dark pores (open windows) in about half of the cells.
- ``kind="tissue"`` looks like stained plant tissue in bright field: dark thin walls,
  each lined by a faint bright halo, on bright grainy cytoplasm, with dark nuclei in some
  cells.

Both get optical blur, shot and read noise and uneven illumination. Everything is drawn
from ``numpy.random.default_rng(seed)``: the same arguments give the same sample.

Where cells and walls lie comes from :mod:`cellpipe.synthetic._geometry`; this module
paints them. :mod:`cellpipe.synthetic.files` writes samples to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from cellpipe.synthetic._geometry import Geometry, cell_geometry

Kind = Literal["foam", "tissue"]
KINDS: tuple[str, ...] = ("foam", "tissue")

# Per kind: noise (relative std at full brightness), and the fraction of cells with a
# pore (foam) or a nucleus (tissue).
_DEFAULT_NOISE = {"foam": 0.06, "tissue": 0.03}
_BLOB_FRACTION = {"foam": 0.55, "tissue": 0.35}


@dataclass(frozen=True, eq=False)
class SyntheticSample:
    """One synthetic image with its exact ground truth.

    Attributes
    ----------
    image : ndarray of uint8 or uint16, shape (H, W)
        The rendered gray image.
    labels : ndarray of int32, shape (H, W)
        0 on walls, cells numbered 1..N consecutively in raster order of first pixel.
    edges : ndarray of float32, shape (H, W)
        Edge probability a perfect predictor would return: 1 on walls, falling smoothly
        to 0 inside cells; ``edges > 0.5`` is exactly ``labels == 0``.
    kind : str
        ``"foam"`` (bright walls) or ``"tissue"`` (dark walls).
    seed : int
        The seed that reproduces this sample.
    """

    image: np.ndarray
    labels: np.ndarray
    edges: np.ndarray
    kind: str
    seed: int

    @property
    def n_cells(self) -> int:
        """Return the number of cells N in ``labels``."""
        return int(self.labels.max(initial=0))

    @property
    def walls_are_bright(self) -> bool:
        """Return True when walls are brighter than cells (foam), False otherwise."""
        return self.kind == "foam"


def expected_cell_count(shape: tuple[int, int], mean_cell_diameter: float) -> float:
    """Return about how many cells :func:`synthetic_cells` puts in an image of ``shape``.

    ``mean_cell_diameter`` is the diameter of the disc with the mean Voronoi cell area
    (walls included), so the count is ``H * W / (pi * d**2 / 4)``; cells cut by the
    image border add a little to the real count.
    """
    height, width = shape
    return height * width / (np.pi * mean_cell_diameter**2 / 4.0)


def synthetic_cells(
    shape: tuple[int, int] | int,
    *,
    kind: Kind = "foam",
    mean_cell_diameter: float = 40.0,
    wall_width: tuple[float, float] = (2.0, 5.0),
    seed: int = 0,
    dtype: str | np.dtype = "uint8",
    irregularity: float = 0.45,
    blur_sigma: float = 1.0,
    noise: float | None = None,
    illumination: float = 0.25,
    edge_sigma: float = 1.0,
) -> SyntheticSample:
    """Return a synthetic foam or tissue image with its labels and perfect edge map.

    Parameters
    ----------
    shape : (int, int) or int
        Image height and width in pixels (an int means a square), each at least 8.
    kind : {"foam", "tissue"}
        Foam SEM (bright walls on dark cells) or stained tissue (dark walls on bright
        cells). See the module docstring.
    mean_cell_diameter : float
        Equivalent-circle diameter of the mean Voronoi cell, walls included, in pixels.
    wall_width : (float, float)
        Range of wall widths in pixels; each cell draws one width for its side of its
        walls. Walls are never thinner than 2 pixels (one on each side of the Voronoi
        boundary), so cells never touch in 4-connectivity.
    seed : int
        Seed of the random generator; the same arguments give the same sample.
    dtype : {"uint8", "uint16"}
        Pixel type of ``image``; values span the type's full range.
    irregularity : float
        Seed jitter as a fraction of the lattice spacing, in [0, 1]: 0 gives a regular
        honeycomb, 0.45 natural-looking cells.
    blur_sigma : float
        Standard deviation in pixels of the Gaussian optical blur (0: none).
    noise : float, optional
        Noise standard deviation at full brightness, relative to the range; shot noise
        (Gaussian approximation of Poisson noise) plus a read-noise floor. Default 0.06
        for foam, 0.03 for tissue.
    illumination : float
        Amplitude of the smooth illumination field, in [0, 1): brightness varies by up
        to about this fraction across the image.
    edge_sigma : float
        Width in pixels of the fall-off of ``edges`` from walls into cells (> 0).

    Returns
    -------
    SyntheticSample

    Examples
    --------
    >>> sample = synthetic_cells((256, 256), kind="tissue", seed=1)
    >>> sample.image.dtype, sample.labels.dtype, sample.edges.dtype
    (dtype('uint8'), dtype('int32'), dtype('float32'))
    >>> bool((sample.labels == 0).any()), bool(((sample.edges > 0.5) == (sample.labels == 0)).all())
    (True, True)
    """
    height, width = _validate_shape(shape)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"dtype must be uint8 or uint16, got {out_dtype}")
    if not mean_cell_diameter >= 6:
        raise ValueError(f"mean_cell_diameter must be at least 6 pixels, got {mean_cell_diameter}")
    min_wall, max_wall = (float(w) for w in wall_width)
    if not 1 <= min_wall <= max_wall <= mean_cell_diameter / 3:
        raise ValueError(
            "wall_width must be (min, max) with 1 <= min <= max <= mean_cell_diameter / 3, "
            f"got {wall_width} for a mean cell diameter of {mean_cell_diameter}"
        )
    if not 0 <= irregularity <= 1:
        raise ValueError(f"irregularity must be in [0, 1], got {irregularity}")
    if not 0 <= illumination < 1:
        raise ValueError(f"illumination must be in [0, 1), got {illumination}")
    if blur_sigma < 0 or edge_sigma <= 0:
        raise ValueError("blur_sigma must be >= 0 and edge_sigma > 0")
    noise = _DEFAULT_NOISE[kind] if noise is None else float(noise)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")

    rng = np.random.default_rng(seed)
    geometry = cell_geometry((height, width), mean_cell_diameter, min_wall, max_wall,
                             irregularity, kind, rng)
    if kind == "foam":
        intensity = _render_foam(geometry, mean_cell_diameter, rng)
    else:
        intensity = _render_tissue(geometry, mean_cell_diameter, rng)
    intensity *= _illumination_field((height, width), illumination, rng)
    if blur_sigma > 0:
        intensity = ndimage.gaussian_filter(intensity, blur_sigma)
    _add_noise(intensity, noise, rng)
    image = _quantise(intensity, out_dtype)
    edges = _perfect_edges(geometry, edge_sigma)
    return SyntheticSample(image=image, labels=geometry.labels, edges=edges, kind=kind, seed=seed)


def _blobs(geometry: Geometry, present: np.ndarray, radius: np.ndarray, offset: np.ndarray,
           rng) -> tuple[np.ndarray, np.ndarray]:
    """Return flat indices of pixels near each cell's elliptic blob, and their distance past its rim.

    Only cells where ``present`` is True get a blob, centred ``offset`` from the seed, and
    only pixels more than 2 px inside the cell are returned, so blobs never touch walls.
    """
    n_seeds = len(geometry.seeds)
    aspect = rng.uniform(0.6, 1.0, n_seeds).astype(np.float32)
    angle = rng.uniform(0, np.pi, n_seeds)
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    centre = geometry.seeds + offset
    index = np.flatnonzero(present[geometry.voronoi] & (geometry.depth > 2.0))
    cell = geometry.voronoi.ravel()[index]
    rows, cols = np.divmod(index, geometry.voronoi.shape[1])
    rows = rows.astype(np.float32) - centre[cell, 0]
    cols = cols.astype(np.float32) - centre[cell, 1]
    along = rows * cos[cell] + cols * sin[cell]
    across = (cols * cos[cell] - rows * sin[cell]) / aspect[cell]
    return index, np.hypot(along, across) - radius[cell]


def _render_foam(geometry: Geometry, diameter: float, rng) -> np.ndarray:
    n_seeds = len(geometry.seeds)
    inside = np.maximum(geometry.depth, 0.0)
    face = rng.uniform(0.22, 0.42, n_seeds).astype(np.float32)[geometry.voronoi]
    face += 0.2 * np.exp(inside / np.float32(-0.1 * diameter))  # membranes curve up to the struts

    has_pore = rng.uniform(0, 1, n_seeds) < _BLOB_FRACTION["foam"]
    radius = (rng.uniform(0.12, 0.28, n_seeds) * diameter).astype(np.float32)
    index, past_rim = _blobs(geometry, has_pore, radius, np.zeros((n_seeds, 2), np.float32), rng)
    pore = np.clip(0.5 - past_rim, 0.0, 1.0)
    lit_rim = 0.12 * np.exp(np.abs(past_rim) / np.float32(-1.5))  # the window's torn edge
    flat_face = face.ravel()
    flat_face[index] = (flat_face[index] + lit_rim) * (1 - pore) + 0.06 * pore

    strut = rng.uniform(0.75, 1.0, n_seeds).astype(np.float32)[geometry.voronoi]
    strut -= face
    strut *= geometry.coverage
    face += strut
    return face


def _render_tissue(geometry: Geometry, diameter: float, rng) -> np.ndarray:
    n_seeds = len(geometry.seeds)
    inside = np.maximum(geometry.depth, 0.0)
    cytoplasm = rng.uniform(0.55, 0.85, n_seeds).astype(np.float32)[geometry.voronoi]
    cytoplasm += 0.08 * _smooth_noise(geometry.voronoi.shape, 0.15 * diameter, rng)
    cytoplasm += 0.12 * np.exp(inside / np.float32(-1.5))  # bright halo lining each wall

    has_nucleus = rng.uniform(0, 1, n_seeds) < _BLOB_FRACTION["tissue"]
    radius = (rng.uniform(0.12, 0.2, n_seeds) * diameter).astype(np.float32)
    offset = rng.uniform(-0.1, 0.1, (n_seeds, 2)).astype(np.float32) * diameter
    index, past_rim = _blobs(geometry, has_nucleus, radius, offset, rng)
    cytoplasm.ravel()[index] -= 0.3 * np.clip(0.5 - past_rim, 0.0, 1.0)

    wall = rng.uniform(0.08, 0.25, n_seeds).astype(np.float32)[geometry.voronoi]
    wall -= cytoplasm
    wall *= geometry.coverage
    cytoplasm += wall
    return cytoplasm


def _smooth_noise(shape, scale: float, rng) -> np.ndarray:
    """Return zero-mean noise in about [-1, 1] that varies over ``scale`` pixels."""
    scale = max(scale, 1.0)
    coarse = rng.uniform(-1, 1, (int(shape[0] / scale) + 2, int(shape[1] / scale) + 2))
    return _upsample(coarse.astype(np.float32), shape, scale)


def _upsample(coarse: np.ndarray, shape, factor: float) -> np.ndarray:
    """Return ``coarse`` bilinearly enlarged by ``factor`` and cut to ``shape``.

    Pixel centres line up: full-resolution pixel r samples coarse position
    (r + 0.5) / factor - 0.5. Two separable passes, fast on large images.
    """
    def axis_weights(n, size):
        position = np.clip((np.arange(n, dtype=np.float32) + 0.5) / factor - 0.5, 0, size - 1)
        lower = np.minimum(position.astype(np.int64), size - 2) if size > 1 else np.zeros(n, np.int64)
        return lower, np.minimum(position - lower, 1.0).astype(np.float32)

    r0, fr = axis_weights(shape[0], coarse.shape[0])
    c0, fc = axis_weights(shape[1], coarse.shape[1])
    r1, c1 = np.minimum(r0 + 1, coarse.shape[0] - 1), np.minimum(c0 + 1, coarse.shape[1] - 1)
    # Columns first, on the small array; then whole rows, which copy fast.
    along_cols = coarse[:, c0] * (1 - fc) + coarse[:, c1] * fc
    fr = fr[:, None]
    upsampled = along_cols[r0]
    upsampled *= 1 - fr
    upsampled += along_cols[r1] * fr
    return upsampled


def _illumination_field(shape, amplitude: float, rng) -> np.ndarray:
    """Return a smooth multiplicative field 1 ± ``amplitude``: a tilt plus a broad wave."""
    rows = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    cols = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    tilt, phase_r, phase_c = (float(angle) for angle in rng.uniform(0, 2 * np.pi, 3))
    field = (amplitude * 0.4 * np.cos(np.pi * rows + phase_r)) * np.cos(np.pi * cols + phase_c)
    field += amplitude * 0.6 * np.cos(tilt) * rows + 1.0
    field += amplitude * 0.6 * np.sin(tilt) * cols
    return field


def _add_noise(intensity: np.ndarray, noise: float, rng) -> None:
    if noise == 0:
        return
    spread = np.maximum(intensity, 0.0)  # shot-noise variance grows with the signal
    spread *= noise**2
    spread += (0.3 * noise) ** 2
    np.sqrt(spread, out=spread)
    spread *= rng.standard_normal(intensity.shape, dtype=np.float32)
    intensity += spread


def _quantise(intensity: np.ndarray, dtype: np.dtype) -> np.ndarray:
    top = np.iinfo(dtype).max
    np.clip(intensity, 0.0, 1.0, out=intensity)
    intensity *= top
    return np.rint(intensity).astype(dtype)


def _perfect_edges(geometry: Geometry, sigma: float) -> np.ndarray:
    """Return 1 on walls and, in cells, a Gaussian fall-off from 0.5 at the wall edge."""
    edges = np.maximum(geometry.depth, 0.0)
    edges += 0.5  # pixel centre to wall edge
    np.square(edges, out=edges)
    edges *= np.float32(-0.5 / sigma**2)
    np.exp(edges, out=edges)
    edges *= 0.5
    edges[geometry.labels == 0] = 1.0
    return edges


def _validate_shape(shape) -> tuple[int, int]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape, shape)
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 8 for s in shape):
        raise ValueError(f"shape must be (height, width) with both at least 8 pixels, got {shape}")
    return int(shape[0]), int(shape[1])
