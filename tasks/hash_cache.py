"""Content hashes of blobs kept in a file, so that each version of a blob is downloaded once to be hashed.

Listing an ``az://`` input needs every image's content hash (its identity, see
:mod:`cellpipe.tasks.sources`), and the storage service does not know it: the blob has
to be downloaded. But a blob's etag changes whenever the blob is rewritten, so a blob
URL with its etag names one version of its bytes for good. :class:`BlobHashCache` keeps
``(url, etag) -> (sha256, size)`` in a SQLite file that every cellpipe process of the
user shares (WAL journal, busy timeout), one row per blob URL: the row of a rewritten
blob is replaced, so the file grows with the number of blobs, not of nights.

The cache only saves downloads. A file that cannot be opened, read or written
(read-only disk, corrupt file, folder that cannot be created) makes it answer nothing
and store nothing, with one warning per file and process; the caller then hashes by
download as if there were no cache.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

from cellpipe.db.engine import use_wal

logger = logging.getLogger(__name__)

#: Name of the cache file in the ``cache_dir`` setting's folder.
CACHE_FILE_NAME = "blob-hashes.sqlite"
#: Seconds a process waits for another one's write to finish before giving up on the cache.
BUSY_TIMEOUT_S = 10.0
# Well below SQLite's limit on bound variables per statement (999 in old builds).
_QUERY_CHUNK = 500
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS blob_hashes (
    url TEXT PRIMARY KEY,
    etag TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL
)"""

# Misuse of the sqlite3 module is a bug to see, not a file to give up on.
_BUGS = (sqlite3.ProgrammingError, sqlite3.InterfaceError)

_warned: set[Path] = set()
_warned_lock = threading.Lock()

#: ``(blob URL without credentials, etag)``: one version of a blob.
BlobVersion = tuple[str, str]


class CachedHash(NamedTuple):
    """The content of one blob version: sha256 (64 hex digits) and size in bytes."""

    sha256: str
    size_bytes: int


class BlobHashCache:
    """Content hashes of blob versions in a SQLite file, shared by processes.

    Parameters
    ----------
    path : str or os.PathLike
        The SQLite file (``~`` expanded); it and its folder are created at first use.

    Notes
    -----
    No method raises for a file it cannot use: the cache then stops reading and writing
    it for the rest of its life and logs one warning per file and process. One instance
    holds one connection, opened at first use: use it from one thread, and close it (or
    use it as a context manager).

    Examples
    --------
    >>> with BlobHashCache(tmp / "blob-hashes.sqlite") as cache:  # doctest: +SKIP
    ...     cache.put_many({("https://acct.blob.core.windows.net/c/a.png", '"0x1"'): CachedHash("ab" * 32, 10)})
    ...     cache.get_many([("https://acct.blob.core.windows.net/c/a.png", '"0x1"')])
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser()
        self._connection: sqlite3.Connection | None = None
        self._unusable = False

    @classmethod
    def in_folder(cls, folder: str | os.PathLike[str]) -> "BlobHashCache":
        """Return the cache whose file is :data:`CACHE_FILE_NAME` in ``folder`` (the ``cache_dir`` setting)."""
        return cls(Path(folder).expanduser() / CACHE_FILE_NAME)

    def get_many(self, versions: Iterable[BlobVersion]) -> dict[BlobVersion, CachedHash]:
        """Return the cached hash of each of ``versions`` that the file knows; misses are left out.

        A blob cached under another etag (rewritten since) is a miss.
        """
        wanted = {url: etag for url, etag in versions}
        found: dict[BlobVersion, CachedHash] = {}
        connection = self._connect() if wanted else None
        if connection is None:
            return found
        urls = list(wanted)
        try:
            for start in range(0, len(urls), _QUERY_CHUNK):
                chunk = urls[start : start + _QUERY_CHUNK]
                placeholders = ",".join("?" * len(chunk))
                rows = connection.execute(
                    f"SELECT url, etag, sha256, size_bytes FROM blob_hashes WHERE url IN ({placeholders})", chunk)
                for url, etag, sha256, size_bytes in rows:
                    # A row that is not what this module writes (a hand-edited file) is a miss, not an identity.
                    if etag == wanted[url] and isinstance(sha256, str) and _SHA256.match(sha256) \
                            and isinstance(size_bytes, int) and size_bytes >= 0:
                        found[(url, etag)] = CachedHash(sha256, size_bytes)
        except sqlite3.Error as error:
            self._give_up(error)
            return {}
        return found

    def put_many(self, hashes: Mapping[BlobVersion, CachedHash]) -> None:
        """Store the hashes of blob versions, replacing what was cached for the same URLs, in one transaction."""
        if not hashes:
            return
        connection = self._connect()
        if connection is None:
            return
        rows = [(url, etag, cached.sha256, int(cached.size_bytes)) for (url, etag), cached in hashes.items()]
        try:
            # IMMEDIATE: take the write lock now, waiting up to the busy timeout for another process.
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany("INSERT OR REPLACE INTO blob_hashes VALUES (?, ?, ?, ?)", rows)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            self._give_up(error)

    def close(self) -> None:
        """Close the file (the cache can be opened again by its next use)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> "BlobHashCache":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connect(self) -> sqlite3.Connection | None:
        if self._unusable:
            return None
        if self._connection is None:
            connection = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Autocommit: transactions are explicit (put_many), reads take no lock in WAL.
                connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                use_wal(connection, BUSY_TIMEOUT_S)  # readers never block the writer of another process
                connection.execute("PRAGMA synchronous=NORMAL")  # a cache may lose its last write in a power cut
                connection.execute(_SCHEMA)
            except (sqlite3.Error, OSError) as error:
                if connection is not None:
                    connection.close()
                self._give_up(error)
                return None
            self._connection = connection
        return self._connection

    def _give_up(self, error: BaseException) -> None:
        if isinstance(error, _BUGS):
            raise error
        self._unusable = True
        self.close()
        with _warned_lock:
            if self.path in _warned:
                return
            _warned.add(self.path)
        logger.warning(
            "cannot use the blob hash cache %s (%s): blobs are downloaded to be hashed as if there were no "
            "cache; make its folder writable, delete the file if it is corrupt, or set cache_dir "
            "(CELLPIPE_CACHE_DIR) to another folder", self.path, error)
