"""Per-pixel classes of the three-class U-Net: cell interior, wall and background.

Label images come in two layouts, and both become one class map:

- the **seed layout** (``train/label/N.png``): 255 (any value other than 0 and 128)
  inside cells, 0 on cell walls, and **128 on background**, where there is no cell at
  all (a slide between nuclei, the mounting medium around a section). Old label images
  hold only 0 and 255: all of their pixels are cells or walls, as before;
- **instance masks** (``masks/N.png``, as in the DSB 2018 and Cell Tracking Challenge
  sets): 0 is background and each cell has its own value. Pixels of a cell that touch
  another cell are its wall, so touching cells stay apart; the rest is interior.

The cell diameter that training rescales to (:data:`TRAINING_DIAMETER`) and the median
cell diameter of a label image (:func:`median_diameter`) live here too: training
normalises every image so that its cells have the training diameter, and inference
(:mod:`cellpipe.scale`) does the same to each image it sees.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cellpipe.scale import diameter_of_labels

__all__ = [
    "BACKGROUND",
    "BACKGROUND_VALUE",
    "INTERIOR",
    "N_CLASSES",
    "TRAINING_DIAMETER",
    "WALL",
    "boundary_probability",
    "classes_from_instances",
    "classes_from_label",
    "instances_from_classes",
    "median_diameter",
]

#: Channel (and class value) of each class in the network's softmax output.
INTERIOR, WALL, BACKGROUND = 0, 1, 2
N_CLASSES = 3
#: Value that marks background in a seed-layout label image.
BACKGROUND_VALUE = 128
#: Median equivalent diameter, in pixels, that every training image is rescaled to
#: (about that of ISBI 2012's EM slices at their own magnification).
TRAINING_DIAMETER = 28.0


def boundary_probability(maps: np.ndarray) -> np.ndarray:
    """Return the probability that a pixel bounds a cell, from a model's output maps (H, W, C).

    An edge model's one channel is that probability; for a three-class model it is
    ``1 - P(interior)``: walls and background both bound cells.
    """
    if maps.shape[-1] == 1:
        return maps[..., 0]
    return np.ascontiguousarray(1.0 - maps[..., INTERIOR])


def classes_from_label(label: np.ndarray) -> np.ndarray:
    """Return the class map (uint8: interior 0, wall 1, background 2) of a seed-layout label.

    Examples
    --------
    >>> classes_from_label(np.array([[255, 0, 128]], np.uint8))
    array([[0, 1, 2]], dtype=uint8)
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"a label image must be 2-D, got shape {label.shape}")
    classes = np.full(label.shape, INTERIOR, np.uint8)
    classes[label == 0] = WALL
    classes[label == BACKGROUND_VALUE] = BACKGROUND
    return classes


def classes_from_instances(instances: np.ndarray) -> np.ndarray:
    """Return the class map of an instance mask: 0 background, one value per cell.

    A cell's pixels that have a pixel of another cell among their 8 neighbours are wall;
    where two cells touch, the wall is therefore two pixels wide, one on each side.

    Examples
    --------
    >>> classes_from_instances(np.array([[0, 1, 1, 2, 2]]))
    array([[2, 0, 1, 1, 0]], dtype=uint8)
    """
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"an instance mask must be 2-D, got shape {instances.shape}")
    cell = instances != 0
    # Largest and smallest label around each pixel, background ignored: they differ
    # exactly where another cell is near.
    high = ndimage.maximum_filter(np.where(cell, instances, instances.min()), size=3, mode="nearest")
    fill = instances.max() + 1
    low = ndimage.minimum_filter(np.where(cell, instances, fill), size=3, mode="nearest")
    touching = cell & ((high != instances) | (low != instances))
    classes = np.full(instances.shape, BACKGROUND, np.uint8)
    classes[cell] = INTERIOR
    classes[touching] = WALL
    return classes


def instances_from_classes(classes: np.ndarray) -> np.ndarray:
    """Return the cells of a class map as instance labels: interior components, 4-connected."""
    labels, _ = ndimage.label(np.asarray(classes) == INTERIOR)
    return labels.astype(np.int32)


#: The median equivalent diameter of the cells of a label image, the statistic training
#: rescales to and the pipeline estimates (one function: :func:`cellpipe.scale.diameter_of_labels`).
median_diameter = diameter_of_labels
