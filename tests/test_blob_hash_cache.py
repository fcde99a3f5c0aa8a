"""The blob hash cache: a blob is downloaded to be hashed once per version, and a broken cache never fails a listing.

The cache module alone on temporary files, then listings of a real Azure Storage
emulator (Azurite, tests/azurite.py) whose downloads are counted: the store stays real,
only ``BlobStore.download`` is wrapped by a counter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

pytest_plugins = ["azurite"]  # the session fixture `azurite`

from cellpipe.azure import BlobStore  # noqa: E402
from cellpipe.settings import Settings, default_cache_dir  # noqa: E402
from cellpipe.tasks.hash_cache import CACHE_FILE_NAME, BlobHashCache, CachedHash  # noqa: E402
from cellpipe.tasks.sources import list_batch  # noqa: E402

DAY = dt.date(2024, 6, 1)
URL = "https://acct.blob.core.windows.net/images/plates/2024-06-01/a.png"
SHA_A, SHA_B = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()


# --- the cache file --------------------------------------------------------------------------

def test_a_stored_hash_is_found_again_for_the_same_url_and_etag_after_reopening(tmp_path):
    versions = {(f"{URL}.{i}", f'"0x{i:X}"'): CachedHash(hashlib.sha256(bytes([i % 256, i // 256])).hexdigest(), i)
                for i in range(1200)}  # more than one query's worth of URLs
    with BlobHashCache(tmp_path / CACHE_FILE_NAME) as cache:
        cache.put_many(versions)
    with BlobHashCache(tmp_path / CACHE_FILE_NAME) as cache:
        assert cache.get_many(versions) == versions


def test_an_unknown_url_and_a_known_url_with_another_etag_are_misses(tmp_path):
    with BlobHashCache(tmp_path / CACHE_FILE_NAME) as cache:
        cache.put_many({(URL, '"0x1"'): CachedHash(SHA_A, 1)})
        assert cache.get_many([(URL, '"0x2"'), (URL + ".other", '"0x1"')]) == {}
        assert cache.get_many([]) == {}


def test_the_hash_of_a_rewritten_blob_replaces_the_old_one(tmp_path):
    with BlobHashCache(tmp_path / CACHE_FILE_NAME) as cache:
        cache.put_many({(URL, '"0x1"'): CachedHash(SHA_A, 1)})
        cache.put_many({(URL, '"0x2"'): CachedHash(SHA_B, 2)})
        assert cache.get_many([(URL, '"0x2"')]) == {(URL, '"0x2"'): CachedHash(SHA_B, 2)}
        assert cache.get_many([(URL, '"0x1"')]) == {}
    with sqlite3.connect(tmp_path / CACHE_FILE_NAME) as connection:  # one row per blob, not per night
        assert connection.execute("SELECT count(*) FROM blob_hashes").fetchone() == (1,)


WRITER = """
import sys, time
from pathlib import Path
from cellpipe.tasks.hash_cache import BlobHashCache, CachedHash

path, who, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
for batch in range(40):
    with BlobHashCache(path) as cache:
        versions = {(f"https://acct/c/{who}/{batch}/{i}", '"0x1"'): CachedHash(f"{i:064x}", i) for i in range(25)}
        cache.put_many(versions)
        assert cache.get_many(versions) == versions, "the cache gave up"
"""


def test_two_processes_writing_at_once_both_keep_every_hash(tmp_path):
    path, go = tmp_path / CACHE_FILE_NAME, tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for who in ("p1", "p2")]
    time.sleep(0.5)  # both imported, waiting for the same start
    go.touch()
    outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    assert "cannot use the blob hash cache" not in "".join(outputs)
    wanted = [(f"https://acct/c/{who}/{batch}/{i}", '"0x1"') for who in ("p1", "p2")
              for batch in range(40) for i in range(25)]
    with BlobHashCache(path) as cache:
        assert len(cache.get_many(wanted)) == 2000


def test_a_corrupt_file_answers_nothing_stores_nothing_and_warns_once(tmp_path, caplog):
    path = tmp_path / CACHE_FILE_NAME
    path.write_bytes(b"this is not a SQLite database\n" * 200)
    with caplog.at_level(logging.WARNING, logger="cellpipe.tasks.hash_cache"):
        for _ in range(2):
            with BlobHashCache(path) as cache:
                cache.put_many({(URL, '"0x1"'): CachedHash(SHA_A, 1)})
                assert cache.get_many([(URL, '"0x1"')]) == {}
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert str(path) in caplog.records[0].getMessage()
    assert path.read_bytes() == b"this is not a SQLite database\n" * 200  # the user's to delete, not ours


def test_a_cache_folder_that_cannot_be_created_answers_nothing_without_raising(tmp_path, caplog):
    (tmp_path / "in-the-way").write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="cellpipe.tasks.hash_cache"):
        with BlobHashCache.in_folder(tmp_path / "in-the-way" / "cellpipe") as cache:
            cache.put_many({(URL, '"0x1"'): CachedHash(SHA_A, 1)})
            assert cache.get_many([(URL, '"0x1"')]) == {}
    assert len(caplog.records) == 1 and "in-the-way" in caplog.records[0].getMessage()


def test_a_cache_file_that_cannot_be_opened_answers_nothing_without_raising(tmp_path, caplog):
    # A folder where the file should be: SQLite cannot open it, even for root (a
    # read-only folder would not stop root, who runs CI).
    (tmp_path / CACHE_FILE_NAME).mkdir()
    with caplog.at_level(logging.WARNING, logger="cellpipe.tasks.hash_cache"):
        with BlobHashCache.in_folder(tmp_path) as cache:
            cache.put_many({(URL, '"0x1"'): CachedHash(SHA_A, 1)})
            assert cache.get_many([(URL, '"0x1"')]) == {}
    assert len(caplog.records) == 1 and CACHE_FILE_NAME in caplog.records[0].getMessage()


# --- the cache_dir setting ----------------------------------------------------------------------

def test_cache_dir_comes_from_the_environment_over_luigi_cfg_and_defaults_to_the_user_cache_dir(tmp_path):
    config = tmp_path / "luigi.cfg"
    config.write_text("[cellpipe]\ncache_dir = /var/cache/cellpipe\n")
    assert Settings.load(config_path=tmp_path / "none.cfg", environ={}).cache_dir == str(default_cache_dir())
    assert Settings.load(config_path=config, environ={}).cache_dir == "/var/cache/cellpipe"
    assert Settings.load(config_path=config, environ={"CELLPIPE_CACHE_DIR": "/tmp/c"}).cache_dir == "/tmp/c"
    assert default_cache_dir().name == "cellpipe"


# --- listings of a real container -------------------------------------------------------------

@pytest.fixture
def azure_env(azurite, monkeypatch, tmp_path):
    """Give this process the emulator's connection string and a cache folder of its own."""
    for name in list(os.environ):
        if name.startswith(("AZURE_STORAGE_", "CELLPIPE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("CELLPIPE_CACHE_DIR", str(tmp_path / "cache"))
    return azurite


@pytest.fixture
def downloads(monkeypatch) -> Counter:
    """Return a counter of the blob names that ``BlobStore.download`` is called for from now on."""
    counted: Counter = Counter()
    lock = threading.Lock()
    download = BlobStore.download

    def counting_download(self, blob, *args, **kwargs):
        with lock:  # listings download from several threads
            counted[getattr(blob, "name", blob)] += 1
        return download(self, blob, *args, **kwargs)

    monkeypatch.setattr(BlobStore, "download", counting_download)
    return counted


def new_container(emulator) -> str:
    name = f"c{uuid.uuid4().hex[:20]}"
    BlobServiceClient.from_connection_string(emulator.connection_string).create_container(name)
    return name


def upload(emulator, container: str, blobs: dict[str, bytes]) -> None:
    """Upload (or overwrite) blobs the way a lab's uploader does: plain Put Blob, no cellpipe code."""
    client = BlobServiceClient.from_connection_string(emulator.connection_string).get_container_client(container)
    for name, content in blobs.items():
        client.upload_blob(name, content, overwrite=True)


def identities(listing) -> tuple:
    return tuple((kind, ref.name, ref.content_hash, ref.size_bytes, ref.batch_date)
                 for kind in ("images", "duplicates") for ref in getattr(listing, kind))


def test_listing_a_container_twice_downloads_each_blob_once(azure_env, downloads, tmp_path):
    container = new_container(azure_env)
    blobs = {f"plates/{DAY}/a.png": b"\x89PNG a", f"plates/{DAY}/b.tif": b"II*\x00 b",
             f"plates/{DAY}/copy_of_a.png": b"\x89PNG a"}
    upload(azure_env, container, blobs)
    first = list_batch(f"az://{container}/plates", DAY, dated=True)
    second = list_batch(f"az://{container}/plates", DAY, dated=True)
    assert identities(second) == identities(first)
    assert {ref.name: ref.content_hash for ref in (*first.images, *first.duplicates)} == {
        name.removeprefix("plates/"): hashlib.sha256(content).hexdigest() for name, content in blobs.items()}
    assert downloads == Counter(blobs.keys())
    assert (tmp_path / "cache" / CACHE_FILE_NAME).is_file()  # where CELLPIPE_CACHE_DIR says


def test_an_undated_listing_on_the_next_night_downloads_only_the_new_blobs(azure_env, downloads):
    container = new_container(azure_env)
    old = {f"plates/{DAY}/{i}.png": f"night one {i}".encode() for i in range(5)}
    new = {f"plates/{DAY + dt.timedelta(days=1)}/{i}.png": f"night two {i}".encode() for i in range(3)}
    upload(azure_env, container, old)
    list_batch(f"az://{container}/plates", DAY, dated=False)
    upload(azure_env, container, new)
    listing = list_batch(f"az://{container}/plates", DAY + dt.timedelta(days=1), dated=False)
    assert len(listing.images) == 8
    assert downloads == Counter([*old, *new])


def test_a_blob_overwritten_with_other_bytes_between_listings_gets_its_new_hash(azure_env, downloads):
    container = new_container(azure_env)
    name = f"plates/{DAY}/a.png"
    upload(azure_env, container, {name: b"first version"})
    (before,) = list_batch(f"az://{container}/plates", DAY, dated=True).images
    upload(azure_env, container, {name: b"second version, longer"})
    (after,) = list_batch(f"az://{container}/plates", DAY, dated=True).images
    assert before.content_hash == hashlib.sha256(b"first version").hexdigest()
    assert (after.content_hash, after.size_bytes) == (hashlib.sha256(b"second version, longer").hexdigest(), 22)
    upload(azure_env, container, {name: b"third version, same size"[:22]})  # same size: the etag still tells
    (again,) = list_batch(f"az://{container}/plates", DAY, dated=True).images
    assert again.content_hash == hashlib.sha256(b"third version, same size"[:22]).hexdigest()
    assert downloads == Counter({name: 3})


def test_unreadable_blobs_are_not_cached_and_are_tried_again(azure_env, downloads, tmp_path):
    from azure.storage.blob import ContentSettings

    container = new_container(azure_env)
    upload(azure_env, container, {f"plates/{DAY}/good.png": b"good", f"plates/{DAY}/bad.png": b"corrupted"})
    client = BlobServiceClient.from_connection_string(azure_env.connection_string).get_blob_client(
        container, f"plates/{DAY}/bad.png")
    client.set_http_headers(ContentSettings(content_type="image/png", content_md5=bytearray(16)))  # wrong MD5
    for _ in range(2):
        listing = list_batch(f"az://{container}/plates", DAY, dated=True)
        assert [ref.name for ref in listing.images] == [f"{DAY}/good.png"]
        assert [name for name, _ in listing.unreadable] == [f"{DAY}/bad.png"]
    assert downloads[f"plates/{DAY}/good.png"] == 1 and downloads[f"plates/{DAY}/bad.png"] > 1


@pytest.mark.parametrize("broken", ["corrupt file", "folder that cannot be created"])
def test_a_broken_cache_still_gives_correct_listings_with_one_warning(azure_env, downloads, tmp_path, monkeypatch,
                                                                      caplog, broken):
    if broken == "corrupt file":
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / CACHE_FILE_NAME).write_bytes(b"\x00garbage" * 1000)
    else:
        (tmp_path / "cache").write_text("a file where the cache folder should be")
    container = new_container(azure_env)
    blobs = {f"plates/{DAY}/a.png": b"a", f"plates/{DAY}/b.png": b"b"}
    upload(azure_env, container, blobs)
    with caplog.at_level(logging.WARNING, logger="cellpipe.tasks.hash_cache"):
        listings = [list_batch(f"az://{container}/plates", DAY, dated=True) for _ in range(2)]
    for listing in listings:
        assert {ref.name: ref.content_hash for ref in listing.images} == {
            name.removeprefix("plates/"): hashlib.sha256(content).hexdigest() for name, content in blobs.items()}
    assert downloads == Counter({name: 2 for name in blobs})  # hashed by download, as without a cache
    assert len(caplog.records) == 1, caplog.records


def test_an_explicit_cache_dir_overrides_the_setting(azure_env, downloads, tmp_path):
    container = new_container(azure_env)
    upload(azure_env, container, {f"plates/{DAY}/a.png": b"a"})
    for _ in range(2):
        list_batch(f"az://{container}/plates", DAY, dated=True, cache_dir=tmp_path / "elsewhere")
    assert downloads == Counter({f"plates/{DAY}/a.png": 1})
    assert (tmp_path / "elsewhere" / CACHE_FILE_NAME).is_file() and not (tmp_path / "cache").exists()
