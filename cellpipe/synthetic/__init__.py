"""Foam- and tissue-like images with exact ground truth, for tests, demos and benchmarks.

- :mod:`cellpipe.synthetic.samples` draws one image with its labels and perfect edge map
  in memory: :func:`synthetic_cells` returns a :class:`SyntheticSample` (see that module
  for how the two kinds, ``"foam"`` and ``"tissue"``, look);
- :mod:`cellpipe.synthetic.files` writes sets of such images as PNGs with their label
  TIFFs: :func:`write_samples`, :func:`truth_path`.
- ``cellpipe.synthetic._geometry`` (internal) lays out the Voronoi cells and walls that
  both the image and its truth derive from.

Everything is re-exported here, so ``from cellpipe.synthetic import ...`` is all a user needs.

>>> from cellpipe.synthetic import synthetic_cells, write_samples
>>> sample = synthetic_cells((256, 256), kind="tissue", seed=1)
>>> paths = write_samples("demo_images", 4, size=256)  # doctest: +SKIP
"""

from cellpipe.synthetic.files import CORRUPT_NAME, TRUTH_FOLDER, TRUTH_SUFFIX, truth_folder, truth_path, write_samples
from cellpipe.synthetic.samples import KINDS, Kind, SyntheticSample, expected_cell_count, synthetic_cells

__all__ = [
    "CORRUPT_NAME",
    "KINDS",
    "TRUTH_FOLDER",
    "TRUTH_SUFFIX",
    "Kind",
    "SyntheticSample",
    "expected_cell_count",
    "synthetic_cells",
    "truth_folder",
    "truth_path",
    "write_samples",
]
