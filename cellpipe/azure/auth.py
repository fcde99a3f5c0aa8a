"""Which account and credential a blob URL is opened with, and the client options.

:func:`resolve_auth` is the one place that reads the Azure variables, from a mapping
the caller passes in (cellpipe's settings layer hands it the process environment).
It follows the Azure CLI's names and order:

1. a SAS token in an ``https://`` URL's query string;
2. ``AZURE_STORAGE_AUTH_MODE=login``: skip the secrets below and use step 5;
3. ``AZURE_STORAGE_CONNECTION_STRING`` (the emulator uses one too);
4. ``AZURE_STORAGE_ACCOUNT`` with ``AZURE_STORAGE_KEY``, or with ``AZURE_STORAGE_SAS_TOKEN``;
5. :class:`azure.identity.DefaultAzureCredential` (environment service principal,
   workload or managed identity, Azure CLI / PowerShell / azd login) for the account of
   the URL or of ``AZURE_STORAGE_ACCOUNT``.

Secrets in the environment belong to the environment's account: an ``https://`` URL that
names another account skips them rather than sending them there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.storage.blob import BlobServiceClient, ExponentialRetry

from cellpipe.azure.errors import StorageConfigurationError
from cellpipe.azure.url import BlobUrl, parse_blob_url

CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT = "AZURE_STORAGE_ACCOUNT"
KEY = "AZURE_STORAGE_KEY"
SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"
AUTH_MODE = "AZURE_STORAGE_AUTH_MODE"
ENVIRONMENT_VARIABLES = (CONNECTION_STRING, ACCOUNT, KEY, SAS_TOKEN, AUTH_MODE)

# The Azure Storage emulator's published development account (not a secret).
EMULATOR_ACCOUNT = "devstoreaccount1"
EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_CLOUD_SUFFIX = "core.windows.net"

MiB = 1024 * 1024


@dataclass(frozen=True)
class ClientOptions:
    """Retry, timeout and transfer settings of the blob clients.

    Retries use the storage SDK's :class:`~azure.storage.blob.ExponentialRetry` policy:
    retry *n* (from 1) waits ``retry_initial_backoff + retry_increment_base ** n`` seconds,
    ± ``retry_jitter``. The defaults wait 3, 5, 9, 17 and 33 s, about a minute in all;
    ``retry_increment_base=0`` waits ``retry_initial_backoff`` before every retry.

    Attributes
    ----------
    retry_total : int
        Retries of one request (connection errors, timeouts, 408/429/5xx) before giving up.
    retry_initial_backoff, retry_increment_base, retry_jitter : float
        Back-off of those retries, in seconds.
    connection_timeout : float
        Seconds to wait for a TCP connection.
    read_timeout : float
        Seconds to wait between bytes of a response.
    max_concurrency : int
        Parallel range requests of one download.
    chunk_size : int
        Bytes per range request of a download; the first one also tells the blob's size,
        so it is all a download reads of a blob over the size limit.
    block_size : int
        Bytes per staged block of an upload.
    """

    retry_total: int = 5
    retry_initial_backoff: float = 1.0
    retry_increment_base: float = 2.0
    retry_jitter: float = 1.0
    connection_timeout: float = 20.0
    read_timeout: float = 60.0
    max_concurrency: int = 4
    chunk_size: int = 4 * MiB
    block_size: int = 8 * MiB

    def __post_init__(self) -> None:
        for name in ("retry_total", "retry_initial_backoff", "retry_increment_base", "retry_jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"ClientOptions.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("connection_timeout", "read_timeout", "max_concurrency", "chunk_size", "block_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ClientOptions.{name} must be > 0, got {getattr(self, name)}")
        if self.block_size > 4000 * MiB:
            raise ValueError("ClientOptions.block_size must be at most 4000 MiB (the service's block limit)")

    def client_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments that give a storage client these options."""
        retry = ExponentialRetry(
            initial_backoff=self.retry_initial_backoff,
            increment_base=self.retry_increment_base,
            retry_total=self.retry_total,
            random_jitter_range=self.retry_jitter,
            # The policy also caps each kind of failure at 3 unless told otherwise.
            retry_connect=self.retry_total,
            retry_read=self.retry_total,
            retry_status=self.retry_total,
        )
        return {
            "retry_policy": retry,
            "connection_timeout": self.connection_timeout,
            "read_timeout": self.read_timeout,
            "max_single_get_size": self.chunk_size,
            "max_chunk_get_size": self.chunk_size,
            "max_block_size": self.block_size,
        }


@dataclass(frozen=True)
class StorageAuth:
    """An account endpoint and the credential chosen for it.

    ``repr`` and ``str`` show the method and the endpoint, never the credential.

    Attributes
    ----------
    method : str
        ``"sas-url"``, ``"connection-string"``, ``"account-key"``, ``"sas-token"`` or
        ``"default-credential"``.
    account_url : str
        Blob endpoint of the account, without credentials.
    credential : object
        What the storage client is given: a named key, a SAS or a token credential.
    """

    method: str
    account_url: str
    credential: Any = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.account_url} ({self.method})"

    def service_client(self, options: ClientOptions | None = None) -> BlobServiceClient:
        """Return a :class:`BlobServiceClient` for this account with ``options``."""
        options = options or ClientOptions()
        return BlobServiceClient(self.account_url, credential=self.credential, **options.client_kwargs())


def resolve_auth(
    url: str | BlobUrl,
    environ: Mapping[str, str],
    *,
    token_credential: Callable[[], Any] | None = None,
) -> StorageAuth:
    """Return the account endpoint and credential to open ``url`` with.

    Parameters
    ----------
    url : str or BlobUrl
        ``az://CONTAINER/PREFIX`` or an ``https://`` blob URL (see :func:`parse_blob_url`).
    environ : Mapping[str, str]
        The environment to read ``AZURE_STORAGE_*`` variables from (only those).
    token_credential : callable, optional
        Factory of the token credential of step 5; default
        :class:`azure.identity.DefaultAzureCredential`.

    Returns
    -------
    StorageAuth

    Raises
    ------
    StorageConfigurationError
        When no account can be found, or a connection string is malformed. Messages name
        variables, never their values.
    """
    url = parse_blob_url(url)
    env = {name: environ[name].strip() for name in ENVIRONMENT_VARIABLES if environ.get(name, "").strip()}
    if url.sas_token:
        return StorageAuth("sas-url", url.account_url, AzureSasCredential(url.sas_token))  # type: ignore[arg-type]
    login = env.get(AUTH_MODE, "key").lower() == "login"
    if not login and CONNECTION_STRING in env:
        account_url, credential = parse_connection_string(env[CONNECTION_STRING])
        if url.account_url is None or _same_endpoint(url.account_url, account_url):
            return StorageAuth("connection-string", account_url, credential)
    account = env.get(ACCOUNT)
    if url.account_name is not None and account is not None and account != url.account_name:
        account = None  # the environment's secrets are for another account
    account_url = url.account_url or (f"https://{account}.blob.{_CLOUD_SUFFIX}" if account else None)
    if account_url is None:
        raise StorageConfigurationError(
            f"{url}: no storage account given; set {CONNECTION_STRING}, or {ACCOUNT} (with {KEY} "
            f"or {SAS_TOKEN}, or an Azure login), or use an https://ACCOUNT.blob.core.windows.net/ URL"
        )
    if not login and account and KEY in env:
        return StorageAuth("account-key", account_url, AzureNamedKeyCredential(account, env[KEY]))
    if not login and account and SAS_TOKEN in env:
        return StorageAuth("sas-token", account_url, AzureSasCredential(env[SAS_TOKEN].lstrip("?")))
    if token_credential is None:
        from azure.identity import DefaultAzureCredential

        token_credential = DefaultAzureCredential
    return StorageAuth("default-credential", account_url, token_credential())


def parse_connection_string(connection_string: str) -> tuple[str, Any]:
    """Return the blob endpoint and the credential of an Azure Storage connection string.

    Understands ``UseDevelopmentStorage=true`` and the keys ``DefaultEndpointsProtocol``,
    ``AccountName``, ``AccountKey``, ``EndpointSuffix``, ``BlobEndpoint`` and
    ``SharedAccessSignature``, case-insensitively.

    Raises
    ------
    StorageConfigurationError
        When the string is malformed or names no account; the message shows no value.
    """
    settings: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in connection_string.split(";"))):
        key, sep, value = part.partition("=")
        if not sep:
            raise StorageConfigurationError(f"{CONNECTION_STRING} is malformed: expected KEY=VALUE;KEY=VALUE...")
        settings[key.strip().lower()] = value.strip()
    if settings.get("usedevelopmentstorage", "").lower() == "true":
        settings = {
            "accountname": EMULATOR_ACCOUNT,
            "accountkey": EMULATOR_KEY,
            "blobendpoint": f"http://127.0.0.1:10000/{EMULATOR_ACCOUNT}",
        }
    name = settings.get("accountname")
    endpoint = settings.get("blobendpoint")
    if not endpoint:
        if not name:
            raise StorageConfigurationError(f"{CONNECTION_STRING} names neither AccountName nor BlobEndpoint")
        protocol = settings.get("defaultendpointsprotocol", "https")
        endpoint = f"{protocol}://{name}.blob.{settings.get('endpointsuffix', _CLOUD_SUFFIX)}"
    if name and "accountkey" in settings:
        return endpoint.rstrip("/"), AzureNamedKeyCredential(name, settings["accountkey"])
    if "sharedaccesssignature" in settings:
        return endpoint.rstrip("/"), AzureSasCredential(settings["sharedaccesssignature"].lstrip("?"))
    raise StorageConfigurationError(
        f"{CONNECTION_STRING} holds neither AccountName with AccountKey nor SharedAccessSignature"
    )


def _same_endpoint(left: str, right: str) -> bool:
    return left.rstrip("/").lower() == right.rstrip("/").lower()
