"""Blob locations: ``az://CONTAINER/PREFIX`` and ``https://ACCOUNT.blob.core.windows.net/...`` URLs.

A :class:`BlobUrl` names a container and a "folder" (a name prefix) in it, and, for
``https://`` URLs, the storage account and an optional SAS token. ``az://`` URLs leave the
account to the environment (see :mod:`cellpipe.azure.auth`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cellpipe.azure.errors import InvalidBlobUrlError

SCHEME = "az"
# Container names: 3-63 characters, lowercase letters, digits and single hyphens
# ("$root" and "$web" are the two special containers).
_CONTAINER_NAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}|\$root|\$web)$")


@dataclass(frozen=True)
class BlobUrl:
    """A container, a name prefix in it and, optionally, the account and a SAS token.

    Attributes
    ----------
    container : str
        Container name.
    prefix : str
        Blob-name prefix, a "folder": empty, or ending in ``/``.
    account_url : str or None
        Blob endpoint of the account (``https://ACCOUNT.blob.core.windows.net``, or
        ``http://127.0.0.1:10000/devstoreaccount1`` for the emulator); ``None`` for
        ``az://`` URLs, whose account comes from the environment.
    account_name : str or None
        Storage account name, when the URL names one.
    sas_token : str or None
        Shared access signature from the URL's query string. Never shown by ``repr`` or
        ``str``.
    """

    container: str
    prefix: str = ""
    account_url: str | None = None
    account_name: str | None = None
    sas_token: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _CONTAINER_NAME.match(self.container):
            raise InvalidBlobUrlError(
                f"{self.container!r} is not a valid container name: use 3-63 lowercase letters, "
                "digits and single hyphens"
            )
        if self.prefix and not self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix + "/")

    def __str__(self) -> str:
        base = f"{SCHEME}://" if self.account_url is None else f"{self.account_url}/"
        return f"{base}{self.container}/{self.prefix}"

    def blob_name(self, name: str) -> str:
        """Return the full blob name of ``name`` inside this URL's prefix."""
        name = name.lstrip("/")
        if not name:
            raise InvalidBlobUrlError(f"empty blob name under {self}")
        return self.prefix + name

    def dated(self, date: dt.date | str) -> "BlobUrl":
        """Return the URL of the dated batch ``PREFIX/YYYY-MM-DD/``.

        ``date`` is a :class:`datetime.date` or an ISO string ``YYYY-MM-DD``.
        """
        if isinstance(date, str):
            try:
                date = dt.date.fromisoformat(date)
            except ValueError:
                raise InvalidBlobUrlError(f"batch date {date!r} is not YYYY-MM-DD") from None
        if isinstance(date, dt.datetime):
            date = date.date()
        return self.with_prefix(f"{self.prefix}{date.isoformat()}/")

    def with_prefix(self, prefix: str) -> "BlobUrl":
        """Return this URL with another prefix (same account, container and SAS)."""
        return BlobUrl(self.container, prefix, self.account_url, self.account_name, self.sas_token)

    def blob_url(self, blob_name: str) -> str:
        """Return the URL (without SAS) of the blob called ``blob_name`` in this container."""
        base = f"{SCHEME}://" if self.account_url is None else f"{self.account_url}/"
        return f"{base}{self.container}/{blob_name}"


def parse_blob_url(url: str | BlobUrl) -> BlobUrl:
    """Return the :class:`BlobUrl` named by ``url``.

    Parameters
    ----------
    url : str or BlobUrl
        ``az://CONTAINER/PREFIX``, ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX?SAS``
        or an emulator URL ``http://127.0.0.1:10000/ACCOUNT/CONTAINER/PREFIX``.

    Returns
    -------
    BlobUrl
        The container, the prefix (a folder, ending in ``/``) and the account if named.

    Raises
    ------
    InvalidBlobUrlError
        When the URL is of another scheme or names no container. The message never
        contains the SAS token.

    Examples
    --------
    >>> parse_blob_url("az://images/plates/2024")
    BlobUrl(container='images', prefix='plates/2024/', account_url=None, account_name=None)
    """
    if isinstance(url, BlobUrl):
        return url
    if not isinstance(url, str):
        raise InvalidBlobUrlError(f"a blob URL must be a string, not {type(url).__name__}")
    parts = urlsplit(url.strip())
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"  # never the query: it may be a SAS
    if parts.scheme == SCHEME:
        if parts.query:
            raise InvalidBlobUrlError(
                f"{shown}: az:// URLs take no query string; put a SAS token in AZURE_STORAGE_SAS_TOKEN "
                "or use an https:// URL"
            )
        return _checked(shown, parts.netloc, parts.path, None, None, None)
    if parts.scheme not in ("https", "http"):
        raise InvalidBlobUrlError(
            f"{shown or url[:40]!r} is not a blob URL: use az://CONTAINER/PREFIX or "
            "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX"
        )
    host = parts.hostname or ""
    path = parts.path
    if _is_path_style(host):
        # Emulator and IP endpoints put the account in the path: /ACCOUNT/CONTAINER/PREFIX.
        account_name, _, path = path.lstrip("/").partition("/")
        account_url = f"{parts.scheme}://{parts.netloc}/{account_name}"
    else:
        account_name = host.split(".", 1)[0]
        account_url = f"{parts.scheme}://{parts.netloc}"
    if not account_name:
        raise InvalidBlobUrlError(f"{shown}: the URL names no storage account")
    return _checked(shown, *_split_container(path), account_url, account_name, parts.query or None)


def _split_container(path: str) -> tuple[str, str]:
    container, _, prefix = path.lstrip("/").partition("/")
    return container, "/" + prefix


def _checked(
    shown: str,
    container: str,
    path: str,
    account_url: str | None,
    account_name: str | None,
    sas_token: str | None,
) -> BlobUrl:
    if not container:
        raise InvalidBlobUrlError(f"{shown}: the URL names no container (az://CONTAINER/PREFIX)")
    try:
        return BlobUrl(container, path.lstrip("/"), account_url, account_name, sas_token)
    except InvalidBlobUrlError as error:
        raise InvalidBlobUrlError(f"{shown}: {error}") from None


def _is_path_style(host: str) -> bool:
    # ACCOUNT.blob.core.windows.net (and the sovereign clouds' ACCOUNT.blob.core.*) name the
    # account in the host; the emulator, IP addresses and localhost name it in the path.
    return ".blob." not in host
