"""Sets of synthetic images written to disk as PNGs, with their ground truth as label TIFFs.

:func:`write_samples` writes what :func:`cellpipe.synthetic.samples.synthetic_cells` draws;
:func:`truth_path` says where each image's labels go (a ``truth/`` folder beside it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from cellpipe.io import write_labels_tiff, write_png
from cellpipe.synthetic.samples import KINDS, synthetic_cells

TRUTH_FOLDER = "truth"
CORRUPT_NAME = "corrupt_truncated.png"


def truth_path(image_path: str | Path) -> Path:
    """Return where :func:`write_samples` puts the label TIFF of ``image_path``."""
    image_path = Path(image_path)
    return image_path.parent / TRUTH_FOLDER / f"{image_path.stem}.tif"


def write_samples(
    folder: str | Path,
    n: int,
    *,
    kinds: Iterable[str] = KINDS,
    size: tuple[int, int] | int = (512, 512),
    seed: int = 0,
    corrupt: bool = False,
    **options,
) -> list[Path]:
    """Write ``n`` synthetic images as PNGs and their labels as TIFFs; return the PNG paths.

    Images are named ``{kind}_{i:03d}.png`` and cycle through ``kinds``; image ``i`` uses
    seed ``seed + i``. Ground truth goes to ``truth/{kind}_{i:03d}.tif`` (uint32 labels,
    see :func:`truth_path`).

    Parameters
    ----------
    folder : str or Path
        Output folder, created when missing. Existing files of the same names are replaced.
    n : int
        Number of images (>= 0).
    kinds : iterable of {"foam", "tissue"}
        Kinds to cycle through.
    size : (int, int) or int
        Height and width of each image.
    seed : int
        Seed of the first image.
    corrupt : bool
        Also write :data:`CORRUPT_NAME` (``corrupt_truncated.png``), a PNG cut in half, to show how the pipeline
        reports unreadable files. It is last in the returned list and has no truth file.
    **options
        Passed on to :func:`synthetic_cells` (``mean_cell_diameter``, ``dtype``, ...).

    Returns
    -------
    list of Path
        The image files written, in order.
    """
    kinds = tuple(kinds)
    if not kinds or any(kind not in KINDS for kind in kinds):
        raise ValueError(f"kinds must be a non-empty selection of {KINDS}, got {kinds}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        sample = synthetic_cells(size, kind=kind, seed=seed + i, **options)
        image_path = folder / f"{kind}_{i:03d}.png"
        write_png(image_path, sample.image)
        write_labels_tiff(truth_path(image_path), sample.labels)
        written.append(image_path)
    if corrupt:
        written.append(_write_truncated_png(folder / CORRUPT_NAME, size, seed))
    return written


def _write_truncated_png(path: Path, size, seed: int) -> Path:
    sample = synthetic_cells(size, kind="foam", seed=seed)
    write_png(path, sample.image)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
