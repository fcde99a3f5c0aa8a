"""Azure Blob Storage: cellpipe's only door to Azure.

- :mod:`cellpipe.azure.url`: ``az://CONTAINER/PREFIX`` and ``https://`` blob URLs,
- :mod:`cellpipe.azure.auth`: which account and credential a URL is opened with
  (connection string, account key, SAS token, or ``DefaultAzureCredential``), and the
  retry and timeout options of the clients,
- :mod:`cellpipe.azure.blob`: listing, MD5-verified downloads and atomic uploads,
- :mod:`cellpipe.azure.errors`: :class:`BlobStorageError` and its subclasses.

Needs the ``azure`` extra (``pip install 'cellpipe[azure]'``).
"""

from cellpipe.azure.auth import ClientOptions, StorageAuth, resolve_auth
from cellpipe.azure.blob import DEFAULT_MAX_BYTES, BlobInfo, BlobStore, content_md5, content_sha256, open_store
from cellpipe.azure.errors import (
    BlobNotFoundError,
    BlobStorageError,
    BlobTooLargeError,
    ContainerNotFoundError,
    ContentMismatchError,
    InvalidBlobUrlError,
    StorageAuthenticationError,
    StorageConfigurationError,
    StorageUnreachableError,
)
from cellpipe.azure.url import BlobUrl, parse_blob_url

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BlobInfo",
    "BlobNotFoundError",
    "BlobStorageError",
    "BlobStore",
    "BlobTooLargeError",
    "BlobUrl",
    "ClientOptions",
    "ContainerNotFoundError",
    "ContentMismatchError",
    "InvalidBlobUrlError",
    "StorageAuth",
    "StorageAuthenticationError",
    "StorageConfigurationError",
    "StorageUnreachableError",
    "content_md5",
    "content_sha256",
    "open_store",
    "parse_blob_url",
    "resolve_auth",
]
