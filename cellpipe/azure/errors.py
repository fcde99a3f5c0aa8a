"""The errors of :mod:`cellpipe.azure`: one base class, one subclass per thing a user can fix.

Azure SDK exceptions are translated at the edge of this package by :func:`translated`.
Their own messages are never copied: a connection error's message holds the request
URL, and with it a SAS token. Ours name the account endpoint, the container or blob,
the service's error code and what to do.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)


class BlobStorageError(Exception):
    """Something went wrong talking to Azure Blob Storage; the message says what to do.

    Attributes
    ----------
    status_code : int or None
        HTTP status of the failed request, when there was a response.
    error_code : str or None
        The storage service's error code (``ContainerNotFound``, ``AuthenticationFailed``...).
    """

    def __init__(self, message: str, *, status_code: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code


class InvalidBlobUrlError(BlobStorageError, ValueError):
    """A URL is not ``az://CONTAINER/PREFIX`` or an ``https://`` blob URL."""


class StorageConfigurationError(BlobStorageError):
    """The environment names no storage account, or contradicts the URL."""


class ContainerNotFoundError(BlobStorageError):
    """The container does not exist in the account."""


class BlobNotFoundError(BlobStorageError):
    """The blob does not exist in the container."""


class StorageAuthenticationError(BlobStorageError):
    """The credentials were refused, or grant no access to the resource."""


class StorageUnreachableError(BlobStorageError):
    """The account endpoint did not answer (connection refused, name not found, timeout)."""


class ContentMismatchError(BlobStorageError):
    """The downloaded bytes do not match the blob's stored Content-MD5."""


class BlobTooLargeError(BlobStorageError):
    """The blob is larger than the caller's size limit; nothing was downloaded past the first chunk."""


_AUTH_HINT = (
    "check AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT/AZURE_STORAGE_KEY or "
    "AZURE_STORAGE_SAS_TOKEN, or the role assignment of the identity (`az login`, managed identity)"
)


@contextlib.contextmanager
def translated(endpoint: str, container: str, blob: str | None = None) -> Iterator[None]:
    """Re-raise Azure SDK errors inside the block as :class:`BlobStorageError` subclasses.

    Parameters
    ----------
    endpoint : str
        Account endpoint without any credential, named in the messages.
    container : str
        Container the operation is about.
    blob : str, optional
        Blob name the operation is about.
    """
    try:
        yield
    except BlobStorageError:
        raise
    except AzureError as error:
        # "from None": the SDK's own message (kept in a chained traceback) may hold a SAS.
        raise _translate(error, endpoint, container, blob) from None


def _translate(error: AzureError, endpoint: str, container: str, blob: str | None) -> BlobStorageError:
    where = f"{endpoint}/{container}" + (f"/{blob}" if blob else "")
    code = getattr(error, "error_code", None)
    code = str(getattr(code, "value", code)) if code is not None else None  # enum or str
    status = getattr(getattr(error, "response", None), "status_code", None)
    fields = {"status_code": status, "error_code": code}
    if isinstance(error, ServiceRequestError | ServiceResponseError) and status is None:
        return StorageUnreachableError(
            f"cannot reach the blob service at {endpoint} ({_reason(error)}) after retries; "
            "check the account name or endpoint, the network, and that the service is running",
            **fields,
        )
    if code == "ContainerNotFound" or (code is None and isinstance(error, ResourceNotFoundError) and not blob):
        return ContainerNotFoundError(
            f"container {container!r} does not exist at {endpoint}; create it or fix the URL", **fields
        )
    if isinstance(error, ResourceNotFoundError):
        return BlobNotFoundError(f"blob {where} does not exist", **fields)
    if isinstance(error, ClientAuthenticationError) or status in (401, 403):
        return StorageAuthenticationError(
            f"access to {where} was refused ({code or status or 'no credential'}); {_AUTH_HINT}", **fields
        )
    if isinstance(error, HttpResponseError):
        return BlobStorageError(f"request on {where} failed: HTTP {status} {code or ''}".rstrip(), **fields)
    return BlobStorageError(f"request on {where} failed: {type(error).__name__}", **fields)


def _reason(error: AzureError) -> str:
    """Return a short, secret-free reason of a connection error."""
    text = str(error).lower()
    for marker in ("connection refused", "timed out", "name or service not known", "connection reset"):
        if marker in text:
            return marker
    return type(error).__name__
