"""Images in, results out: listing, verified downloads and atomic uploads of blobs.

A :class:`BlobStore` is one container and prefix of a storage account opened with the
credentials :func:`~cellpipe.azure.auth.resolve_auth` chose. It lists the blobs under the
prefix, downloads a blob into memory (checking its stored Content-MD5) and uploads a blob
so that it appears whole under its name or not at all.

Examples
--------
>>> store = open_store("az://microscopes/lab-3", os.environ)            # doctest: +SKIP
>>> for blob in store.list_images(date="2024-05-01"):                   # doctest: +SKIP
...     image_bytes = store.download(blob)
...     store.upload_atomic(f"{stem}_cells.csv", csv_bytes, content_type="text/csv")
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings

from cellpipe.azure.auth import MiB, ClientOptions, StorageAuth, resolve_auth
from cellpipe.azure.errors import (
    BlobTooLargeError,
    ContentMismatchError,
    InvalidBlobUrlError,
    translated,
)
from cellpipe.azure.url import BlobUrl, parse_blob_url

DEFAULT_MAX_BYTES = 1024 * MiB
"""Default size limit of :meth:`BlobStore.download`: 1 GiB, far above any microscope image."""


def content_sha256(data: bytes | bytearray | memoryview) -> str:
    """Return the content hash of an image as the database records it: hex SHA-256 of the bytes."""
    return hashlib.sha256(data).hexdigest()


def content_md5(data: bytes | bytearray | memoryview) -> bytes:
    """Return the 16-byte MD5 digest of ``data``, as stored in a blob's Content-MD5."""
    return hashlib.md5(data, usedforsecurity=False).digest()


@dataclass(frozen=True)
class BlobInfo:
    """One blob as listed: its name and the properties that identify its content.

    Attributes
    ----------
    container : str
        Container of the blob.
    name : str
        Full blob name in the container (prefix included).
    size : int
        Size in bytes.
    etag : str
        Entity tag; changes whenever the blob is rewritten.
    content_md5 : bytes or None
        Stored Content-MD5 (16 bytes), when the uploader set one.
    last_modified : datetime.datetime
        Time of the last write (UTC).
    url : str
        ``az://CONTAINER/NAME`` (or the ``https://`` form), without credentials.
    """

    container: str
    name: str
    size: int
    etag: str
    content_md5: bytes | None
    last_modified: dt.datetime
    url: str = field(compare=False)


class BlobStore:
    """One container and prefix of an Azure Storage account, opened with its credentials.

    Parameters
    ----------
    url : str or BlobUrl
        ``az://CONTAINER/PREFIX`` or an ``https://`` blob URL.
    auth : StorageAuth
        Account endpoint and credential (see :func:`open_store`).
    options : ClientOptions, optional
        Retries, timeouts and transfer sizes.

    Notes
    -----
    ``repr`` and ``str`` name the URL and the authentication method, never a secret.
    A store holds an HTTP connection pool: reuse it, and :meth:`close` it (or use it as a
    context manager) when done.
    """

    def __init__(self, url: str | BlobUrl, auth: StorageAuth, options: ClientOptions | None = None):
        self.url = parse_blob_url(url)
        self.auth = auth
        self.options = options or ClientOptions()
        self._service = auth.service_client(self.options)
        self._container: ContainerClient = self._service.get_container_client(self.url.container)

    def __repr__(self) -> str:
        return f"BlobStore({str(self.url)!r}, method={self.auth.method!r})"

    def __str__(self) -> str:
        return f"{self.url} via {self.auth}"

    def __enter__(self) -> "BlobStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections of this store."""
        self._container.close()
        self._service.close()

    def list_images(
        self, *, date: dt.date | str | None = None, exclude: str | BlobUrl | None = None
    ) -> Iterator[BlobInfo]:
        """Yield every blob under the store's prefix, in name order.

        Parameters
        ----------
        date : datetime.date or str, optional
            List only the dated batch ``PREFIX/YYYY-MM-DD/``.
        exclude : str or BlobUrl, optional
            A location to leave out, typically the results prefix when it lies under the
            input prefix of the same container.

        Yields
        ------
        BlobInfo
            Every blob, whatever its type: a blob that is not an image is the caller's to
            report. Folder markers (names ending in ``/``, or ``hdi_isfolder`` metadata of
            hierarchical-namespace accounts) are skipped.

        Raises
        ------
        ContainerNotFoundError, StorageAuthenticationError, StorageUnreachableError
        """
        where = self.url if date is None else self.url.dated(date)
        excluded = self._excluded_prefix(exclude)
        with translated(self.auth.account_url, where.container):
            for blob in self._container.list_blobs(name_starts_with=where.prefix or None, include=["metadata"]):
                if _is_folder_marker(blob) or (excluded is not None and blob.name.startswith(excluded)):
                    continue
                yield self._info(blob)

    def download(self, blob: BlobInfo | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        """Return the content of a blob, verified against its stored Content-MD5.

        Parameters
        ----------
        blob : BlobInfo or str
            A listed blob, its full name in the container, or its URL (``az://`` or
            ``https://``, same container).
        max_bytes : int
            Refuse blobs larger than this many bytes: a listed blob before any request,
            another after the first chunk (``ClientOptions.chunk_size``).

        Returns
        -------
        bytes
            The blob's content (empty for a zero-byte blob).

        Raises
        ------
        BlobTooLargeError
            The blob is larger than ``max_bytes``.
        ContentMismatchError
            The bytes do not hash to the blob's stored Content-MD5.
        BlobNotFoundError, ContainerNotFoundError, StorageAuthenticationError, StorageUnreachableError
        """
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        name = self._blob_name(blob)
        if isinstance(blob, BlobInfo) and blob.size > max_bytes:
            raise self._too_large(name, blob.size, max_bytes)
        with translated(self.auth.account_url, self.url.container, name):
            downloader = self._container.get_blob_client(name).download_blob(
                max_concurrency=self.options.max_concurrency
            )
            if downloader.size > max_bytes:
                raise self._too_large(name, downloader.size, max_bytes)
            buffer = io.BytesIO()
            received = downloader.readinto(buffer)
        content = buffer.getvalue()  # no copy: BytesIO hands over its buffer
        if received != downloader.size or len(content) != downloader.size:
            raise ContentMismatchError(
                f"blob {self.url.blob_url(name)}: received {len(content)} of {downloader.size} bytes; "
                "download it again"
            )
        stored_md5 = downloader.properties.content_settings.content_md5
        if stored_md5 and bytes(stored_md5) != content_md5(content):
            raise ContentMismatchError(
                f"blob {self.url.blob_url(name)}: content does not match its stored Content-MD5 "
                f"({bytes(stored_md5).hex()} stored, {content_md5(content).hex()} received); the blob is "
                "corrupt or was rewritten without updating Content-MD5: upload it again"
            )
        return content

    def upload_atomic(
        self,
        name: str,
        data: bytes | bytearray | memoryview | Iterable[bytes],
        *,
        content_type: str = "application/octet-stream",
    ) -> BlobInfo:
        """Write a blob under the store's prefix so that it is visible whole or not at all.

        The content is staged as uncommitted blocks, then committed by one block-list
        request: until that commit, readers see the previous blob under ``name`` (or
        none). Uploading the same name again replaces the blob (idempotent overwrite).

        Parameters
        ----------
        name : str
            Blob name relative to the store's prefix, e.g. ``"img001_labels.tif"``.
        data : bytes-like or iterable of bytes
            The content, whole or in chunks (each chunk is staged as it comes).
        content_type : str
            MIME type recorded on the blob (``image/tiff``, ``image/png``, ``text/csv``...).

        Returns
        -------
        BlobInfo
            The committed blob, with its Content-MD5 set.
        """
        full_name = self.url.blob_name(name)
        chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        client = self._container.get_blob_client(full_name)
        # Block ids must all have one length within a blob, uncommitted ones included.
        attempt = uuid.uuid4().hex[:16]
        md5 = hashlib.md5(usedforsecurity=False)
        block_list: list[BlobBlock] = []
        size = 0
        with translated(self.auth.account_url, self.url.container, full_name):
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                md5.update(view)
                size += len(view)
                for start in range(0, len(view), self.options.block_size):
                    block = view[start : start + self.options.block_size]
                    block_id = base64.b64encode(f"{attempt}{len(block_list):08d}".encode()).decode()
                    client.stage_block(block_id, bytes(block), validate_content=True)
                    block_list.append(BlobBlock(block_id))
            settings = ContentSettings(content_type=content_type, content_md5=bytearray(md5.digest()))
            committed = client.commit_block_list(block_list, content_settings=settings)
        return BlobInfo(
            container=self.url.container,
            name=full_name,
            size=size,
            etag=committed["etag"],
            content_md5=md5.digest(),
            last_modified=committed["last_modified"],
            url=self.url.blob_url(full_name),
        )

    def exists(self, name: str) -> bool:
        """Return whether a blob called ``name`` (full name in the container) is committed."""
        with translated(self.auth.account_url, self.url.container, name):
            return bool(self._container.get_blob_client(name).exists())

    def _info(self, blob: Any) -> BlobInfo:
        md5 = blob.content_settings.content_md5
        return BlobInfo(
            container=self.url.container,
            name=blob.name,
            size=int(blob.size),
            etag=blob.etag,
            content_md5=bytes(md5) if md5 else None,
            last_modified=blob.last_modified,
            url=self.url.blob_url(blob.name),
        )

    def _blob_name(self, blob: BlobInfo | str) -> str:
        if isinstance(blob, BlobInfo):
            name, container = blob.name, blob.container
        elif "://" in blob:
            location = parse_blob_url(blob)
            name, container = location.prefix.rstrip("/"), location.container
        else:
            name, container = blob, self.url.container
        if container != self.url.container:
            raise InvalidBlobUrlError(f"blob {blob} is not in container {self.url.container!r} of {self.url}")
        if not name:
            raise InvalidBlobUrlError(f"no blob name given in {blob!r} for {self.url}")
        return name

    def _excluded_prefix(self, exclude: str | BlobUrl | None) -> str | None:
        if exclude is None:
            return None
        location = parse_blob_url(exclude)
        same_account = location.account_url is None or location.account_url == self.url.account_url
        if same_account and location.container == self.url.container and location.prefix:
            return location.prefix
        return None

    def _too_large(self, name: str, size: int, max_bytes: int) -> BlobTooLargeError:
        return BlobTooLargeError(
            f"blob {self.url.blob_url(name)} is {size} bytes, over the limit of {max_bytes} bytes; "
            "raise the limit if this blob is meant to be read"
        )


def open_store(
    url: str | BlobUrl,
    environ: Mapping[str, str],
    *,
    options: ClientOptions | None = None,
) -> BlobStore:
    """Return a :class:`BlobStore` for ``url``, authenticated the way Azure users expect.

    Parameters
    ----------
    url : str or BlobUrl
        ``az://CONTAINER/PREFIX`` or ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX[?SAS]``.
    environ : Mapping[str, str]
        Where ``AZURE_STORAGE_*`` variables are read (see :mod:`cellpipe.azure.auth`).
    options : ClientOptions, optional
        Retries, timeouts and transfer sizes.

    No request is made: errors surface on the first operation.
    """
    return BlobStore(url, resolve_auth(url, environ), options)


def _is_folder_marker(blob: Any) -> bool:
    metadata = blob.metadata or {}
    return blob.name.endswith("/") or str(metadata.get("hdi_isfolder", "")).lower() == "true"
