"""The parts of the nightly batch that need neither a model nor Luigi running: listing a
batch, retrying, exit codes, the request's rules and the private scheduler."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from cellpipe.settings import Settings
from cellpipe.tasks.outages import OutageLog
from cellpipe.tasks.report import DEFAULT_RETCODES, BatchReport, ImageLine, WorkerResult
from cellpipe.tasks.retry import is_transient, retrying
from cellpipe.tasks.runner import BatchRequest, BatchRequestError
from cellpipe.tasks.scheduler import PrivateScheduler, accepts_connections
from cellpipe.tasks.sources import SourceError, list_batch

DAY = dt.date(2024, 6, 1)


def write(path: Path, data: bytes = b"\x89PNG\r\n\x1a\nnot really") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- listing a batch -----------------------------------------------------------------------

def test_a_dated_batch_lists_the_image_files_of_its_folder_and_below(tmp_path):
    write(tmp_path / "2024-06-01" / "a.png", b"a")
    write(tmp_path / "2024-06-01" / "scope2" / "b.TIF", b"b")
    write(tmp_path / "2024-06-02" / "c.png", b"c")
    listing = list_batch(str(tmp_path), DAY, dated=True)
    assert [ref.name for ref in listing.images] == ["2024-06-01/a.png", "2024-06-01/scope2/b.TIF"]
    assert {ref.batch_date for ref in listing.images} == {DAY}


def test_hidden_files_and_files_that_are_not_images_by_name_are_not_listed(tmp_path):
    write(tmp_path / "2024-06-01" / ".a.png.partial", b"a")
    write(tmp_path / "2024-06-01" / ".upload" / "b.png", b"b")
    write(tmp_path / "2024-06-01" / "~c.png", b"c")
    write(tmp_path / "2024-06-01" / "notes.txt", b"d")
    assert list_batch(str(tmp_path), DAY, dated=True).images == ()


def test_ground_truth_folders_are_not_listed_as_images(tmp_path):
    write(tmp_path / "2024-06-01" / "a.png")
    write(tmp_path / "2024-06-01" / "truth" / "a.tif", b"II*\x00labels")
    write(tmp_path / "2024-06-01-truth" / "a.tif", b"II*\x00labels")
    for dated in (True, False):
        listing = list_batch(str(tmp_path), DAY, dated=dated)
        assert [ref.name for ref in listing.images] == ["2024-06-01/a.png"]


def test_images_are_identified_by_the_sha256_of_their_bytes(tmp_path):
    import hashlib

    write(tmp_path / "2024-06-01" / "a.png", b"pixels")
    (ref,) = list_batch(str(tmp_path), DAY, dated=True).images
    assert ref.content_hash == hashlib.sha256(b"pixels").hexdigest() and ref.size_bytes == 6


def test_the_same_bytes_twice_are_listed_once_and_reported_as_a_duplicate(tmp_path):
    write(tmp_path / "2024-06-01" / "a.png", b"same")
    write(tmp_path / "2024-06-01" / "b.png", b"same")
    listing = list_batch(str(tmp_path), DAY, dated=True)
    assert [ref.name for ref in listing.images] == ["2024-06-01/a.png"]
    assert [ref.name for ref in listing.duplicates] == ["2024-06-01/b.png"]


def test_a_night_without_a_folder_is_an_empty_batch(tmp_path):
    assert list_batch(str(tmp_path), DAY, dated=True).images == ()


def test_an_undated_listing_takes_the_date_of_a_dated_folder_else_the_run_date(tmp_path):
    write(tmp_path / "2024-05-30" / "old.png", b"old")
    write(tmp_path / "loose.png", b"loose")
    dates = {ref.name: ref.batch_date for ref in list_batch(str(tmp_path), DAY, dated=False).images}
    assert dates == {"2024-05-30/old.png": dt.date(2024, 5, 30), "loose.png": DAY}


def test_a_missing_input_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(SourceError, match="nowhere"):
        list_batch(str(tmp_path / "nowhere"), DAY, dated=True)


def test_the_coordinator_finds_the_shipped_model_where_the_unet_package_keeps_it():
    from cellpipe.tasks.context import shipped_model_path
    from cellpipe.unet import DEFAULT_MODEL_PATH

    assert shipped_model_path() == DEFAULT_MODEL_PATH


def test_a_missing_model_is_an_error_naming_the_file(tmp_path):
    from cellpipe.tasks.context import ModelNotFoundError, resolve_model

    with pytest.raises(ModelNotFoundError, match="absent.keras"):
        resolve_model(str(tmp_path / "absent.keras"))


# --- retrying --------------------------------------------------------------------------------

def operational_error() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("could not connect to server: Connection refused"))


def test_database_and_connection_errors_are_transient():
    assert is_transient(operational_error())
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())


def test_data_errors_are_not_transient():
    assert not is_transient(IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")))
    assert not is_transient(ValueError("bad image"))


def test_a_transient_error_is_retried_until_the_call_succeeds():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise operational_error()
        return "stored"

    assert retrying(flaky, first_wait_s=0)() == "stored" and len(calls) == 3


def test_a_transient_error_that_persists_is_raised_after_the_last_attempt():
    calls = []

    def down():
        calls.append(1)
        raise operational_error()

    with pytest.raises(OperationalError):
        retrying(down, attempts=4, first_wait_s=0)()
    assert len(calls) == 4


def test_other_errors_are_raised_at_once():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        retrying(broken, first_wait_s=0)()
    assert len(calls) == 1


# --- outages ----------------------------------------------------------------------------------

def test_an_outage_over_many_tasks_of_one_retry_wave_logs_one_line_when_it_starts_and_one_when_it_ends(caplog):
    log = OutageLog(wave_s=3600)
    with caplog.at_level(logging.WARNING, logger="cellpipe.tasks.outages"):
        for _task in range(100):
            for _attempt in range(4):
                log.failed(operational_error())
            log.gave_up(operational_error())
        log.succeeded("database")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "database unreachable" in lines[0] and "Connection refused" in lines[0]
    assert "answers again" in lines[1]
    (outage,) = log.outages()
    assert outage.service == "database" and outage.failures == 400 and outage.seconds >= 0
    assert "recovered" in outage.describe()


def test_a_new_retry_wave_of_an_outage_logs_one_more_line(caplog):
    log = OutageLog(wave_s=0)
    with caplog.at_level(logging.WARNING, logger="cellpipe.tasks.outages"):
        log.failed(operational_error())
        log.gave_up(operational_error())
        log.gave_up(operational_error())
    assert [("still" in record.getMessage()) for record in caplog.records] == [False, True, True]


def test_a_storage_call_that_succeeds_does_not_end_a_database_outage():
    log = OutageLog(quiet=True)
    log.failed(operational_error())
    log.succeeded("storage")
    (outage,) = log.outages()
    assert outage.ended is None and "not recovered" in outage.describe()


def test_retrying_tells_the_outage_log_of_the_failures_it_rode_out():
    log = OutageLog(quiet=True)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise operational_error()
        return "stored"

    assert retrying(flaky, first_wait_s=0, outages=log)() == "stored"
    (outage,) = log.outages()
    assert outage.failures == 2 and outage.ended is not None


# --- exit codes ------------------------------------------------------------------------------

def report(*categories: str, **worker) -> BatchReport:
    images = [ImageLine(f"{i}.png", f"{i:064x}", category) for i, category in enumerate(categories)]
    return BatchReport(images=images, workers=[WorkerResult(0, 1, **worker)], seconds=1.0,
                       scheduler="local scheduler", run_id=1, output="")


def test_a_run_where_everything_is_stored_or_skipped_exits_0():
    assert report("stored", "skipped", "stored_elsewhere").exit_code(DEFAULT_RETCODES) == 0


def test_a_failed_image_exits_with_task_failed():
    assert report("stored", "failed").exit_code(DEFAULT_RETCODES) == DEFAULT_RETCODES["task_failed"]


def test_images_left_undone_exit_with_not_run():
    assert report("stored", "pending").exit_code(DEFAULT_RETCODES) == DEFAULT_RETCODES["not_run"]


def test_a_crashed_worker_exits_with_unhandled_exception_over_everything_else():
    codes = DEFAULT_RETCODES
    assert report("failed", "pending", crashed="MemoryError").exit_code(codes) == codes["unhandled_exception"]


def test_task_and_scheduling_errors_that_a_retry_cured_exit_0_when_every_image_ended_stored():
    worker = dict(failed_tasks=("a.png: OperationalError: the connection is lost",), scheduling_errors=True)
    assert report("stored", "stored", "skipped", **worker).exit_code(DEFAULT_RETCODES) == 0


def test_an_image_left_pending_by_a_task_error_exits_with_task_failed():
    worker = dict(failed_tasks=("a.png: OperationalError: the connection is lost",))
    assert report("stored", "pending", **worker).exit_code(DEFAULT_RETCODES) == DEFAULT_RETCODES["task_failed"]


def test_an_image_left_pending_by_a_scheduling_error_exits_with_scheduling_error():
    codes = DEFAULT_RETCODES
    assert report("stored", "pending", scheduling_errors=True).exit_code(codes) == codes["scheduling_error"]


def test_the_exit_codes_come_from_the_retcode_section():
    assert report("failed").exit_code({"task_failed": 7}) == 7


def test_the_shipped_luigi_cfg_sets_the_default_exit_codes():
    import configparser

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[1] / "luigi.cfg")
    assert {name: config.getint("retcode", name) for name in DEFAULT_RETCODES} == DEFAULT_RETCODES


# --- requests ------------------------------------------------------------------------------

SETTINGS = Settings(db_url="sqlite:///cells.sqlite", input="/data/in")


def test_a_request_takes_a_date_or_a_range_not_both():
    with pytest.raises(BatchRequestError, match="not both"):
        BatchRequest(SETTINGS, date=DAY, since=DAY)


def test_a_backfill_covers_every_day_from_since_to_until():
    request = BatchRequest(SETTINGS, since=dt.date(2024, 5, 30), until=dt.date(2024, 6, 1))
    assert request.batches == [(dt.date(2024, 5, 30), True), (dt.date(2024, 5, 31), True), (DAY, True)]


def test_a_backfill_that_ends_before_it_starts_is_refused():
    with pytest.raises(BatchRequestError, match="after"):
        BatchRequest(SETTINGS, since=DAY, until=dt.date(2024, 5, 1))


def test_a_request_without_input_says_where_to_set_it():
    with pytest.raises(BatchRequestError, match=r"--input"):
        BatchRequest(Settings(db_url="sqlite:///cells.sqlite"), date=DAY)


def test_without_a_date_a_request_takes_everything_under_the_input_as_of_today():
    assert BatchRequest(SETTINGS, today=DAY).batches == [(DAY, False)]


# --- the private scheduler ------------------------------------------------------------------

def test_the_private_luigid_listens_on_loopback_while_open_and_is_gone_after():
    with PrivateScheduler() as scheduler:
        assert scheduler.url.startswith("http://127.0.0.1:")
        assert accepts_connections("127.0.0.1", scheduler.port)
        state_dir = scheduler.state_dir
    assert not accepts_connections("127.0.0.1", scheduler.port)
    assert not state_dir.exists()


# --- which model the batch uses ------------------------------------------------------------

def fake_model(folder: Path) -> Path:
    """A model file with its card: enough for resolving, not for predicting."""
    write(folder / "model.json", b"{}")
    return write(folder / "model.keras", folder.name.encode())


def test_the_batch_uses_the_database_default_model_when_none_is_configured(tmp_path, db_url, engine):
    from cellpipe.db import register_model
    from cellpipe.tasks.context import batch_model

    promoted = fake_model(tmp_path / "promoted")
    register_model(engine, "unet", "2", file_hash="a" * 64, location=str(promoted), make_default=True)
    assert batch_model(Settings(db_url=db_url), engine).path == promoted.resolve()


def test_a_configured_model_wins_over_the_database_default(tmp_path, db_url, engine):
    from cellpipe.db import register_model
    from cellpipe.tasks.context import batch_model

    register_model(engine, "unet", "2", file_hash="a" * 64, location=str(fake_model(tmp_path / "promoted")),
                   make_default=True)
    configured = fake_model(tmp_path / "configured")
    assert batch_model(Settings(db_url=db_url, model=str(configured)), engine).path == configured.resolve()


def test_without_a_default_the_batch_uses_the_shipped_model(db_url, engine):
    from cellpipe.tasks.context import batch_model, shipped_model_path

    assert batch_model(Settings(db_url=db_url), engine).path == shipped_model_path().resolve()
