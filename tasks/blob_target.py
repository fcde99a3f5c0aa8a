"""Blobs as Luigi targets, and the blob stores of one worker process.

:class:`BlobTarget` is one blob named by its URL (``az://CONTAINER/NAME``): it exists
when committed, reads verified against its Content-MD5 and writes atomically (blocks
staged, then one commit: never a half blob under its name). Luigi's contrib
``AzureBlobTarget`` knows neither identity credentials nor our atomic uploads.

Stores are opened once per process and container (:func:`blob_store`), with the
credentials of the ``AZURE_STORAGE_*`` variables (:func:`cellpipe.settings.azure_environ`)
and the retry policy of the settings (:func:`client_options`): azure-core retries each
request; :mod:`cellpipe.tasks.retry` retries the whole call when the store stays
unreachable. A worker's :class:`~cellpipe.tasks.context.BatchContext` calls
:func:`use_settings`; a process without one uses :meth:`Settings.load`.
"""

from __future__ import annotations

import dataclasses
import io
import mimetypes
from typing import TYPE_CHECKING, Iterable

import luigi

from cellpipe.settings import Settings, azure_environ

if TYPE_CHECKING:
    from cellpipe.azure import BlobInfo, BlobStore, BlobUrl, ClientOptions

#: Retries of the first requests of a run (listing the input, checking the output): a
#: store that does not answer at the start fails the run within seconds, not minutes.
START_RETRIES = 2

_STORES: dict[tuple, "BlobStore"] = {}
_OPTIONS: "ClientOptions | None" = None


def client_options(settings: Settings) -> "ClientOptions":
    """Return the client options (retries, timeouts) that ``settings`` ask for."""
    from cellpipe.azure import ClientOptions

    return ClientOptions(retry_total=settings.storage_retries)


def use_settings(settings: Settings) -> None:
    """Make this process open its stores with the options of ``settings`` (closing stores opened otherwise)."""
    global _OPTIONS
    options = client_options(settings)
    if options != _OPTIONS:
        close_stores()
        _OPTIONS = options


def current_options() -> "ClientOptions":
    """Return the client options of this process's stores."""
    global _OPTIONS
    if _OPTIONS is None:
        _OPTIONS = client_options(Settings.load())
    return _OPTIONS


def start_options() -> "ClientOptions":
    """Return :func:`current_options` with at most :data:`START_RETRIES` retries."""
    options = current_options()
    return dataclasses.replace(options, retry_total=min(options.retry_total, START_RETRIES))


def blob_store(url: "str | BlobUrl") -> "BlobStore":
    """Return this process's store for the container of ``url``, opened once at the container's root.

    The store is reused by every blob of the container (one connection pool), and
    reopened when the credentials in the environment or the options change.
    """
    from cellpipe.azure import open_store, parse_blob_url

    location = parse_blob_url(url)
    environ = azure_environ()
    options = current_options()
    # Secrets only as a hash: the key is what identifies "the same credentials".
    key = (location.account_url, location.container, hash(location.sas_token),
           hash(frozenset(environ.items())), options)
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = open_store(location.with_prefix(""), environ, options=options)
    return store


def close_stores() -> None:
    """Close every store this process opened."""
    while _STORES:
        _, store = _STORES.popitem()
        store.close()


class BlobTarget(luigi.Target):
    """One blob of Azure Blob Storage, named by its URL.

    Parameters
    ----------
    url : str
        ``az://CONTAINER/NAME`` (or an ``https://`` blob URL).

    Attributes
    ----------
    url : str
        The blob's URL, without any SAS token.
    name : str
        Full blob name in its container.

    Examples
    --------
    >>> target = BlobTarget("az://results/2024-06-01/foam_001_cells.csv")     # doctest: +SKIP
    >>> with target.open("w") as csv_file:                                   # doctest: +SKIP
    ...     csv_file.write(b"label,area\\n1,42\\n")
    >>> target.exists()                                                      # doctest: +SKIP
    True
    """

    def __init__(self, url: str) -> None:
        from cellpipe.azure import InvalidBlobUrlError, parse_blob_url

        self._location = parse_blob_url(url)
        self.name = self._location.prefix.rstrip("/")
        if not self.name:
            raise InvalidBlobUrlError(f"{self._location} names a container or folder, not a blob")
        self.url = self._location.blob_url(self.name)

    def __repr__(self) -> str:
        return f"BlobTarget({self.url!r})"

    @property
    def store(self) -> "BlobStore":
        """Return the store of this blob's container."""
        return blob_store(self._location)

    def exists(self) -> bool:
        """Return whether the blob is committed (staged, uncommitted blocks do not count)."""
        return self.store.exists(self.name)

    def read(self) -> bytes:
        """Return the blob's bytes, verified against its stored Content-MD5."""
        return self.store.download(self.name)

    def write(self, data: bytes | Iterable[bytes], *, content_type: str | None = None) -> "BlobInfo":
        """Commit ``data`` as this blob, whole or not at all; return the committed blob.

        ``content_type`` defaults to the type of the name's suffix (``image/tiff``, ``text/csv``...).
        """
        content_type = content_type or mimetypes.guess_type(self.name)[0] or "application/octet-stream"
        return self.store.upload_atomic(self.name, data, content_type=content_type)

    def open(self, mode: str = "r") -> io.BytesIO:
        """Return the blob as a binary file: ``"r"`` reads it, ``"w"`` commits what was written on close.

        A ``"w"`` file used as a context manager commits nothing when the block raises.
        """
        if mode in ("r", "rb"):
            return io.BytesIO(self.read())
        if mode in ("w", "wb"):
            return _AtomicBlobWriter(self)
        raise ValueError(f"mode must be 'r' or 'w' (binary), got {mode!r}")


class _AtomicBlobWriter(io.BytesIO):
    """Collects bytes and commits them as the target's blob on close; discards them on error."""

    def __init__(self, target: BlobTarget) -> None:
        super().__init__()
        self._target = target
        self._discard = False

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._discard:
                self._target.write(self.getvalue())
        finally:
            super().close()

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._discard = exc_type is not None
        self.close()

    def __del__(self) -> None:
        self._discard = True  # a writer never closed was abandoned: commit nothing
        super().__del__()
