"""Sets of synthetic images written to disk as PNGs, with their ground truth as label TIFFs.

:func:`write_samples` writes what :func:`cellpipe.synthetic.samples.synthetic_cells` draws;
:func:`truth_path` says where each image's labels go: by default a folder *beside* the
image folder, ``<folder>-truth/`` (:func:`truth_folder`), never inside it, so that
``cellpipe run`` on the image folder finds images only (it skips ``truth/`` and
``*-truth/`` folders anyway).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from cellpipe.io import write_labels_tiff, write_png
from cellpipe.synthetic.samples import KINDS, synthetic_cells

TRUTH_FOLDER = "truth"
#: Suffix of the default ground-truth folder beside an image folder.
TRUTH_SUFFIX = "-truth"
CORRUPT_NAME = "corrupt_truncated.png"


def truth_folder(image_folder: str | Path) -> Path:
    """Return the default ground-truth folder of ``image_folder``: ``<image_folder>-truth`` beside it.

    Examples
    --------
    >>> truth_folder("/data/2024-06-01").as_posix()
    '/data/2024-06-01-truth'
    """
    folder = Path(image_folder).absolute()
    return folder.with_name(folder.name + TRUTH_SUFFIX)


def truth_path(image_path: str | Path, truth_dir: str | Path | None = None) -> Path:
    """Return where :func:`write_samples` puts the label TIFF of ``image_path``.

    ``truth_dir`` as given to :func:`write_samples`; default :func:`truth_folder` of the image's folder.
    """
    image_path = Path(image_path)
    folder = truth_folder(image_path.parent) if truth_dir is None else Path(truth_dir)
    return folder / f"{image_path.stem}.tif"


def write_samples(
    folder: str | Path,
    n: int,
    *,
    kinds: Iterable[str] = KINDS,
    size: tuple[int, int] | int = (512, 512),
    seed: int = 0,
    corrupt: bool = False,
    truth_dir: str | Path | None = None,
    **options,
) -> list[Path]:
    """Write ``n`` synthetic images as PNGs and their labels as TIFFs; return the PNG paths.

    Images are named ``{kind}_{i:03d}.png`` and cycle through ``kinds``; image ``i`` uses
    seed ``seed + i``. Ground truth goes to ``TRUTH_DIR/{kind}_{i:03d}.tif`` (uint32
    labels, see :func:`truth_path`).

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
    truth_dir : str or Path, optional
        Folder of the label TIFFs, created when missing. Default: ``<folder>-truth``
        beside ``folder`` (:func:`truth_folder`).
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
        write_labels_tiff(truth_path(image_path, truth_dir), sample.labels)
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
