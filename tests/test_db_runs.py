"""Runs: a run whose process died is "interrupted", never "running" forever."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from typing import Iterator

import pytest
from sqlalchemy import Engine, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from cellpipe import db
from cellpipe.db import Run, create_engine, head_revision, upgrade
from cellpipe.db.schema import downgrade
from cellpipe.db.writes import boot_time

# Starts a run in its own process, says its id, then waits to be killed.
RUN_UNTIL_KILLED = """
import sys, time
from cellpipe.db import create_engine, start_run
print(start_run(create_engine(sys.argv[1])), flush=True)
time.sleep(600)
"""


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen]:
    """Yield a process that stays alive until the test ends."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def dead_pid() -> int:
    """Return the pid of a process that has exited (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def add_running_run(engine: Engine, pid: int | None, host: str | None = None, started_at=None) -> int:
    values = {"started_at": started_at} if started_at else {}
    with engine.begin() as connection:
        return connection.execute(
            insert(Run)
            .values(code_version="test", host=host or socket.gethostname(), pid=pid, parameters={},
                    status="running", **values)
            .returning(Run.id)
        ).scalar_one()


def status_of(engine: Engine, run_id: int) -> str:
    with engine.connect() as connection:
        return connection.execute(select(Run.status).where(Run.id == run_id)).scalar_one()


def test_a_new_run_records_this_process_and_host(engine):
    run_id = db.start_run(engine)
    with engine.connect() as connection:
        run = connection.execute(select(Run).where(Run.id == run_id)).one()
    assert (run.pid, run.host, run.status) == (os.getpid(), socket.gethostname(), "running")


def test_a_killed_run_is_interrupted_when_the_next_run_starts(db_url, engine):
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_UNTIL_KILLED, db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"the run did not start: {line!r} {process.stderr.read() if not line else ''}"
        killed_run = int(line)
        assert status_of(engine, killed_run) == "running"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    next_run = db.start_run(engine)
    with engine.connect() as connection:
        killed = connection.execute(select(Run).where(Run.id == killed_run)).one()
    assert killed.status == "interrupted" and killed.finished_at is not None
    assert status_of(engine, next_run) == "running"


def test_a_run_of_a_live_process_stays_running(engine, live_process):
    run_id = add_running_run(engine, pid=live_process.pid)
    db.start_run(engine)
    assert status_of(engine, run_id) == "running"


def test_a_run_from_before_the_last_boot_is_interrupted_though_its_pid_is_alive_again(engine, live_process):
    booted = boot_time()
    assert booted is not None, "this test needs Linux's /proc/stat"
    before_boot = add_running_run(engine, pid=live_process.pid, started_at=booted - dt.timedelta(hours=1))
    since_boot = add_running_run(engine, pid=live_process.pid, started_at=booted + dt.timedelta(seconds=1))
    assert db.mark_interrupted_runs(engine) == 1
    assert [status_of(engine, run_id) for run_id in (before_boot, since_boot)] == ["interrupted", "running"]


def test_a_run_of_another_host_stays_running_though_its_pid_is_gone_here(engine):
    run_id = add_running_run(engine, pid=dead_pid(), host=f"not-{socket.gethostname()}")
    db.start_run(engine)
    assert status_of(engine, run_id) == "running"


def test_a_run_without_a_pid_stays_running(engine):
    run_id = add_running_run(engine, pid=None)
    db.start_run(engine)
    assert status_of(engine, run_id) == "running"


def test_a_finished_run_keeps_its_status_though_its_process_is_gone(engine):
    run_id = add_running_run(engine, pid=dead_pid())
    with engine.begin() as connection:
        connection.execute(update(Run).where(Run.id == run_id).values(status="succeeded"))
    assert db.mark_interrupted_runs(engine) == 0
    assert status_of(engine, run_id) == "succeeded"


def test_mark_interrupted_runs_returns_how_many_runs_it_marked(engine, live_process):
    gone = [add_running_run(engine, pid=dead_pid()) for _ in range(2)]
    alive = add_running_run(engine, pid=live_process.pid)
    assert db.mark_interrupted_runs(engine) == 2
    assert [status_of(engine, run_id) for run_id in (*gone, alive)] == ["interrupted", "interrupted", "running"]
    assert db.mark_interrupted_runs(engine) == 0


def test_a_status_outside_the_known_ones_is_rejected(engine):
    run_id = add_running_run(engine, pid=None)
    with pytest.raises(IntegrityError):
        with engine.begin() as connection:
            connection.execute(update(Run).where(Run.id == run_id).values(status="paused"))
    assert status_of(engine, run_id) == "running"


# Rows written at revision 0002, whose tables have no pid column: plain SQL.
ROWS_AT_0002 = [
    "INSERT INTO runs (id, code_version, host, parameters, status) VALUES (1, 'old', :host, '{}', 'running')",
    "INSERT INTO images (id, content_hash, source_uri, size_bytes, batch_date) "
    "VALUES (1, :image_hash, '/data/a.tif', 1, '2024-06-01')",
    "INSERT INTO models (id, name, version, file_hash, location, card, metrics, cloud_ids) "
    "VALUES (1, 'unet', '1', :model_hash, '/m.keras', '{}', '{}', '{}')",
    "INSERT INTO segmentations (id, image_id, model_id, param_hash, parameters, run_id, n_cells, timings) "
    "VALUES (1, 1, 1, :param_hash, '{}', 1, 0, '{}')",
]


@pytest.fixture
def engine_at_0002(empty_db_url) -> Iterator[Engine]:
    """Yield an engine on a database at revision 0002 with a running run and its segmentation."""
    engine = create_engine(empty_db_url)
    upgrade(engine, "0002")
    values = {"host": socket.gethostname(), "image_hash": "a" * 64, "model_hash": "b" * 64, "param_hash": "c" * 64}
    with engine.begin() as connection:
        for statement in ROWS_AT_0002:
            connection.execute(text(statement), values)
    yield engine
    engine.dispose()


def test_upgrading_from_0002_keeps_a_running_run_without_a_pid(engine_at_0002):
    upgrade(engine_at_0002)
    with engine_at_0002.connect() as connection:
        run = connection.execute(select(Run.status, Run.pid, Run.code_version).where(Run.id == 1)).one()
    assert tuple(run) == ("running", None, "old")
    assert db.mark_interrupted_runs(engine_at_0002) == 0


def test_upgrading_from_0002_keeps_the_run_of_each_segmentation(engine_at_0002):
    upgrade(engine_at_0002)
    with engine_at_0002.connect() as connection:
        assert connection.execute(text("SELECT run_id FROM segmentations WHERE id = 1")).scalar_one() == 1


def test_upgrading_from_0002_allows_interrupted_runs(engine_at_0002):
    upgrade(engine_at_0002)
    with engine_at_0002.begin() as connection:
        connection.execute(update(Run).where(Run.id == 1).values(status="interrupted"))
    assert status_of(engine_at_0002, 1) == "interrupted"


def test_downgrading_to_0002_records_interrupted_runs_as_failed(engine_at_0002):
    upgrade(engine_at_0002)
    with engine_at_0002.begin() as connection:
        connection.execute(update(Run).where(Run.id == 1).values(status="interrupted"))
    downgrade(engine_at_0002, "0002")
    with engine_at_0002.connect() as connection:
        assert connection.execute(text("SELECT status FROM runs WHERE id = 1")).scalar_one() == "failed"
        assert connection.execute(text("SELECT run_id FROM segmentations WHERE id = 1")).scalar_one() == 1
    assert "pid" not in {column["name"] for column in inspect(engine_at_0002).get_columns("runs")}
    assert head_revision() != "0002"
