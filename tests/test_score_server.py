"""score.py inside the real Azure ML inference server (azmlinfsrv), served from a dry-run deployment folder.

One server per module (TensorFlow's import and the model load take seconds): the folder
is what ``cellpipe model deploy --dry-run DIR`` writes, started exactly as the README
says, ``azmlinfsrv --entry_script DIR/score.py --model_dir DIR/model``. Its blob
credentials point at Azurite for the batch contract.
"""

import base64
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest_plugins = ["azurite", "tiny_model"]  # session fixtures `azurite`, `tiny_model`
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::PendingDeprecationWarning", "ignore:.*should not be instantiated"
)

MAX_PIXELS = 256 * 256
MAX_REQUEST_BYTES = 1_000_000
START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def deployment_dir(tiny_model, tmp_path_factory):
    from cellpipe.azure.ml import Deployment, WorkspaceRef, open_backend

    folder = tmp_path_factory.mktemp("deployment") / "spec"
    backend = open_backend("v2", WorkspaceRef("00000000-0000-0000-0000-000000000000", "rg", "ws"))
    backend.deploy(Path(tiny_model), Deployment("cellpipe-test", target="online-endpoint"), dry_run=folder)
    return folder


@pytest.fixture(scope="module")
def server(deployment_dir, azurite, tmp_path_factory):
    port = free_loopback_port()
    log_path = tmp_path_factory.mktemp("server") / "azmlinfsrv.log"
    environment = {
        **os.environ,
        "CELLPIPE_SCORE_MAX_PIXELS": str(MAX_PIXELS),
        "CELLPIPE_SCORE_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [str(Path(sys.executable).with_name("azmlinfsrv")), "--entry_script", str(deployment_dir / "score.py"),
               "--model_dir", str(deployment_dir / "model"), "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                   cwd=log_path.parent, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, log_path)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def free_loopback_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(url, process, log_path):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"azmlinfsrv exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"azmlinfsrv did not answer in {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


def post(url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + "/score", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def png_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def foam():
    from cellpipe.synthetic import synthetic_cells

    return synthetic_cells((128, 160), mean_cell_diameter=20, seed=3).image


def image_request(image_bytes):
    return {"image": base64.b64encode(image_bytes).decode()}


def test_liveness_probe_says_healthy(server):
    with urllib.request.urlopen(server + "/", timeout=10) as response:
        assert response.status == 200
        assert response.read().decode().strip() == "Healthy"


def test_one_image_returns_the_cells_the_local_pipeline_finds(server, foam, tiny_model):
    from cellpipe.pipeline import CellSegmenter

    status, body = post(server, image_request(png_bytes(foam)))
    expected = CellSegmenter(tiny_model)(foam)
    assert status == 200
    assert body["n_cells"] == expected.n_cells == len(body["cells"]) > 0
    assert [cell["area"] for cell in body["cells"]] == expected.cells["area"].tolist()
    assert [cell["centroid-0"] for cell in body["cells"]] == pytest.approx(expected.cells["centroid-0"].tolist())


def test_each_cell_has_label_centroid_and_area(server, foam):
    status, body = post(server, image_request(png_bytes(foam)))
    assert status == 200
    assert {"label", "centroid-0", "centroid-1", "area"} <= set(body["cells"][0])
    assert (body["height"], body["width"]) == foam.shape


def test_a_tiff_image_is_accepted(server, foam):
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, foam.astype(np.uint16) * 200)
    status, body = post(server, image_request(buffer.getvalue()))
    assert status == 200
    assert body["n_cells"] == len(body["cells"])


def test_malformed_json_gets_a_400_error(server):
    status, body = post(server, b'{"image": ')
    assert status == 400
    assert "not valid JSON" in body["error"]


def test_a_request_without_image_or_container_gets_a_400_error(server):
    status, body = post(server, {"picture": "x"})
    assert status == 400
    assert '"image"' in body["error"]


def test_a_non_image_gets_a_400_error(server):
    status, body = post(server, image_request(b"name,area\ncell,12\n"))
    assert status == 400
    assert "not an image" in body["error"]


def test_invalid_base64_gets_a_400_error(server):
    status, body = post(server, {"image": "%%% not base64 %%%"})
    assert status == 400
    assert "base64" in body["error"]


def test_an_image_over_the_pixel_limit_gets_a_400_error(server):
    oversized = np.zeros((300, 300), np.uint8)  # 90,000 pixels > 65,536
    status, body = post(server, image_request(png_bytes(oversized)))
    assert status == 400
    assert "more than the limit" in body["error"]


def test_a_body_over_the_size_limit_gets_a_413_error(server):
    status, body = post(server, {"image": "A" * (MAX_REQUEST_BYTES + 4)})
    assert status == 413
    assert "over the limit" in body["error"]


def test_the_server_keeps_serving_after_bad_requests(server, foam):
    for bad in (b"\xff\xfe", b"[1, 2]", json.dumps(image_request(b"GIF89a broken")).encode()):
        status, _ = post(server, bad)
        assert status == 400
    status, body = post(server, image_request(png_bytes(foam)))
    assert status == 200
    assert body["n_cells"] > 0


@pytest.fixture(scope="module")
def plates(azurite, foam):
    """Container ``plates`` with two images and a text file under ``run1/``, one image under ``other/``."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container("plates")
    service.create_container("results")  # the service writes into an existing container
    container.upload_blob("run1/a.png", png_bytes(foam))
    container.upload_blob("run1/b.png", png_bytes(foam[::-1].copy()))
    container.upload_blob("run1/notes.txt", b"not an image")
    container.upload_blob("other/c.png", png_bytes(foam))
    return service


def test_batch_writes_labels_cells_and_overlays_to_the_result_container(server, plates):
    status, body = post(server, {"container_url": "az://plates", "prefix": "run1/", "result_url": "az://results/run1"})
    assert status == 200
    assert body["result_url"] == "az://results/run1/"
    results = plates.get_container_client("results")
    written = sorted(blob.name for blob in results.list_blobs(name_starts_with="run1/"))
    assert written == sorted(f"run1/{stem}{suffix}" for stem in ("a", "b")
                             for suffix in ("_labels.tif", "_cells.csv", "_overlay.png"))
    counts = {image["name"]: image["n_cells"] for image in body["images"] if "n_cells" in image}
    rows = list(csv.DictReader(io.StringIO(results.download_blob("run1/a_cells.csv").readall().decode())))
    assert len(rows) == counts["run1/a.png"] > 0


def test_batch_reports_a_non_image_blob_as_failed_and_goes_on(server, plates):
    status, body = post(server, {"container_url": "az://plates/run1", "result_url": "az://results/failed-run"})
    assert status == 200
    assert (body["n_images"], body["n_failed"]) == (3, 1)
    failed = [image for image in body["images"] if "error" in image]
    assert failed[0]["name"] == "run1/notes.txt"


def test_batch_count_limits_how_many_images_are_read(server, plates):
    status, body = post(server, {"container_url": "az://plates/run1", "count": 1, "result_url": "az://results/one"})
    assert status == 200
    assert [image["name"] for image in body["images"]] == ["run1/a.png"]


def test_batch_results_default_to_the_results_container_under_the_input_prefix(server, plates):
    status, body = post(server, {"container_url": "az://plates/other"})
    assert status == 200
    assert body["result_url"] == "az://results/other/"
    assert plates.get_container_client("results").get_blob_client("other/c_labels.tif").exists()


def test_batch_on_a_missing_container_gets_an_error_response(server):
    status, body = post(server, {"container_url": "az://no-such-container/x"})
    assert status == 502
    assert "ContainerNotFound" in body["error"]
