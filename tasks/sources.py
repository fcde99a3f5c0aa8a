"""Where the nightly batch finds images: listing a batch and reading an image's bytes.

A batch is listed once per process into :class:`Listing`: every image file with its
content hash (sha256 of its bytes), size and batch date. The content hash is the
image's identity everywhere downstream: in the task id that ``luigid`` deduplicates
on and in the database, so the same bytes are one image whatever their name.

Sources are named by URI: a local folder, or ``az://CONTAINER/PREFIX`` in Azure Blob
Storage. Blobs are treated exactly like files: the same names are picked up (image
suffixes, no hidden names), a dated batch is ``PREFIX/YYYY-MM-DD/``, and each blob is
downloaded (Content-MD5 verified) and hashed when listed, so that its content hash,
not its name, is its identity. Its URI, ``az://CONTAINER/NAME``, is what the database
records as the image's source; :func:`read_source` downloads it again to process it.
A blob is downloaded to be hashed only once per version (URL and etag): its hash is
kept in the :mod:`cellpipe.tasks.hash_cache` file of the ``cache_dir`` setting.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterator

from cellpipe.synthetic import TRUTH_FOLDER, TRUTH_SUFFIX

if TYPE_CHECKING:
    from cellpipe.azure import BlobInfo, BlobStore
    from cellpipe.tasks.hash_cache import BlobHashCache

#: File names (lower-cased suffixes) the batch picks up; the format is then recognised
#: from the content by :func:`cellpipe.io.read_image`, never from the name.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHUNK = 1 << 20
#: Blobs downloaded and hashed at once while listing a container.
HASH_THREADS = 8


class SourceError(ValueError):
    """The input of a batch cannot be listed, or its output used: missing folder or container, refused credentials."""


class SourceUnreachableError(SourceError):
    """The storage holding the input or output did not answer, even after retries: try again later."""


@dataclass(frozen=True)
class ImageRef:
    """One image file of a batch, as listed.

    Attributes
    ----------
    uri : str
        Where to read it: an absolute path or ``az://CONTAINER/BLOB``.
    name : str
        Path (blob name) relative to the input, with ``/`` separators: what reports show.
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


def list_batch(input: str, batch_date: dt.date, *, dated: bool,
               cache_dir: str | os.PathLike[str] | None = None) -> Listing:
    """Return the images of the batch of ``batch_date`` under ``input``.

    Parameters
    ----------
    input : str
        A folder or ``az://CONTAINER/PREFIX``.
    batch_date : datetime.date
        The batch's date: with ``dated``, the images of ``INPUT/YYYY-MM-DD/``; without,
        the date given to images that are not in a dated folder.
    dated : bool
        True: only ``INPUT/YYYY-MM-DD/`` (a missing folder is an empty batch: a night
        without images). False: everything under ``INPUT/``; files in a dated
        sub-folder keep that folder's date.
    cache_dir : str or os.PathLike, optional
        Folder of the blob hash cache (``az://`` inputs only). Default: the ``cache_dir``
        setting of :meth:`cellpipe.settings.Settings.load`.

    Notes
    -----
    Folders are walked recursively. Names starting with ``.`` or ``~`` are skipped,
    files and folders alike: copy images in under such a temporary name and rename
    them when complete, so that a half-copied file is never listed. Folders named
    ``truth`` or ``*-truth`` hold ground-truth labels (``cellpipe synth`` writes
    them), not images, and are skipped too. Blobs are listed
    by prefix, with the same rules; blob uploads are atomic anyway. A blob whose URL
    and etag are in the hash cache is not downloaded; a cache file that cannot be
    used is warned about and ignored.

    Raises
    ------
    SourceError
        When ``input`` is empty or is not a folder; for ``az://`` inputs, when the URL is
        invalid, the container does not exist or the credentials are refused.
    SourceUnreachableError
        When the storage account does not answer.
    """
    if not input:
        raise SourceError("no input: give --input FOLDER or set input in the [cellpipe] section of luigi.cfg")
    if is_blob_uri(input):
        return _list_blobs(input, batch_date, dated, cache_dir)
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
    """Return the bytes of the image at ``uri``: a path, or a blob (``az://``, Content-MD5 verified).

    Raises
    ------
    FileNotFoundError
        When the file, the blob or its container is gone.
    cellpipe.azure.BlobStorageError
        For other storage errors (``StorageUnreachableError`` is retried by the caller).
    """
    if is_blob_uri(uri):
        from cellpipe.azure import BlobNotFoundError, ContainerNotFoundError
        from cellpipe.tasks.blob_target import BlobTarget

        try:
            return BlobTarget(uri).read()
        except (BlobNotFoundError, ContainerNotFoundError) as error:
            raise FileNotFoundError(str(error)) from None
    return Path(uri).read_bytes()


@contextlib.contextmanager
def storage_errors(doing: str) -> Iterator[None]:
    """Re-raise storage errors inside the block as :class:`SourceError` (or :class:`SourceUnreachableError`).

    ``doing`` says what failed, e.g. ``"cannot list az://images/plates/"``.
    """
    from cellpipe.azure import BlobStorageError, StorageUnreachableError

    try:
        yield
    except StorageUnreachableError as error:
        raise SourceUnreachableError(f"{doing}: {error}") from None
    except BlobStorageError as error:  # missing container, refused credentials, no account configured
        raise SourceError(f"{doing}: {error}") from None


def _list_blobs(input: str, batch_date: dt.date, dated: bool, cache_dir: str | os.PathLike[str] | None) -> Listing:
    from cellpipe.azure import open_store, parse_blob_url
    from cellpipe.settings import Settings, azure_environ
    from cellpipe.tasks.blob_target import blob_store, start_options
    from cellpipe.tasks.hash_cache import BlobHashCache

    with storage_errors(f"cannot list {input}"):
        location = parse_blob_url(input)
        # Its own store, with few retries: a store that does not answer fails the run at once.
        with open_store(location, azure_environ(), options=start_options()) as lister:
            blobs = [blob for blob in lister.list_images(date=batch_date if dated else None)
                     if _is_image_name(blob.name[len(location.prefix):])]
        store = blob_store(location)
        folder = Settings.load().cache_dir if cache_dir is None else cache_dir
        with BlobHashCache.in_folder(folder) as cache:
            hashed = _hash_blobs(store, blobs, cache)
    images: dict[str, ImageRef] = {}
    duplicates, unreadable = [], []
    for blob, (content_hash, reason) in zip(blobs, hashed):
        name = blob.name[len(location.prefix):]
        if reason:
            unreadable.append((name, reason))
            continue
        if content_hash is None:
            continue  # deleted since it was listed: not part of the batch
        ref = ImageRef(uri=blob.url, name=name, content_hash=content_hash, size_bytes=blob.size,
                       batch_date=batch_date if dated else _folder_date(name, batch_date))
        if content_hash in images:
            duplicates.append(ref)
        else:
            images[content_hash] = ref
    return Listing(tuple(images.values()), tuple(duplicates), tuple(unreadable))


def _hash_blobs(store: BlobStore, blobs: list[BlobInfo], cache: BlobHashCache) -> list[tuple[str | None, str]]:
    """Return :func:`_hash_blob`'s answer for each blob, downloading only the versions ``cache`` does not know."""
    from cellpipe.tasks.hash_cache import CachedHash

    # The account is part of the URL: the same container and name in two accounts are two blobs.
    versions = [(f"{store.auth.account_url.rstrip('/')}/{blob.container}/{blob.name}", blob.etag) for blob in blobs]
    known = cache.get_many(versions)
    hashed: list[tuple[str | None, str] | None] = [
        (known[version].sha256, "") if version in known and known[version].size_bytes == blob.size else None
        for version, blob in zip(versions, blobs)]
    missing = [index for index, answer in enumerate(hashed) if answer is None]
    # A blob rewritten between listing and download is cached with its new bytes under its
    # old etag: harmless, as that etag is never listed again.
    learned: dict[tuple[str, str], CachedHash] = {}
    pool = ThreadPoolExecutor(HASH_THREADS)
    try:
        for index, (content_hash, reason) in zip(missing, pool.map(lambda i: _hash_blob(store, blobs[i]), missing)):
            hashed[index] = (content_hash, reason)
            if content_hash is not None:  # unreadable and deleted blobs are asked again next time
                learned[versions[index]] = CachedHash(content_hash, blobs[index].size)
    finally:
        pool.shutdown(cancel_futures=True)  # a store gone down: do not try the remaining blobs
        cache.put_many(learned)  # hashed before an outage: not downloaded again by the rerun
    return hashed  # type: ignore[return-value]  # every None was replaced


def _hash_blob(store: BlobStore, blob: BlobInfo) -> tuple[str | None, str]:
    """Return ``(content hash, "")``, ``(None, reason)`` for a blob that cannot be read, ``(None, "")`` if gone."""
    from cellpipe.azure import BlobNotFoundError, BlobTooLargeError, ContentMismatchError
    from cellpipe.tasks.retry import retrying

    try:
        return hashlib.sha256(retrying(store.download, service="storage")(blob)).hexdigest(), ""
    except BlobNotFoundError:
        return None, ""
    except (ContentMismatchError, BlobTooLargeError) as error:
        return None, str(error)


def _is_image_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not any(_hidden(part) for part in parts) and \
        not any(_is_truth_folder(part) for part in parts[:-1]) and \
        PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def _image_files(folder: Path) -> list[Path]:
    found = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not _hidden(d) and not _is_truth_folder(d))
        for file_name in sorted(files):
            if not _hidden(file_name) and Path(file_name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(directory) / file_name)
    return sorted(found)


def _hidden(name: str) -> bool:
    return name.startswith((".", "~"))


def _is_truth_folder(name: str) -> bool:
    return name == TRUTH_FOLDER or name.endswith(TRUTH_SUFFIX)


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
