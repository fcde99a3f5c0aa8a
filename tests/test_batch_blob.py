"""The nightly batch on Azure Blob Storage: images from a container, results into another.

Against a real Azure Storage emulator (Azurite, tests/azurite.py), no mocks of the
storage client; the tiny U-Net of tests/tiny_model.py segments small synthetic images.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile
from azure.storage.blob import BlobServiceClient
from PIL import Image
from sqlalchemy import create_engine, text

pytest.register_assert_rewrite("azurite")
pytest_plugins = ["azurite", "tiny_model"]  # the session fixtures `azurite` and `tiny_model`

from azurite import KEY, Azurite, connection_string, free_loopback_port  # noqa: E402
from cellpipe.results import CELLS_SUFFIX, LABELS_SUFFIX, OVERLAY_SUFFIX  # noqa: E402
from cellpipe.settings import Settings  # noqa: E402
from cellpipe.tasks import BatchRequest, run_batch  # noqa: E402
from cellpipe.tasks.blob_target import BlobTarget  # noqa: E402
from cellpipe.tasks.report import luigi_retcodes  # noqa: E402
from cellpipe.tasks.sources import SourceError, list_batch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2024, 6, 1)
N_IMAGES = 50
IMAGE_SIDE = 96
WRONG_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def plates() -> dict[str, bytes]:
    """Return 50 small synthetic foam and tissue PNGs by file name."""
    from cellpipe.synthetic import synthetic_cells

    kinds = ("foam", "tissue")
    return {f"{kinds[i % 2]}_{i:03d}.png": png_bytes(synthetic_cells(IMAGE_SIDE, kind=kinds[i % 2], seed=500 + i,
                                                                     mean_cell_diameter=20).image)
            for i in range(N_IMAGES)}


def new_container(emulator: Azurite) -> str:
    name = f"c{uuid.uuid4().hex[:20]}"
    BlobServiceClient.from_connection_string(emulator.connection_string).create_container(name)
    return name


def upload(emulator: Azurite, container: str, blobs: dict[str, bytes]) -> None:
    """Upload blobs the way a lab's uploader does (plain Put Blob, no cellpipe code)."""
    client = BlobServiceClient.from_connection_string(emulator.connection_string).get_container_client(container)
    for name, content in blobs.items():
        client.upload_blob(name, content)


def published(emulator: Azurite, container: str) -> dict[str, bytes]:
    """Return every committed blob of ``container`` by name."""
    client = BlobServiceClient.from_connection_string(emulator.connection_string).get_container_client(container)
    return {blob.name: client.download_blob(blob.name).readall() for blob in client.list_blobs()}


def dated(names, prefix: str = "plates") -> dict[str, bytes]:
    return {f"{prefix}/{DAY}/{name}": content for name, content in names.items()}


def settings_for(tmp_path: Path, model: Path, inbox: str, outbox: str, name: str = "cells") -> Settings:
    return Settings(db_url=f"sqlite:///{tmp_path / name}.sqlite", model=str(model),
                    input=f"az://{inbox}/plates", output=f"az://{outbox}/cellpipe")


def query(settings: Settings, sql: str) -> list[tuple]:
    engine = create_engine(settings.db_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def cell_rows(settings: Settings) -> list[tuple]:
    return query(settings, """
        SELECT i.content_hash, c.label, c.area, c.bbox_0, c.bbox_1, c.bbox_2, c.bbox_3
        FROM cells c JOIN segmentations s ON s.id = c.segmentation_id JOIN images i ON i.id = s.image_id
        ORDER BY i.content_hash, c.label""")


def stored_count(settings: Settings) -> int:
    if not Path(settings.db_url.removeprefix("sqlite:///")).exists():
        return 0
    if not query(settings, "SELECT 1 FROM sqlite_master WHERE name = 'segmentations'"):
        return 0
    return query(settings, "SELECT count(*) FROM segmentations")[0][0]


def cellpipe_run(emulator: Azurite, settings: Settings, *extra: str, storage_retries: int | None = None,
                 **popen) -> subprocess.Popen:
    """Start ``cellpipe run`` on ``settings`` in a subprocess that has the emulator's connection string."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CELLPIPE_", "AZURE_"))}
    environment.update(LUIGI_CONFIG_PATH=str(REPO / "luigi.cfg"), COLUMNS="1000",  # no wrapped messages
                       AZURE_STORAGE_CONNECTION_STRING=emulator.connection_string)
    if storage_retries is not None:
        environment["CELLPIPE_STORAGE_RETRIES"] = str(storage_retries)
    args = ["--date", DAY.isoformat(), "--db", settings.db_url, "--model", settings.model,
            "--input", settings.input, "--output", settings.output, *extra]
    popen.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "cellpipe.cli", "run", *args], env=environment,
                            stderr=subprocess.STDOUT, text=True, **popen)


def parsed_results(files: dict[str, bytes], prefix: str) -> dict[str, dict[str, object]]:
    """Return every result blob under ``prefix`` parsed (labels array, CSV rows, overlay size), by stem and suffix.

    Fails when a blob does not parse: a partial blob is never visible under a result name.
    """
    parsed: dict[str, dict[str, object]] = {}
    for name, content in files.items():
        assert name.startswith(prefix), name
        file_name = name[len(prefix):]
        suffix = next(s for s in (LABELS_SUFFIX, CELLS_SUFFIX, OVERLAY_SUFFIX) if file_name.endswith(s))
        if suffix == LABELS_SUFFIX:
            value: object = tifffile.imread(io.BytesIO(content))
        elif suffix == CELLS_SUFFIX:
            value = content.decode().splitlines()
            assert value[0].startswith("label,") and len({len(row.split(",")) for row in value}) == 1, name
        else:
            value = Image.open(io.BytesIO(content)).size
        parsed.setdefault(file_name.removesuffix(suffix), {})[suffix] = value
    return parsed


def complete_results(files: dict[str, bytes], prefix: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Return ``(labels, cell rows)`` by stem, checking that every image has both and that all parse."""
    results = {}
    for stem, parsed in parsed_results(files, prefix).items():
        assert {LABELS_SUFFIX, CELLS_SUFFIX} <= set(parsed), f"{stem}: only {sorted(parsed)}"
        results[stem] = (parsed[LABELS_SUFFIX], parsed[CELLS_SUFFIX][1:])
    return results


@pytest.fixture
def azure_env(azurite, monkeypatch):
    """Give this process the emulator's connection string (and no other Azure storage variable)."""
    for name in list(os.environ):
        if name.startswith(("AZURE_STORAGE_", "CELLPIPE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return azurite


# --- listing: blobs are files --------------------------------------------------------------

def test_a_container_is_listed_exactly_like_a_folder_with_the_same_files(azure_env, tmp_path, plates):
    a, b = list(plates.values())[:2]
    tree = {f"{DAY}/a.png": a, "2024-06-02/b.TIF": b, "loose.png": a, "sub/copy_of_a.png": a,
            ".staging/c.png": b, f"{DAY}/~upload.png": b, "notes.txt": b"exposure 20 ms"}
    container = new_container(azure_env)
    upload(azure_env, container, {f"plates/{name}": content for name, content in tree.items()})
    for name, content in tree.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    for dated_batch in (True, False):
        blobs = list_batch(f"az://{container}/plates", DAY, dated=dated_batch)
        files = list_batch(str(tmp_path), DAY, dated=dated_batch)
        for kind in ("images", "duplicates"):
            seen = [(r.name, r.content_hash, r.size_bytes, r.batch_date) for r in getattr(blobs, kind)]
            assert seen == [(r.name, r.content_hash, r.size_bytes, r.batch_date) for r in getattr(files, kind)]
        assert all(ref.uri == f"az://{container}/plates/{ref.name}" for ref in blobs.images)
    assert [ref.name for ref in list_batch(f"az://{container}/plates", DAY, dated=False).images] == [
        f"{DAY}/a.png", "2024-06-02/b.TIF"]


def test_task_ids_of_a_blob_and_a_file_with_the_same_bytes_are_equal(azure_env, tmp_path, plates):
    from cellpipe.tasks.nightly import ProcessImage

    content = next(iter(plates.values()))
    container = new_container(azure_env)
    upload(azure_env, container, {f"plates/{DAY}/a.png": content})
    (tmp_path / DAY.isoformat()).mkdir()
    (tmp_path / DAY.isoformat() / "renamed.png").write_bytes(content)
    (blob,) = list_batch(f"az://{container}/plates", DAY, dated=True).images
    (file,) = list_batch(str(tmp_path), DAY, dated=True).images

    def task(ref):
        return ProcessImage(content_hash=ref.content_hash, database="sqlite:///cells.sqlite", model_sha256="0" * 64,
                            parameters={"invert": "auto"}, source=ref.uri, name=ref.name,
                            size_bytes=ref.size_bytes, batch_date=ref.batch_date)

    assert blob.content_hash == hashlib.sha256(content).hexdigest()
    assert task(blob).task_id == task(file).task_id


# --- the blob target -------------------------------------------------------------------------

def test_a_blob_target_exists_once_written_and_reads_back_its_bytes(azure_env):
    target = BlobTarget(f"az://{new_container(azure_env)}/cellpipe/{DAY}/a_cells.csv")
    assert not target.exists()
    committed = target.write(b"label,area\n1,42\n")
    assert target.exists() and target.read() == b"label,area\n1,42\n"
    assert committed.url == target.url and committed.content_md5 == hashlib.md5(b"label,area\n1,42\n").digest()
    with target.open("r") as readable:
        assert readable.read() == b"label,area\n1,42\n"


def test_a_blob_target_opened_for_writing_commits_on_close_and_nothing_when_the_block_raises(azure_env):
    container = new_container(azure_env)
    written, abandoned = BlobTarget(f"az://{container}/a_labels.tif"), BlobTarget(f"az://{container}/b_labels.tif")
    with written.open("w") as labels:
        labels.write(b"II*\x00")
        assert not written.exists()  # nothing under the name before the commit
    with pytest.raises(RuntimeError, match="segmentation died"):
        with abandoned.open("w") as labels:
            labels.write(b"II*\x00 half of it")
            raise RuntimeError("segmentation died")
    assert written.read() == b"II*\x00" and not abandoned.exists()


# --- runs ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_fifty_blobs_are_segmented_once_each_by_two_workers_and_their_results_published(
        azurite, tmp_path, tiny_model, plates):
    inbox, outbox = new_container(azurite), new_container(azurite)
    upload(azurite, inbox, dated(plates))
    settings = settings_for(tmp_path, tiny_model, inbox, outbox)
    run = cellpipe_run(azurite, settings, "--workers", "2", "--summary-json", str(tmp_path / "summary.json"))
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"]["stored"] == N_IMAGES
    assert sum(worker["stored"] for worker in summary["workers"]) == N_IMAGES  # no image segmented twice
    assert query(settings, "SELECT count(*), count(DISTINCT image_id) FROM segmentations") == [(N_IMAGES, N_IMAGES)]

    rows = query(settings, "SELECT i.source_uri, i.content_hash, s.n_cells, s.label_uri "
                           "FROM images i JOIN segmentations s ON s.image_id = i.id")
    expected = {f"az://{inbox}/plates/{DAY}/{name}": hashlib.sha256(content).hexdigest()
                for name, content in plates.items()}
    assert {uri: content_hash for uri, content_hash, _, _ in rows} == expected
    results = complete_results(published(azurite, outbox), f"cellpipe/{DAY}/")
    assert sorted(results) == sorted(Path(name).stem for name in plates)
    for uri, _, n_cells, label_uri in rows:
        stem = Path(uri).stem
        assert label_uri == f"az://{outbox}/cellpipe/{DAY}/{stem}{LABELS_SUFFIX}"
        labels, cells = results[stem]
        assert len(cells) == n_cells == len(np.unique(labels[labels > 0])) > 0


@pytest.mark.slow
def test_a_run_cut_off_by_a_storage_outage_is_finished_by_a_rerun_with_the_results_of_a_clean_run(
        tmp_path, tiny_model, plates, monkeypatch):
    with Azurite(tmp_path / "azurite") as emulator:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", emulator.connection_string)
        inbox, outbox, clean_outbox = (new_container(emulator) for _ in range(3))
        upload(emulator, inbox, dated(plates))
        clean = settings_for(tmp_path, tiny_model, inbox, clean_outbox, "clean")
        assert run_batch(BatchRequest(clean, date=DAY)).counts["stored"] == N_IMAGES

        cut = settings_for(tmp_path, tiny_model, inbox, outbox, "cut")
        with open(tmp_path / "cut.log", "w") as log:
            run = cellpipe_run(emulator, cut, storage_retries=0, stdout=log, start_new_session=True)
        try:
            while run.poll() is None and stored_count(cut) < 20:
                time.sleep(0.05)
            emulator.stop()
            # Until the run has met the outage after its own retries: its outage log says so once per wave.
            deadline = time.monotonic() + 120
            while run.poll() is None and "storage still unreachable" not in (tmp_path / "cut.log").read_text():
                assert time.monotonic() < deadline, (tmp_path / "cut.log").read_text()
                time.sleep(0.2)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=60)
        stored_before = stored_count(cut)
        assert 0 < stored_before < N_IMAGES, f"the outage did not cut the run: {stored_before} stored"
        assert query(cut, "SELECT count(*) FROM images WHERE status = 'failed'") == [(0,)]  # not the images' fault

        emulator.start()
        after_outage = parsed_results(published(emulator, outbox), f"cellpipe/{DAY}/")  # no partial blob
        for (source_uri,) in query(cut, "SELECT i.source_uri FROM images i JOIN segmentations s ON s.image_id = i.id"):
            assert {LABELS_SUFFIX, CELLS_SUFFIX} <= set(after_outage[Path(source_uri).stem])  # stored: all there
        rerun = run_batch(BatchRequest(cut, date=DAY))
        assert rerun.counts["stored"] == N_IMAGES - stored_before and rerun.exit_code() == 0, rerun.as_dict()
        assert cell_rows(cut) == cell_rows(clean)
        assert query(cut, "SELECT count(*), count(DISTINCT image_id) FROM segmentations") == [(N_IMAGES, N_IMAGES)]
        assert published(emulator, outbox) == published(emulator, clean_outbox)


def test_a_text_blob_and_an_empty_blob_are_recorded_as_failed_and_the_others_stored(
        azure_env, tmp_path, tiny_model, plates):
    inbox, outbox = new_container(azure_env), new_container(azure_env)
    good = dict(list(plates.items())[:2])
    upload(azure_env, inbox, dated({**good, "notes.png": b"exposure 20 ms, gain 2\n", "empty.tif": b""}))
    settings = settings_for(tmp_path, tiny_model, inbox, outbox)
    report = run_batch(BatchRequest(settings, date=DAY))
    assert (report.counts["stored"], report.counts["failed"]) == (2, 2)
    assert report.exit_code() == luigi_retcodes()["task_failed"]
    failed = dict(query(settings, "SELECT source_uri, last_error FROM images WHERE status = 'failed'"))
    assert "text file" in failed[f"az://{inbox}/plates/{DAY}/notes.png"]
    assert "empty" in failed[f"az://{inbox}/plates/{DAY}/empty.tif"]


# --- errors before any work --------------------------------------------------------------------

def run_command(*args: str) -> tuple[int, str]:
    """Return the exit code and the output (lines joined, as rich wraps them) of ``cellpipe run``."""
    from typer.testing import CliRunner

    from cellpipe.cli import _register_commands, app

    _register_commands()
    result = CliRunner().invoke(app, ["run", "--date", DAY.isoformat(), *args])
    return result.exit_code, " ".join(result.output.split())


def test_a_missing_input_container_stops_the_run_with_a_clear_message(azure_env, tmp_path):
    exit_code, output = run_command("--input", "az://no-such-inbox/plates", "--output", str(tmp_path / "results"),
                         "--db", f"sqlite:///{tmp_path / 'cells.sqlite'}")
    assert exit_code == 2, output
    assert "cannot list az://no-such-inbox/plates" in output and "does not exist" in output


def test_a_missing_output_container_stops_the_run_before_any_image_is_segmented(azure_env, tmp_path, plates):
    inbox = new_container(azure_env)
    upload(azure_env, inbox, dated(dict(list(plates.items())[:1])))
    exit_code, output = run_command("--input", f"az://{inbox}/plates", "--output", "az://no-such-outbox/cellpipe",
                         "--db", f"sqlite:///{tmp_path / 'cells.sqlite'}")
    assert exit_code == 2, output
    assert "cannot write results to az://no-such-outbox/cellpipe" in output
    assert not (tmp_path / "cells.sqlite").exists()


def test_wrong_credentials_stop_the_run_without_showing_the_key(azure_env, tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(azure_env.endpoint, WRONG_KEY))
    inbox = new_container(azure_env)
    exit_code, output = run_command("--input", f"az://{inbox}/plates", "--output", str(tmp_path / "results"),
                         "--db", f"sqlite:///{tmp_path / 'cells.sqlite'}")
    assert exit_code == 2, output
    assert "refused" in output and "AZURE_STORAGE_KEY" in output
    assert WRONG_KEY[:12] not in output and KEY[:12] not in output


def test_an_unreachable_store_at_the_start_fails_the_run_with_the_scheduling_error_code(azure_env, tmp_path,
                                                                                          monkeypatch):
    nowhere = f"http://127.0.0.1:{free_loopback_port()}/devstoreaccount1"  # nothing listens there
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(nowhere, KEY))
    monkeypatch.setenv("CELLPIPE_STORAGE_RETRIES", "0")
    exit_code, output = run_command("--input", "az://inbox/plates", "--output", str(tmp_path / "results"),
                         "--db", f"sqlite:///{tmp_path / 'cells.sqlite'}")
    assert exit_code == luigi_retcodes()["scheduling_error"] != 0, output
    assert f"cannot reach the blob service at {nowhere}" in output


def test_an_az_input_without_any_storage_account_configured_names_the_variables_to_set(monkeypatch):
    for name in list(os.environ):
        if name.startswith("AZURE_STORAGE_"):
            monkeypatch.delenv(name)
    with pytest.raises(SourceError, match="cannot list az://inbox/plates: .*AZURE_STORAGE_CONNECTION_STRING"):
        list_batch("az://inbox/plates", DAY, dated=True)


def test_az_locations_in_luigi_cfg_are_used_and_an_output_inside_the_input_is_refused(azure_env, tmp_path,
                                                                                      monkeypatch):
    inbox = new_container(azure_env)
    config = tmp_path / "luigi.cfg"
    config.write_text(f"[cellpipe]\ninput = az://{inbox}/plates\noutput = az://{inbox}/plates/results\n")
    monkeypatch.setenv("LUIGI_CONFIG_PATH", str(config))
    exit_code, output = run_command("--db", f"sqlite:///{tmp_path / 'cells.sqlite'}")
    assert exit_code == 2, output
    assert f"output az://{inbox}/plates/results lies inside the input az://{inbox}/plates" in output
