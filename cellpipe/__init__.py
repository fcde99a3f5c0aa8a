"""cellpipe: find every cell in microscope images and measure it.

The library is plain functions on numpy arrays, in the order data flows:

- :mod:`cellpipe.io` reads an image file into a 2-D array,
- :mod:`cellpipe.preprocess` makes the contrast gray image,
- :mod:`cellpipe.unet` predicts the edge-probability map,
- :mod:`cellpipe.segment` turns edges into one label per cell (markers + watershed),
- :mod:`cellpipe.measure` computes per-cell statistics,
- :mod:`cellpipe.synthetic` makes foam- and tissue-like images with exact ground truth.

It imports neither Luigi, nor the database, nor typer: those live in
``cellpipe.tasks``, ``cellpipe.db`` and ``cellpipe.cli``.
"""

__version__ = "0.1.0"
