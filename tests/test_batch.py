"""The nightly batch, end to end, on small synthetic images and a briefly trained tiny U-Net.

Runs with one worker happen in this process (as ``cellpipe run --workers 1`` does);
runs that need real processes (a shared luigid, SIGKILL, several workers) start
``cellpipe run`` as subprocesses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tifffile
from sqlalchemy import create_engine, text

from cellpipe.settings import Settings
from cellpipe.tasks import BatchRequest, run_batch
from cellpipe.tasks.report import DEFAULT_RETCODES
from cellpipe.tasks.scheduler import accepts_connections, free_port

pytest_plugins = ["tiny_model"]  # the session fixture `tiny_model`

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2024, 6, 1)
IMAGE_SIDE = 160
N_SAMPLES = 20


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> Path:
    """Return a folder of synthetic foam/tissue PNGs (ground truth beside it, see truth_path)."""
    from cellpipe.synthetic import write_samples

    folder = tmp_path_factory.mktemp("samples")
    write_samples(folder, N_SAMPLES, size=(IMAGE_SIDE, IMAGE_SIDE), seed=7, mean_cell_diameter=20)
    return folder


def copy_samples(samples: Path, folder: Path, count: int, first: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in samples.glob("*.png"))[first : first + count]
    return [Path(shutil.copy(samples / name, folder / name)) for name in names]


def settings_for(tmp_path: Path, model: Path, **changes) -> Settings:
    values = dict(db_url=f"sqlite:///{tmp_path / 'cells.sqlite'}", model=str(model),
                  input=str(tmp_path / "input"), output=str(tmp_path / "results"))
    return Settings(**{**values, **changes})


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


def cellpipe_run(*args: str, **popen) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CELLPIPE_")}
    environment["LUIGI_CONFIG_PATH"] = str(REPO / "luigi.cfg")
    return subprocess.Popen([sys.executable, "-m", "cellpipe.cli", "run", *args], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def command_args(settings: Settings, *extra: str) -> list[str]:
    return ["--db", settings.db_url, "--model", settings.model, "--input", settings.input,
            "--output", settings.output, *extra]


# --- what gets stored --------------------------------------------------------------------

def test_good_images_are_stored_with_about_as_many_cells_as_drawn(tmp_path, tiny_model, samples):
    from cellpipe.io import read_labels_tiff
    from cellpipe.synthetic import truth_path

    images = copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 4)
    settings = settings_for(tmp_path, tiny_model)
    report = run_batch(BatchRequest(settings, date=DAY))
    assert report.counts["stored"] == 4 and report.exit_code() == 0
    stored = dict(query(settings, "SELECT i.source_uri, s.n_cells FROM segmentations s JOIN images i ON i.id = s.image_id"))
    for image in images:
        drawn = int(read_labels_tiff(truth_path(samples / image.name)).max())
        assert abs(stored[str(image.resolve())] - drawn) <= 0.25 * drawn
    assert query(settings, "SELECT count(*) FROM segmentations s WHERE "
                 "(SELECT count(*) FROM cells c WHERE c.segmentation_id = s.id) != s.n_cells") == [(0,)]


def test_result_files_are_written_by_batch_date_and_named_in_the_database(tmp_path, tiny_model, samples):
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 2)
    settings = settings_for(tmp_path, tiny_model)
    run_batch(BatchRequest(settings, date=DAY))
    for (label_uri,) in query(settings, "SELECT label_uri FROM segmentations"):
        assert Path(label_uri).parent == tmp_path / "results" / DAY.isoformat()
        assert Path(label_uri).is_file() and Path(label_uri.replace("_labels.tif", "_cells.csv")).is_file()
    assert not list((tmp_path / "results").rglob("*.tmp"))


def test_the_overlay_is_written_only_with_the_overlay_setting(tmp_path, tiny_model, samples):
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 2)
    run_batch(BatchRequest(settings_for(tmp_path, tiny_model), date=DAY))
    assert not list((tmp_path / "results").rglob("*_overlay.png"))
    run_batch(BatchRequest(settings_for(tmp_path / "with", tiny_model, input=str(tmp_path / "input"), overlay=True),
                           date=DAY))
    assert len(list((tmp_path / "with" / "results").rglob("*_overlay.png"))) == 2


@pytest.mark.parametrize("configured, environment, flag, expected", [
    (None, None, None, False), ("true", None, None, True), ("yes", "0", None, False), ("off", None, True, True)])
def test_the_overlay_setting_reads_luigi_cfg_then_the_environment_then_the_flag(tmp_path, configured, environment,
                                                                               flag, expected):
    config = tmp_path / "luigi.cfg"
    config.write_text("[cellpipe]\n" + (f"overlay = {configured}\n" if configured else ""))
    environ = {"CELLPIPE_OVERLAY": environment} if environment else {}
    assert Settings.load({"overlay": flag}, config_path=config, environ=environ).overlay is expected


def test_reading_ahead_stores_the_cells_of_a_run_without_it(tmp_path, tiny_model, samples, monkeypatch):
    from cellpipe.tasks.read_ahead import ReadAhead

    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 5)
    ahead = settings_for(tmp_path / "ahead", tiny_model, input=str(tmp_path / "input"))
    assert run_batch(BatchRequest(ahead, date=DAY)).counts["stored"] == 5
    monkeypatch.setattr(ReadAhead, "after", lambda self, ref, parameters: None)
    plain = settings_for(tmp_path / "plain", tiny_model, input=str(tmp_path / "input"))
    assert run_batch(BatchRequest(plain, date=DAY)).counts["stored"] == 5
    assert cell_rows(ahead) == cell_rows(plain)


def test_tasks_run_in_listing_order_so_each_image_after_the_first_was_read_ahead(tmp_path, tiny_model, samples,
                                                                                  monkeypatch):
    from cellpipe.tasks.read_ahead import ReadAhead

    taken = []
    take = ReadAhead.take

    def recording_take(self, ref, parameters):
        taken.append(ref.content_hash in self._ahead)
        return take(self, ref, parameters)

    monkeypatch.setattr(ReadAhead, "take", recording_take)
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 5)
    assert run_batch(BatchRequest(settings_for(tmp_path, tiny_model), date=DAY)).counts["stored"] == 5
    assert taken == [False, True, True, True, True]


def stored_parameters(settings: Settings) -> list[tuple[str, dict]]:
    return [(param_hash, json.loads(parameters) if isinstance(parameters, str) else parameters)
            for param_hash, parameters in query(settings, "SELECT param_hash, parameters FROM segmentations")]


def test_the_scale_of_each_image_is_stored_with_its_parameters_but_not_in_their_hash(tmp_path, tiny_model, samples):
    from cellpipe.db import parameter_hash
    from cellpipe.pipeline import PipelineParams

    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 2)
    settings = settings_for(tmp_path, tiny_model)
    run_batch(BatchRequest(settings, date=DAY))
    requested = settings.pipeline_params().as_dict()  # the tiny model's card has no tuned values
    stored = stored_parameters(settings)
    assert len(stored) == 2
    for param_hash, parameters in stored:
        assert parameters["scale"] == {"cell_diameter": None, "factor": 1, "source": "native", "passes": 1}
        assert param_hash == parameter_hash(requested)
        assert PipelineParams.from_dict(parameters) == PipelineParams.from_dict(requested)


def test_the_batch_uses_the_model_cards_tuned_values_and_a_given_cell_diameter(tmp_path, tiny_model, samples):
    from tiny_model import model_copy

    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 1)
    model = model_copy(tiny_model, tmp_path / "model", postprocessing={"min_area": 30},
                       scale={"cell_diameter_px": 20})
    settings = settings_for(tmp_path, model, cell_diameter=20.0)
    assert run_batch(BatchRequest(settings, date=DAY)).counts["stored"] == 1
    ((_, parameters),) = stored_parameters(settings)
    assert parameters["segment"]["min_area"] == 30 and parameters["cell_diameter"] == 20
    assert parameters["scale"]["source"] == "given" and parameters["scale"]["cell_diameter"] == 20
    assert run_batch(BatchRequest(settings, date=DAY)).counts["skipped"] == 1


def test_unreadable_files_are_recorded_as_failed_and_the_others_stored(tmp_path, tiny_model, samples):
    from cellpipe.synthetic import synthetic_cells

    folder = tmp_path / "input" / DAY.isoformat()
    copy_samples(samples, folder, 2)
    png = (samples / sorted(p.name for p in samples.glob("*.png"))[5]).read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("exposure 20 ms, gain 2\n")
    tifffile.imwrite(folder / "deep.tif", synthetic_cells((IMAGE_SIDE, IMAGE_SIDE), kind="tissue", seed=3,
                                                          mean_cell_diameter=20, dtype=np.uint16).image)
    settings = settings_for(tmp_path, tiny_model)
    report = run_batch(BatchRequest(settings, date=DAY))
    assert report.counts["stored"] == 3 and report.counts["failed"] == 3
    assert report.exit_code(DEFAULT_RETCODES) == DEFAULT_RETCODES["task_failed"]
    failed = dict(query(settings, "SELECT source_uri, last_error FROM images WHERE status = 'failed'"))
    reasons = {Path(uri).name: error for uri, error in failed.items()}
    assert "truncated or corrupt" in reasons["truncated.png"]
    assert "empty" in reasons["empty.png"]
    assert "text file" in reasons["notes.png"]
    assert query(settings, "SELECT bit_depth FROM images WHERE source_uri LIKE '%deep.tif'") == [(16,)]


def test_the_command_exit_code_says_that_an_image_failed(tmp_path, tiny_model, samples):
    from typer.testing import CliRunner

    from cellpipe.cli import _register_commands, app
    from cellpipe.tasks.report import luigi_retcodes

    folder = tmp_path / "input" / DAY.isoformat()
    copy_samples(samples, folder, 1)
    (folder / "empty.png").write_bytes(b"")
    settings = settings_for(tmp_path, tiny_model)
    _register_commands()
    result = CliRunner().invoke(app, ["run", "--date", DAY.isoformat(), *command_args(settings)])
    assert result.exit_code == luigi_retcodes()["task_failed"] != 0, result.output


def test_a_transient_database_error_is_retried_and_the_image_stored(tmp_path, tiny_model, samples, monkeypatch):
    from sqlalchemy.exc import OperationalError

    import cellpipe.tasks.steps as steps

    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 2)
    calls = []

    def flaky_store(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        return store(*args, **kwargs)

    store = steps.store_segmentation
    monkeypatch.setattr(steps, "store_segmentation", flaky_store)
    report = run_batch(BatchRequest(settings_for(tmp_path, tiny_model), date=DAY))
    assert report.counts["stored"] == 2 and len(calls) == 3


def test_an_image_that_changed_since_it_was_listed_is_left_for_the_next_run(tmp_path, tiny_model, samples,
                                                                           monkeypatch):
    import cellpipe.tasks.read_ahead as read_ahead

    (image,) = copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 1)
    settings = settings_for(tmp_path, tiny_model)
    monkeypatch.setattr(read_ahead, "read_source", lambda uri: b"still being copied")
    report = run_batch(BatchRequest(settings, date=DAY))
    assert [(line.category, "changed" in line.reason) for line in report.images] == [("pending", True)]
    assert query(settings, "SELECT count(*) FROM images") == [(0,)]
    monkeypatch.undo()
    assert run_batch(BatchRequest(settings, date=DAY)).counts["stored"] == 1


# --- reruns ------------------------------------------------------------------------------

def test_a_rerun_changes_nothing(tmp_path, tiny_model, samples):
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 3)
    settings = settings_for(tmp_path, tiny_model)
    run_batch(BatchRequest(settings, date=DAY))
    before = query(settings, "SELECT id, image_id, run_id, stored_at FROM segmentations ORDER BY id")
    report = run_batch(BatchRequest(settings, date=DAY))
    assert report.counts == {"stored": 0, "stored_elsewhere": 0, "skipped": 3, "failed": 0, "pending": 0}
    assert query(settings, "SELECT id, image_id, run_id, stored_at FROM segmentations ORDER BY id") == before


def test_a_rerun_skips_finished_images_even_after_their_files_were_deleted(tmp_path, tiny_model, samples):
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 2)
    settings = settings_for(tmp_path, tiny_model)
    run_batch(BatchRequest(settings, date=DAY))
    shutil.rmtree(tmp_path / "results")
    assert run_batch(BatchRequest(settings, date=DAY)).counts["skipped"] == 2


def test_the_same_bytes_under_two_names_are_one_image(tmp_path, tiny_model, samples):
    folder = tmp_path / "input" / DAY.isoformat()
    (original,) = copy_samples(samples, folder, 1)
    shutil.copy(original, folder / "x_copy.png")
    settings = settings_for(tmp_path, tiny_model)
    report = run_batch(BatchRequest(settings, date=DAY))
    assert report.counts["stored"] == 1
    assert [(d.name, d.duplicate_of) for d in report.duplicates] == [
        (f"{DAY}/x_copy.png", f"{DAY}/{original.name}")]
    assert query(settings, "SELECT count(*) FROM images") == [(1,)]


def test_the_summary_and_the_report_name_each_duplicate_and_the_image_it_duplicates(tmp_path, tiny_model, samples):
    from typer.testing import CliRunner

    from cellpipe.cli import _register_commands, app

    folder = tmp_path / "input" / DAY.isoformat()
    (original,) = copy_samples(samples, folder, 1)
    shutil.copy(original, folder / "x_copy.png")
    settings = settings_for(tmp_path, tiny_model)
    _register_commands()
    run = CliRunner().invoke(app, ["run", "--date", DAY.isoformat(), "--summary-json", str(tmp_path / "s.json"),
                                   *command_args(settings)])
    assert run.exit_code == 0, run.output
    named = f"duplicate {DAY}/x_copy.png: same bytes as {DAY}/{original.name}"
    assert named in " ".join(run.output.split())
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [(d["name"], d["duplicate_of"]) for d in summary["duplicates"]] == [
        (f"{DAY}/x_copy.png", f"{DAY}/{original.name}")]
    report = CliRunner().invoke(app, ["report", "--date", DAY.isoformat(), "--db", settings.db_url,
                                      "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Duplicate files" in page
    assert f"<td>{DAY}/x_copy.png</td><td>{DAY}/{original.name}</td>" in page


def test_an_image_larger_than_max_pixels_is_recorded_as_failed_naming_the_limit(tmp_path, tiny_model, samples):
    from typer.testing import CliRunner

    from cellpipe.cli import _register_commands, app

    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 1)
    settings = settings_for(tmp_path, tiny_model)
    _register_commands()
    result = CliRunner().invoke(app, ["run", "--date", DAY.isoformat(), "--max-pixels", "1000",
                                      *command_args(settings)])
    assert result.exit_code == DEFAULT_RETCODES["task_failed"], result.output
    ((error,),) = query(settings, "SELECT last_error FROM images WHERE status = 'failed'")
    assert f"{IMAGE_SIDE * IMAGE_SIDE:,} pixels, more than the limit of 1,000" in error and "--max-pixels" in error
    result = CliRunner().invoke(app, ["run", "--date", DAY.isoformat(), "--retry-failed",
                                      "--max-pixels", str(IMAGE_SIDE * IMAGE_SIDE), *command_args(settings)])
    assert result.exit_code == 0, result.output
    assert query(settings, "SELECT status FROM images") == [("segmented",)]


# --- which images a run takes ----------------------------------------------------------------

def test_a_dated_batch_reads_only_its_own_folder(tmp_path, tiny_model, samples):
    copy_samples(samples, tmp_path / "input" / "2024-06-01", 2)
    copy_samples(samples, tmp_path / "input" / "2024-06-02", 2, first=2)
    settings = settings_for(tmp_path, tiny_model)
    run_batch(BatchRequest(settings, date=dt.date(2024, 6, 1)))
    assert query(settings, "SELECT batch_date, count(*) FROM images GROUP BY batch_date") == [("2024-06-01", 2)]


def test_a_backfill_runs_the_batch_of_every_date_in_the_range(tmp_path, tiny_model, samples):
    copy_samples(samples, tmp_path / "input" / "2024-06-01", 2)
    copy_samples(samples, tmp_path / "input" / "2024-06-02", 2, first=2)
    copy_samples(samples, tmp_path / "input" / "2024-06-05", 1, first=4)  # outside the range
    settings = settings_for(tmp_path, tiny_model)
    report = run_batch(BatchRequest(settings, since=dt.date(2024, 6, 1), until=dt.date(2024, 6, 3)))
    assert report.counts["stored"] == 4
    assert query(settings, "SELECT batch_date, count(*) FROM images GROUP BY batch_date ORDER BY 1") == [
        ("2024-06-01", 2), ("2024-06-02", 2)]


def test_an_undated_run_takes_everything_new_under_the_input(tmp_path, tiny_model, samples):
    copy_samples(samples, tmp_path / "input" / "2024-06-01", 1)
    copy_samples(samples, tmp_path / "input", 1, first=1)
    settings = settings_for(tmp_path, tiny_model)
    today = dt.date(2024, 7, 1)
    assert run_batch(BatchRequest(settings, date=dt.date(2024, 6, 1))).counts["stored"] == 1
    report = run_batch(BatchRequest(settings, today=today))
    assert report.counts["stored"] == 1 and report.counts["skipped"] == 1
    assert query(settings, "SELECT batch_date FROM images ORDER BY 1") == [("2024-06-01",), ("2024-07-01",)]


# --- processes ---------------------------------------------------------------------------

@pytest.fixture
def luigid(tmp_path):
    """Yield the URL of a real luigid on a loopback port (state in tmp_path), then stop it."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from luigi.cmdline import luigid; luigid(sys.argv[1:])",
         "--address", "127.0.0.1", "--port", str(port), "--state-path", str(tmp_path / "luigid.pickle"),
         "--logdir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not accepts_connections("127.0.0.1", port):
        assert server.poll() is None and time.monotonic() < deadline, "luigid did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=20)


def luigid_tasks(url: str, status: str) -> dict:
    data = json.dumps({"status": status, "upstream_status": "", "search": "ProcessImage"})
    with urllib.request.urlopen(f"{url}/api/task_list?data={urllib.parse.quote(data)}", timeout=10) as reply:
        return json.load(reply)["response"]


@pytest.mark.slow
def test_two_processes_sharing_a_luigid_segment_every_image_exactly_once(tmp_path, tiny_model, samples, luigid):
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), N_SAMPLES)
    settings = settings_for(tmp_path, tiny_model)
    runs = [cellpipe_run("--date", DAY.isoformat(), "--scheduler-url", luigid,
                         "--summary-json", str(tmp_path / f"summary{i}.json"), *command_args(settings))
            for i in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    summaries = [json.loads((tmp_path / f"summary{i}.json").read_text()) for i in range(2)]
    assert sum(summary["counts"]["stored"] for summary in summaries) == N_SAMPLES
    assert query(settings, "SELECT count(*), count(DISTINCT image_id) FROM segmentations") == [(N_SAMPLES, N_SAMPLES)]
    assert query(settings, "SELECT count(*) FROM (SELECT DISTINCT segmentation_id, label FROM cells)") == \
        query(settings, "SELECT count(*) FROM cells")
    assert len(luigid_tasks(luigid, "DONE")) == N_SAMPLES


@pytest.mark.slow
def test_several_workers_share_a_private_luigid_and_load_the_model_once_each(tmp_path, tiny_model, samples):
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 6)
    settings = settings_for(tmp_path, tiny_model)
    run = cellpipe_run("--date", DAY.isoformat(), "--workers", "2", "--summary-json", str(tmp_path / "s.json"),
                       *command_args(settings))
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["counts"]["stored"] == 6
    assert [worker["model_loads"] for worker in summary["workers"]] == [1, 1]
    assert len({worker["pid"] for worker in summary["workers"]} | {run.pid}) == 3
    assert summary["scheduler"].startswith("private luigid at http://127.0.0.1:")
    port = int(summary["scheduler"].rstrip("/").rsplit(":", 1)[1])
    assert not accepts_connections("127.0.0.1", port)  # stopped with the run


@pytest.mark.slow
def test_a_run_killed_half_way_then_rerun_ends_with_the_rows_of_a_clean_run(tmp_path, tiny_model, samples):
    n = 16
    killed = settings_for(tmp_path / "killed", tiny_model)
    clean = settings_for(tmp_path / "clean", tiny_model)
    for settings in (killed, clean):
        copy_samples(samples, Path(settings.input) / DAY.isoformat(), n)
    run = cellpipe_run("--date", DAY.isoformat(), *command_args(killed), start_new_session=True)
    database = Path(killed.db_url.removeprefix("sqlite:///"))
    stored_at_kill = 0
    while run.poll() is None and stored_at_kill < 3:
        time.sleep(0.05)
        if database.exists():
            stored_at_kill = query(killed, "SELECT count(*) FROM segmentations")[0][0] if _has_tables(killed) else 0
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate(timeout=60)
    stored_after_kill = query(killed, "SELECT count(*) FROM segmentations")[0][0]
    assert 0 < stored_after_kill < n, "the run was not killed half-way"

    rerun = run_batch(BatchRequest(killed, date=DAY))
    assert rerun.counts["stored"] == n - stored_after_kill, rerun.as_dict()
    run_batch(BatchRequest(clean, date=DAY))
    assert cell_rows(killed) == cell_rows(clean)
    assert query(killed, "SELECT count(*) FROM segmentations s WHERE "
                 "(SELECT count(*) FROM cells c WHERE c.segmentation_id = s.id) != s.n_cells") == [(0,)]


def _has_tables(settings: Settings) -> bool:
    return bool(query(settings, "SELECT 1 FROM sqlite_master WHERE name = 'segmentations'"))


@pytest.mark.slow
def test_the_demo_stores_the_good_images_and_reports_the_corrupt_one(tmp_path, tiny_model):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CELLPIPE_")}
    demo = subprocess.run(
        [sys.executable, "-m", "cellpipe.demo", "--out", str(tmp_path), "--model", str(tiny_model),
         "--images", "3", "--size", str(IMAGE_SIDE)],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"]["stored"] == 2 and summary["counts"]["failed"] == 1
    assert "mean_area_px" in demo.stdout and "corrupt_truncated.png" in demo.stdout
