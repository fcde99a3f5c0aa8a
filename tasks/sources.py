"""Where the nightly batch finds images: listing a batch and reading an image's bytes.

A batch is listed once per process into :class:`Listing`: every image file with its
content hash (sha256 of its bytes), size and batch date. The content hash is the
image's identity everywhere downstream: in the task id that ``luigid`` deduplicates
on and in the database, so the same bytes are one image whatever their name.

Sources are named by URI. Local folders are implemented here; ``az://CONTAINER/PREFIX``
is recognised and refused with a clear message until :mod:`cellpipe.azure` is wired in
(the hook is :func:`list_batch` / :func:`read_source`: a blob source lists
``PREFIX/YYYY-MM-DD/`` for a dated batch and returns ``az://`` URIs that
:func:`read_source` downloads).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: File names (lower-cased suffixes) the batch picks up; the format is then recognised
#: from the content by :func:`cellpipe.io.read_image`, never from the name.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHUNK = 1 << 20


class SourceError(ValueError):
    """The input of a batch cannot be listed: missing folder, unsupported URI, ..."""


@dataclass(frozen=True)
class ImageRef:
    """One image file of a batch, as listed.

    Attributes
    ----------
    uri : str
        Where to read it: an absolute path (or, later, ``az://container/blob``).
    name : str
        Path relative to the input, with ``/`` separators: what reports show.
    content_hash : str
        sha256 of the file's bytes, 64 hex digits.
    size_bytes : int
        Size of the file.
    batch_date : datetime.date
        The batch the image belongs to: its ``YYYY-MM-DD`` folder, else the run's date.
    """

    uri: str
    name: str
    content_hash: str
    size_bytes: int
    batch_date: dt.date

    @property
    def stem(self) -> str:
        """Return the file name without folder and suffix (``a/b/foam_001.png`` → ``foam_001``)."""
        return PurePosixPath(self.name).stem


@dataclass(frozen=True)
class Listing:
    """The images of one batch.

    Attributes
    ----------
    images : tuple of ImageRef
        One per distinct content, in name order (the first name wins).
    duplicates : tuple of ImageRef
        Files whose bytes equal those of an image listed earlier; not processed again.
    unreadable : tuple of (str, str)
        ``(name, reason)`` of files that could not even be read to hash them.
    """

    images: tuple[ImageRef, ...] = ()
    duplicates: tuple[ImageRef, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()


def is_blob_uri(location: str) -> bool:
    """Return whether ``location`` names Azure Blob Storage (``az://``)."""
    return str(location).startswith("az://")


def list_batch(input: str, batch_date: dt.date, *, dated: bool) -> Listing:
    """Return the images of the batch of ``batch_date`` under ``input``.

    Parameters
    ----------
    input : str
        A folder (``az://CONTAINER/PREFIX`` later).
    batch_date : datetime.date
        The batch's date: with ``dated``, the images of ``INPUT/YYYY-MM-DD/``; without,
        the date given to images that are not in a dated folder.
    dated : bool
        True: only ``INPUT/YYYY-MM-DD/`` (a missing folder is an empty batch: a night
        without images). False: everything under ``INPUT/``; files in a dated
        sub-folder keep that folder's date.

    Notes
    -----
    Folders are walked recursively. Names starting with ``.`` or ``~`` are skipped,
    files and folders alike: copy images in under such a temporary name and rename
    them when complete, so that a half-copied file is never listed.

    Raises
    ------
    SourceError
        When ``input`` is empty, is not a folder, or is an ``az://`` URI.
    """
    if not input:
        raise SourceError("no input: give --input FOLDER or set input in the [cellpipe] section of luigi.cfg")
    if is_blob_uri(input):
        raise SourceError(
            f"{input}: az:// inputs are not wired into the nightly batch yet; "
            "copy the images to a local folder (or mount the container) and give its path"
        )
    root = Path(input).expanduser()
    if not root.is_dir():
        raise SourceError(f"input folder {root} does not exist or is not a folder")
    folder = root / batch_date.isoformat() if dated else root
    if not folder.is_dir():
        return Listing()
    images: dict[str, ImageRef] = {}
    duplicates, unreadable = [], []
    for path in _image_files(folder):
        name = path.relative_to(root).as_posix()
        try:
            content_hash, size = _hash_file(path)
        except OSError as error:
            unreadable.append((name, f"cannot read {path}: {error.strerror or error}"))
            continue
        ref = ImageRef(
            uri=str(path.resolve()),
            name=name,
            content_hash=content_hash,
            size_bytes=size,
            batch_date=batch_date if dated else _folder_date(name, batch_date),
        )
        if content_hash in images:
            duplicates.append(ref)
        else:
            images[content_hash] = ref
    return Listing(tuple(images.values()), tuple(duplicates), tuple(unreadable))


def read_source(uri: str) -> bytes:
    """Return the bytes of the image at ``uri`` (a path; ``az://`` later)."""
    if is_blob_uri(uri):
        raise SourceError(f"{uri}: az:// sources are not wired into the nightly batch yet")
    return Path(uri).read_bytes()


def _image_files(folder: Path) -> list[Path]:
    found = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not _hidden(d))
        for file_name in sorted(files):
            if not _hidden(file_name) and Path(file_name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(directory) / file_name)
    return sorted(found)


def _hidden(name: str) -> bool:
    return name.startswith((".", "~"))


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _folder_date(name: str, default: dt.date) -> dt.date:
    for part in PurePosixPath(name).parts[:-1]:
        if _DATE_FOLDER.match(part):
            try:
                return dt.date.fromisoformat(part)
            except ValueError:
                continue
    return default
