"""Synthetic fluorescent nuclei: bright textured ellipses on a dark background.

The counterpart of :func:`cellpipe.synthetic.synthetic_cells` for images with
background: most pixels belong to no cell, and cells may touch. Used to train and test
the background class of the U-Net.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["synthetic_nuclei"]


def synthetic_nuclei(
    shape: tuple[int, int] | int,
    *,
    mean_diameter: float = 24.0,
    density: float = 0.35,
    seed: int = 0,
    blur_sigma: float = 1.0,
    noise: float = 0.04,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image, instances)``: a uint8 image of nuclei and its instance labels.

    Parameters
    ----------
    shape : (int, int) or int
        Image height and width (an int means a square).
    mean_diameter : float
        Mean equivalent diameter of a nucleus in pixels (at least 4).
    density : float
        Fraction of the image that nuclei try to cover, in (0, 0.8]; nuclei that would
        overlap another by more than a sliver are not drawn, so the real cover is lower.
    seed : int
        Seed of the random generator; the same arguments give the same image.
    blur_sigma, noise : float
        Optical blur (pixels) and Gaussian noise (fraction of the range).

    Returns
    -------
    image : ndarray of uint8, shape (H, W)
    instances : ndarray of int32, shape (H, W)
        0 on background, 1..N one value per nucleus.

    Examples
    --------
    >>> image, instances = synthetic_nuclei(96, mean_diameter=16, seed=1)
    >>> image.shape, int(instances.max()) > 3, float(image[instances == 0].mean()) < float(image[instances > 0].mean())
    ((96, 96), True, True)
    """
    height, width = (shape, shape) if isinstance(shape, int) else (int(shape[0]), int(shape[1]))
    if min(height, width) < 8:
        raise ValueError(f"image sides must be at least 8 pixels, got {(height, width)}")
    if not mean_diameter >= 4:
        raise ValueError(f"mean_diameter must be at least 4 pixels, got {mean_diameter}")
    if not 0 < density <= 0.8:
        raise ValueError(f"density must be in (0, 0.8], got {density}")
    rng = np.random.default_rng(seed)
    instances = np.zeros((height, width), np.int32)
    intensity = np.zeros((height, width), np.float32)
    target = density * height * width / (np.pi * mean_diameter**2 / 4)
    rows, cols = np.mgrid[0:height, 0:width]
    label = 0
    for _ in range(int(4 * target) + 4):
        if label >= target:
            break
        diameter = mean_diameter * float(np.exp(rng.normal(0.0, 0.2)))
        aspect = float(rng.uniform(1.0, 1.7))
        a, b = 0.5 * diameter * np.sqrt(aspect), 0.5 * diameter / np.sqrt(aspect)
        angle = float(rng.uniform(0, np.pi))
        cy, cx = float(rng.uniform(0, height)), float(rng.uniform(0, width))
        reach = int(np.ceil(a)) + 2
        top, bottom = max(0, int(cy) - reach), min(height, int(cy) + reach + 1)
        left, right = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
        if top >= bottom or left >= right:
            continue
        dy, dx = rows[top:bottom, left:right] - cy, cols[top:bottom, left:right] - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / a
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / b
        # A wobbly rim: nuclei are not perfect ellipses.
        phase = np.arctan2(v, u)
        rim = 1.0 + 0.08 * np.sin(3 * phase + rng.uniform(0, 2 * np.pi))
        inside = (u * u + v * v) <= rim**2
        window = instances[top:bottom, left:right]
        overlap = np.count_nonzero(inside & (window != 0))
        if not inside.any() or overlap > 0.05 * np.count_nonzero(inside):
            continue
        label += 1
        fresh = inside & (window == 0)
        window[fresh] = label
        brightness = float(rng.uniform(0.35, 1.0))
        # Brighter towards the centre, as a thick nucleus is.
        profile = brightness * (0.75 + 0.25 * np.clip(1.0 - (u * u + v * v), 0.0, 1.0))
        intensity[top:bottom, left:right][fresh] = profile[fresh]
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (height, width)), max(1.0, mean_diameter / 10))
    texture /= max(float(np.abs(texture).max()), 1e-6)
    intensity *= 1.0 + 0.25 * texture
    intensity += float(rng.uniform(0.0, 0.15))  # background glow
    if blur_sigma > 0:
        intensity = ndimage.gaussian_filter(intensity, blur_sigma)
    intensity += rng.normal(0.0, noise, intensity.shape)
    image = np.clip(np.rint(255 * np.clip(intensity, 0.0, 1.0)), 0, 255).astype(np.uint8)
    return image, instances
