"""cellpipe.azure against a real Azure Storage emulator (Azurite), no mocks of the storage client."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import threading
import uuid
from urllib.parse import parse_qs, quote

import numpy as np
import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, ContentSettings, generate_container_sas
from PIL import Image

pytest.register_assert_rewrite("azurite")  # before importing it: it is also this module's plugin
pytest_plugins = ["azurite"]  # the session fixture `azurite`

from azurite import KEY, Azurite, connection_string, free_loopback_port  # noqa: E402
from cellpipe.azure import (  # noqa: E402
    BlobNotFoundError,
    BlobTooLargeError,
    ClientOptions,
    ContainerNotFoundError,
    ContentMismatchError,
    InvalidBlobUrlError,
    StorageAuthenticationError,
    StorageConfigurationError,
    StorageUnreachableError,
    content_sha256,
    open_store,
    parse_blob_url,
    resolve_auth,
)

# Short retries keep failure tests at a fraction of a second.
FAST = ClientOptions(
    retry_total=1, retry_initial_backoff=0.05, retry_increment_base=0, retry_jitter=0,
    connection_timeout=2, read_timeout=5,
)  # fmt: skip
WRONG_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
SAS = "sv=2024-08-04&ss=b&srt=sco&sp=rl&se=2099-01-01T00%3A00%3A00Z&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
DATES = ("2024-05-01", "2024-05-02")


def png_bytes(seed: int) -> bytes:
    """Return a small, distinct PNG image."""
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def fifty_images() -> dict[str, bytes]:
    """Return 50 PNG images by blob name: 20 in the first dated folder, 30 in the second."""
    return {f"plates/{DATES[i >= 20]}/img{i:03d}.png": png_bytes(i) for i in range(50)}


def fresh_container(endpoint_connection_string: str) -> str:
    name = f"c{uuid.uuid4().hex[:20]}"
    BlobServiceClient.from_connection_string(endpoint_connection_string).create_container(name)
    return name


@pytest.fixture
def env(azurite: Azurite) -> dict[str, str]:
    return {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}


@pytest.fixture
def container(azurite: Azurite) -> str:
    return fresh_container(azurite.connection_string)


@pytest.fixture
def store(container, env):
    with open_store(f"az://{container}/plates", env, options=FAST) as opened:
        yield opened


@pytest.fixture(scope="module")
def plates(azurite):
    """A container holding the 50 images, uploaded with upload_atomic; yields (store, images)."""
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    container = fresh_container(azurite.connection_string)
    images = fifty_images()
    with open_store(f"az://{container}/", env, options=FAST) as root:
        for name, content in images.items():
            root.upload_atomic(name, content, content_type="image/png")
    with open_store(f"az://{container}/plates", env, options=FAST) as opened:
        yield opened, images


# --- URLs -------------------------------------------------------------------------------


def test_az_url_names_container_and_folder_prefix():
    url = parse_blob_url("az://microscopes/lab-3/plates")
    assert (url.container, url.prefix, url.account_url) == ("microscopes", "lab-3/plates/", None)


def test_https_url_names_the_account_and_keeps_its_sas_out_of_repr_and_str():
    url = parse_blob_url(f"https://labstore.blob.core.windows.net/microscopes/lab-3?{SAS}")
    assert (url.account_name, url.account_url) == ("labstore", "https://labstore.blob.core.windows.net")
    assert (url.container, url.prefix, url.sas_token) == ("microscopes", "lab-3/", SAS)
    assert "sig=" not in repr(url) and "sig=" not in str(url)


def test_emulator_url_takes_the_account_from_the_path():
    url = parse_blob_url("http://127.0.0.1:10000/devstoreaccount1/images/a/b")
    assert url.account_url == "http://127.0.0.1:10000/devstoreaccount1"
    assert (url.account_name, url.container, url.prefix) == ("devstoreaccount1", "images", "a/b/")


@pytest.mark.parametrize("text", ["az://", "az:///plates", "s3://bucket/plates", "az://Bad_Name/x", "/data/images"])
def test_url_without_a_valid_container_is_rejected(text):
    with pytest.raises(InvalidBlobUrlError):
        parse_blob_url(text)


def test_dated_url_is_the_iso_date_folder_under_the_prefix():
    assert parse_blob_url("az://images/plates").dated(dt.date(2024, 5, 1)).prefix == "plates/2024-05-01/"
    with pytest.raises(InvalidBlobUrlError, match="YYYY-MM-DD"):
        parse_blob_url("az://images/plates").dated("May 1st")


# --- choosing credentials -------------------------------------------------------------------


def test_connection_string_gives_its_endpoint_and_key():
    environ = {"AZURE_STORAGE_CONNECTION_STRING": connection_string("http://h:1/acc", KEY, "acc")}
    auth = resolve_auth("az://images/", environ)
    assert (auth.method, auth.account_url) == ("connection-string", "http://h:1/acc")
    assert isinstance(auth.credential, AzureNamedKeyCredential) and auth.credential.named_key.key == KEY


def test_account_and_key_give_a_shared_key_credential_on_the_public_endpoint():
    auth = resolve_auth("az://images/", {"AZURE_STORAGE_ACCOUNT": "labstore", "AZURE_STORAGE_KEY": KEY})
    assert (auth.method, auth.account_url) == ("account-key", "https://labstore.blob.core.windows.net")
    assert auth.credential.named_key == ("labstore", KEY)


def test_account_and_sas_token_give_a_sas_credential():
    auth = resolve_auth("az://images/", {"AZURE_STORAGE_ACCOUNT": "labstore", "AZURE_STORAGE_SAS_TOKEN": "?" + SAS})
    assert auth.method == "sas-token" and isinstance(auth.credential, AzureSasCredential)
    assert auth.credential.signature == SAS


def test_sas_in_the_url_comes_before_the_environment():
    environ = {"AZURE_STORAGE_ACCOUNT": "labstore", "AZURE_STORAGE_KEY": KEY}
    auth = resolve_auth(f"https://labstore.blob.core.windows.net/images?{SAS}", environ)
    assert auth.method == "sas-url" and auth.credential.signature == SAS


def test_no_secret_means_default_azure_credential_for_the_account():
    auth = resolve_auth("az://images/", {"AZURE_STORAGE_ACCOUNT": "labstore"})
    assert auth.method == "default-credential" and isinstance(auth.credential, DefaultAzureCredential)
    assert auth.account_url == "https://labstore.blob.core.windows.net"


def test_login_auth_mode_skips_the_secrets_in_the_environment():
    environ = {"AZURE_STORAGE_ACCOUNT": "labstore", "AZURE_STORAGE_KEY": KEY, "AZURE_STORAGE_AUTH_MODE": "login"}
    assert resolve_auth("az://images/", environ, token_credential=object).method == "default-credential"


def test_secrets_of_one_account_are_not_sent_to_another():
    labstore = connection_string("https://labstore.blob.core.windows.net", KEY, "labstore")
    environ = {"AZURE_STORAGE_CONNECTION_STRING": labstore,
               "AZURE_STORAGE_ACCOUNT": "labstore", "AZURE_STORAGE_KEY": KEY}
    auth = resolve_auth("https://otherlab.blob.core.windows.net/images", environ, token_credential=object)
    assert (auth.method, auth.account_url) == ("default-credential", "https://otherlab.blob.core.windows.net")


def test_no_account_anywhere_is_a_configuration_error_naming_the_variables():
    with pytest.raises(StorageConfigurationError, match="AZURE_STORAGE_CONNECTION_STRING"):
        resolve_auth("az://images/", {})


def test_malformed_connection_string_error_does_not_show_it():
    with pytest.raises(StorageConfigurationError) as raised:
        resolve_auth("az://images/", {"AZURE_STORAGE_CONNECTION_STRING": f"AccountKey{KEY}"})
    assert KEY not in str(raised.value)


def test_reprs_of_credentials_and_stores_do_not_show_secrets():
    for environ in ({"AZURE_STORAGE_ACCOUNT": "labstore", "AZURE_STORAGE_KEY": KEY},
                    {"AZURE_STORAGE_CONNECTION_STRING": connection_string("http://h:1/acc", KEY, "acc")}):  # fmt: skip
        auth = resolve_auth("az://images/", environ)
        with open_store("az://images/", environ) as store:
            shown = " ".join([repr(auth), str(auth), repr(store), str(store)])
        assert "labstore" in shown or "acc" in shown
        assert KEY not in shown and KEY[:12] not in shown
    with open_store(f"https://labstore.blob.core.windows.net/images?{SAS}", {}) as store:
        assert "sig=" not in repr(store) + str(store) + repr(store.auth) + repr(store.url)


# --- listing ------------------------------------------------------------------------------


def test_lists_all_50_images_under_the_prefix_with_their_properties(plates):
    store, images = plates
    listed = list(store.list_images())
    assert [blob.name for blob in listed] == sorted(images)
    for blob in listed:
        assert blob.size == len(images[blob.name])
        assert blob.content_md5 == hashlib.md5(images[blob.name]).digest()
        assert blob.etag and blob.last_modified.tzinfo is not None
        assert blob.url == f"az://{store.url.container}/{blob.name}"


@pytest.mark.parametrize(("date", "count"), [(DATES[0], 20), (dt.date.fromisoformat(DATES[1]), 30)])
def test_lists_only_the_dated_batch(plates, date, count):
    store, _ = plates
    names = [blob.name for blob in store.list_images(date=date)]
    assert len(names) == count and all(name.startswith(f"plates/{date}/") for name in names)


def test_listing_skips_folder_markers_and_the_results_under_the_input_prefix(store):
    store.upload_atomic("a.png", png_bytes(1))
    store.upload_atomic("results/a_labels.tif", b"labels")
    store._container.upload_blob("plates/sub/", b"")  # a "folder" as some tools make them
    store._container.upload_blob("plates/dir", b"", metadata={"hdi_isfolder": "true"})
    names = [blob.name for blob in store.list_images(exclude=f"az://{store.url.container}/plates/results")]
    assert names == ["plates/a.png"]


# --- downloading --------------------------------------------------------------------------


def test_download_returns_the_uploaded_bytes_and_their_content_hash(plates):
    store, images = plates
    blob = next(iter(store.list_images(date=DATES[1])))
    content = store.download(blob)
    assert content == images[blob.name]
    assert content_sha256(content) == hashlib.sha256(images[blob.name]).hexdigest()


def test_download_accepts_a_blob_name_or_url(plates):
    store, images = plates
    name = sorted(images)[7]
    assert store.download(name) == images[name]
    assert store.download(f"az://{store.url.container}/{name}") == images[name]


def test_download_in_parallel_chunks_reassembles_the_blob(container, env):
    content = np.random.default_rng(7).bytes(10_000)
    with open_store(f"az://{container}/plates", env, options=ClientOptions(chunk_size=1024, max_concurrency=3)) as store:
        store.upload_atomic("large.tif", content)
        assert store.download("plates/large.tif") == content


def test_download_refuses_a_blob_whose_stored_content_md5_does_not_match(store):
    store.upload_atomic("tampered.png", png_bytes(2), content_type="image/png")
    blob_client = store._container.get_blob_client("plates/tampered.png")
    blob_client.set_http_headers(ContentSettings(content_type="image/png", content_md5=bytearray(16)))
    with pytest.raises(ContentMismatchError, match="plates/tampered.png.*Content-MD5"):
        store.download("plates/tampered.png")


def test_download_refuses_a_blob_over_the_size_limit(store):
    listed = store.upload_atomic("big.png", bytes(5000))
    with pytest.raises(BlobTooLargeError, match="5000 bytes"):
        store.download(listed, max_bytes=4999)
    with pytest.raises(BlobTooLargeError):
        store.download(listed.name, max_bytes=4999)
    assert len(store.download(listed, max_bytes=5000)) == 5000


def test_zero_byte_blob_is_listed_and_downloads_as_empty_bytes(store):
    store.upload_atomic("empty.png", b"", content_type="image/png")
    (listed,) = store.list_images()
    assert (listed.name, listed.size) == ("plates/empty.png", 0)
    assert store.download(listed) == b""


# --- atomic uploads -----------------------------------------------------------------------


def test_upload_records_content_type_and_md5(store):
    content = png_bytes(3)
    committed = store.upload_atomic("a_overlay.png", content, content_type="image/png")
    properties = store._container.get_blob_client("plates/a_overlay.png").get_blob_properties()
    assert properties.content_settings.content_type == "image/png"
    assert bytes(properties.content_settings.content_md5) == hashlib.md5(content).digest() == committed.content_md5


def upload_observing_midway(store, name, look):
    """Upload new content to ``name`` in two chunks; return what ``look()`` saw while chunk one was staged."""
    blob_client = store._container.get_blob_client(store.url.blob_name(name))
    seen = []

    def chunks():
        yield b"new content, part one; "
        assert blob_client.get_block_list("uncommitted")[1], "the first block should be staged by now"
        seen.append(look())
        yield b"part two"

    store.upload_atomic(name, chunks())
    return seen


def test_new_blob_does_not_exist_while_its_blocks_are_staged(store):
    seen = upload_observing_midway(store, "a_cells.csv", lambda: store.exists("plates/a_cells.csv"))
    assert seen == [False]
    assert store.download("plates/a_cells.csv") == b"new content, part one; part two"


def test_replaced_blob_shows_its_old_content_until_the_commit(store):
    store.upload_atomic("a_cells.csv", b"old content")
    seen = upload_observing_midway(store, "a_cells.csv", lambda: store.download("plates/a_cells.csv"))
    assert seen == [b"old content"]
    assert store.download("plates/a_cells.csv") == b"new content, part one; part two"


def test_failed_upload_leaves_no_blob_under_the_final_name(store):
    def chunks_then_crash():
        yield b"half of a label image"
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError, match="worker died"):
        store.upload_atomic("a_labels.tif", chunks_then_crash())
    assert not store.exists("plates/a_labels.tif")
    assert list(store.list_images()) == []


def test_uploading_the_same_blob_twice_leaves_one_blob_with_that_content(store):
    store.upload_atomic("a_labels.tif", b"labels" * 100, content_type="image/tiff")
    store.upload_atomic("a_labels.tif", b"labels" * 100, content_type="image/tiff")
    (listed,) = store.list_images()
    assert (listed.name, store.download(listed)) == ("plates/a_labels.tif", b"labels" * 100)


def test_upload_splits_content_into_blocks_of_the_configured_size(container, env):
    with open_store(f"az://{container}/out", env, options=ClientOptions(block_size=1000)) as store:
        store.upload_atomic("a_labels.tif", bytes(range(256)) * 10)
        committed, _ = store._container.get_blob_client("out/a_labels.tif").get_block_list("committed")
        assert [block.size for block in committed] == [1000, 1000, 560]
        assert store.download("out/a_labels.tif") == bytes(range(256)) * 10


# --- errors ------------------------------------------------------------------------------


def test_missing_container_is_a_clear_error(env):
    with open_store("az://no-such-container/plates", env, options=FAST) as store:
        with pytest.raises(ContainerNotFoundError, match="'no-such-container' does not exist"):
            list(store.list_images())


def test_missing_blob_is_a_clear_error(store):
    with pytest.raises(BlobNotFoundError, match="plates/nope.png does not exist"):
        store.download("plates/nope.png")


def test_wrong_key_is_an_authentication_error_that_does_not_show_the_key(azurite, container):
    environ = {"AZURE_STORAGE_CONNECTION_STRING": connection_string(azurite.endpoint, WRONG_KEY)}
    with open_store(f"az://{container}/plates", environ, options=FAST) as store:
        with pytest.raises(StorageAuthenticationError) as raised:
            list(store.list_images())
    message = str(raised.value)
    assert "refused" in message and "AZURE_STORAGE_KEY" in message
    assert WRONG_KEY not in message and WRONG_KEY[:12] not in message and raised.value.__cause__ is None


def test_sas_signed_with_a_wrong_key_is_refused_without_showing_the_sas(azurite, container):
    sas = generate_container_sas("devstoreaccount1", container, account_key=WRONG_KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))  # fmt: skip
    with open_store(f"{azurite.endpoint}/{container}/plates?{sas}", {}, options=FAST) as store:
        with pytest.raises(StorageAuthenticationError) as raised:
            list(store.list_images())
    assert "sig=" not in str(raised.value) and sas not in str(raised.value)


def test_request_logs_do_not_show_the_key_or_the_sas(azurite, container, env, caplog):
    # azureml-core, once imported (other tests do), sets "azure.core" to WARNING itself.
    for name in ("azure", "azure.core"):
        caplog.set_level(logging.DEBUG, logger=name)
    sas = generate_container_sas("devstoreaccount1", container, account_key=KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))  # fmt: skip
    signature = parse_qs(sas)["sig"][0]
    with open_store(f"{azurite.endpoint}/{container}/plates?{sas}", {}, options=FAST) as store:
        assert list(store.list_images()) == []
    with open_store(f"az://{container}/plates", env) as store:
        assert list(store.list_images()) == []
    assert container in caplog.text  # the requests were logged...
    assert signature not in caplog.text and quote(signature, safe="") not in caplog.text  # ...without secrets
    assert KEY not in caplog.text


def test_unreachable_store_error_names_the_endpoint_without_secrets():
    endpoint = f"http://127.0.0.1:{free_loopback_port()}/devstoreaccount1"  # nothing listens there
    sas = SAS.replace("c2VjcmV0", "dW5yZWFjaGFibGU")
    with open_store(f"{endpoint}/images/plates?{sas}", {}, options=FAST) as store:
        with pytest.raises(StorageUnreachableError) as raised:
            store.download("plates/a.png")
    message = str(raised.value)
    assert endpoint in message and "connection refused" in message
    assert "sig=" not in message and "dW5yZWFjaGFibGU" not in message


# --- an emulator that stops and starts again ------------------------------------------------------


@pytest.fixture(scope="module")
def restartable(tmp_path_factory):
    """An Azurite of its own (the tests stop it), holding the 50 images; yields (emulator, url, images)."""
    with Azurite(tmp_path_factory.mktemp("azurite-restart") / "data") as emulator:
        container = fresh_container(emulator.connection_string)
        images = fifty_images()
        env = {"AZURE_STORAGE_CONNECTION_STRING": emulator.connection_string}
        with open_store(f"az://{container}/", env, options=FAST) as root:
            for name, content in images.items():
                root.upload_atomic(name, content, content_type="image/png")
        yield emulator, env, f"az://{container}/plates", images


def test_downloads_ride_through_an_emulator_restart_by_retrying(restartable):
    emulator, env, url, images = restartable
    patient = ClientOptions(retry_total=40, retry_initial_backoff=0.25, retry_increment_base=0, retry_jitter=0,
                            connection_timeout=2, read_timeout=5)  # fmt: skip
    downloaded = {}
    restart = threading.Timer(0.5, emulator.start)
    with open_store(url, env, options=patient) as store:
        blobs = list(store.list_images())
        first_process = emulator._process
        try:
            for index, blob in enumerate(blobs):
                if index == 25:
                    emulator.stop()  # the next download finds nothing listening until the restart
                    restart.start()
                downloaded[blob.name] = store.download(blob)
        finally:
            if restart.ident is not None:
                restart.join()
    assert emulator._process is not first_process and emulator.running
    assert downloaded == images


def test_download_loop_after_an_outage_longer_than_the_retries_completes_on_a_second_pass(restartable):
    emulator, env, url, images = restartable
    downloaded = {}
    with open_store(url, env, options=FAST) as store:
        blobs = list(store.list_images())
        with pytest.raises(StorageUnreachableError, match=f"{emulator.endpoint} .connection refused"):
            for index, blob in enumerate(blobs):
                if index == 25:
                    emulator.stop()
                downloaded[blob.name] = store.download(blob)
        assert len(downloaded) == 25
        emulator.start()
        assert list(store.list_images()) == blobs  # nothing lost across the restart
        for blob in blobs:
            if blob.name not in downloaded:
                downloaded[blob.name] = store.download(blob)
    assert downloaded == images
