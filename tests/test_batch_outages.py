"""A bad night says exactly what happened: outages ridden out exit 0, a database down at the start exits 35.

Real parts only: ``cellpipe run`` as a subprocess, the real PostgreSQL at 127.0.0.1:5432
behind a TCP proxy on loopback (``tcp_proxy.py``) that the test cuts for some seconds in
the middle of a batch, and a closed loopback port for a database that never answers.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy
from test_batch import DAY, REPO, copy_samples, samples  # noqa: F401 - samples is a fixture

from cellpipe.db import open_database
from cellpipe.tasks.report import DEFAULT_RETCODES
from cellpipe.tasks.scheduler import free_port

pytest_plugins = ["tiny_model"]

N_IMAGES = 10
#: Seconds the proxy stays cut: longer than one call's retries (~8 s), so tasks fail and are retried.
OUTAGE_S = 12.0
RETRY_DELAY_S = 2


def luigi_config(tmp_path: Path) -> Path:
    """Return a copy of the shipped luigi.cfg whose scheduler retries a failed task after 2 s, not 60."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "luigi.cfg")
    config.set("scheduler", "retry_delay", str(RETRY_DELAY_S))
    path = tmp_path / "luigi.cfg"
    with open(path, "w") as handle:
        config.write(handle)
    return path


def cellpipe_run(config: Path, *args: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CELLPIPE_")}
    environment["LUIGI_CONFIG_PATH"] = str(config)
    return subprocess.Popen([sys.executable, "-m", "cellpipe.cli", "run", *args], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def count(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def proxied_database(postgres_databases):
    """Yield ``(proxy, URL through the proxy, direct URL)`` of a new PostgreSQL database at head."""
    direct = postgres_databases()
    open_database(direct).dispose()
    with TcpProxy(make_url(direct).port or 5432) as proxy:
        yield proxy, make_url(direct).set(port=proxy.port).render_as_string(hide_password=False), direct


def test_a_postgresql_outage_in_the_middle_of_a_batch_is_ridden_out_and_named_in_the_summary(
        tmp_path, tiny_model, samples, proxied_database):  # noqa: F811
    proxy, url, direct = proxied_database
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), N_IMAGES)
    summary_path = tmp_path / "summary.json"
    run = cellpipe_run(luigi_config(tmp_path), "--date", DAY.isoformat(), "--db", url, "--model", str(tiny_model),
                       "--input", str(tmp_path / "input"), "--output", str(tmp_path / "results"),
                       "--summary-json", str(summary_path))
    deadline = time.monotonic() + 300
    while count(direct, "SELECT count(*) FROM segmentations") < 2:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.05)
    proxy.cut()
    cut_at = time.monotonic()
    stored_at_cut = count(direct, "SELECT count(*) FROM segmentations")
    time.sleep(OUTAGE_S)
    proxy.restore()
    output = run.communicate(timeout=300)[0]

    assert stored_at_cut < N_IMAGES, f"the batch was over before the outage: {output}"
    assert run.returncode == 0, output
    summary = json.loads(summary_path.read_text())
    assert summary["counts"]["stored"] == N_IMAGES and summary["exit_code"] == 0, summary["counts"]
    assert count(direct, "SELECT count(*) FROM segmentations") == N_IMAGES
    assert count(direct, "SELECT count(DISTINCT image_id) FROM segmentations") == N_IMAGES
    assert count(direct, "SELECT count(*) FROM runs WHERE status = 'succeeded' AND images_segmented = 10") == 1
    assert len(summary["outages"]) == 1, summary["outages"]
    (outage,) = summary["outages"]
    assert outage["service"] == "database" and outage["ended"] is not None
    assert OUTAGE_S - 3 <= outage["seconds"] <= time.monotonic() - cut_at
    assert "outage: database unreachable" in output and "recovered" in output
    assert "Traceback" not in output
    # One line when it starts, one per retry wave, one when it ends, one in the summary: not one per task.
    assert len([line for line in output.splitlines() if "unreachable" in line]) <= 2 + OUTAGE_S / RETRY_DELAY_S, output


def test_a_database_down_at_the_start_exits_35_with_one_line_naming_host_and_cause(tmp_path, samples):  # noqa: F811
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 1)
    closed_port = free_port("127.0.0.1")
    run = cellpipe_run(REPO / "luigi.cfg", "--date", DAY.isoformat(), "--input", str(tmp_path / "input"),
                       "--db", f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/cells")
    output = run.communicate(timeout=120)[0]
    assert run.returncode == DEFAULT_RETCODES["scheduling_error"] == 35, output
    (line,) = [line for line in output.splitlines() if line.strip()]
    assert f"127.0.0.1:{closed_port}" in line and "Connection refused" in line, line
    assert "Traceback" not in output


def test_debug_adds_the_traceback_of_a_database_down_at_the_start(tmp_path, samples):  # noqa: F811
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), 1)
    run = cellpipe_run(REPO / "luigi.cfg", "--date", DAY.isoformat(), "--input", str(tmp_path / "input"), "--debug",
                       "--db", f"postgresql+psycopg://postgres@127.0.0.1:{free_port('127.0.0.1')}/cells")
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 35, output
    assert "Traceback" in output and "OperationalError" in output
