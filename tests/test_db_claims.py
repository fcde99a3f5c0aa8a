"""Claims: a run segmenting an image × model × parameters holds its claim; others leave it alone until the holder is gone.

Other processes' claims are written as rows naming a real live (or exited) process, on
each backend; two real ``cellpipe run`` processes claiming at once are in
``test_batch_two_runs.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket

import pytest
from sqlalchemy import Engine, func, insert, select, update
from test_db_runs import add_running_run, dead_pid, live_process  # noqa: F401 - live_process is a fixture

from cellpipe import db
from cellpipe.db import Claim, Run

PARAM_HASH = "a" * 64


@pytest.fixture
def key(engine: Engine) -> tuple[int, int, str]:
    """Return (image id, model id, parameter hash) of a registered image and model."""
    image_id = db.register_image(engine, hashlib.sha256(b"image").hexdigest(), "/in/a.png", size_bytes=10,
                                 batch_date=dt.date(2024, 6, 1))
    model_id = db.register_model(engine, "unet", "1", file_hash=hashlib.sha256(b"weights").hexdigest(),
                                 location="/m.keras")
    return image_id, model_id, PARAM_HASH


def add_claim(engine: Engine, key, *, run_id: int | None, pid: int, host: str | None = None, age_s: float = 0) -> None:
    image_id, model_id, param_hash = key
    with engine.begin() as connection:
        connection.execute(insert(Claim).values(
            image_id=image_id, model_id=model_id, param_hash=param_hash, run_id=run_id, pid=pid,
            host=host or socket.gethostname(),
            claimed_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_s)))


def claim_rows(engine: Engine) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(Claim.run_id, Claim.host, Claim.pid))]


def test_an_unclaimed_image_is_claimed_by_this_process(engine, key):
    run_id = db.start_run(engine)
    assert db.claim_segmentation(engine, *key, run_id=run_id) is None
    assert claim_rows(engine) == [(run_id, socket.gethostname(), os.getpid())]
    assert db.claim_segmentation(engine, *key, run_id=run_id) is None  # held already: still ours


def test_a_claim_of_another_live_run_is_left_to_it_and_names_it(engine, key, live_process):  # noqa: F811
    other = add_running_run(engine, live_process.pid)
    add_claim(engine, key, run_id=other, pid=live_process.pid)
    holder = db.claim_segmentation(engine, *key, run_id=db.start_run(engine))
    assert holder == db.ClaimHolder(other, socket.gethostname(), live_process.pid)
    assert f"run {other}" in holder.describe() and str(live_process.pid) in holder.describe()
    assert claim_rows(engine) == [(other, socket.gethostname(), live_process.pid)]
    assert db.claim_holders(engine, [key[0]], key[1], key[2]) == {key[0]: holder}


def test_a_claim_whose_process_has_exited_is_taken_over(engine, key):
    gone = dead_pid()
    add_claim(engine, key, run_id=add_running_run(engine, gone), pid=gone)
    run_id = db.start_run(engine)
    assert db.claim_segmentation(engine, *key, run_id=run_id) is None
    assert claim_rows(engine) == [(run_id, socket.gethostname(), os.getpid())]


def test_a_claim_of_a_run_that_finished_is_taken_over(engine, key, live_process):  # noqa: F811
    other = add_running_run(engine, live_process.pid, host="another-host")
    db.finish_run(engine, other, status="failed")
    add_claim(engine, key, run_id=other, pid=live_process.pid, host="another-host")
    assert db.claim_holders(engine, [key[0]], key[1], key[2]) == {}
    assert db.claim_segmentation(engine, *key, run_id=db.start_run(engine)) is None


def test_a_claim_older_than_the_stale_age_is_taken_over_even_from_another_host(engine, key):
    other = add_running_run(engine, 4242, host="another-host")
    add_claim(engine, key, run_id=other, pid=4242, host="another-host", age_s=120)
    run_id = db.start_run(engine)
    assert db.claim_segmentation(engine, *key, run_id=run_id, stale_after_s=300) is not None
    assert db.claim_segmentation(engine, *key, run_id=run_id, stale_after_s=60) is None


def test_releasing_drops_only_this_process_s_claim(engine, key, live_process):  # noqa: F811
    other = add_running_run(engine, live_process.pid)
    add_claim(engine, key, run_id=other, pid=live_process.pid)
    db.release_claim(engine, *key)
    assert len(claim_rows(engine)) == 1
    with engine.begin() as connection:
        connection.execute(update(Run).where(Run.id == other).values(status="succeeded"))
    assert db.claim_segmentation(engine, *key, run_id=db.start_run(engine)) is None
    db.release_claim(engine, *key)
    assert claim_rows(engine) == []


def test_deleting_an_image_deletes_its_claims(engine, key):
    db.claim_segmentation(engine, *key, run_id=None)
    with engine.begin() as connection:
        connection.execute(db.Image.__table__.delete())
        assert connection.execute(select(func.count()).select_from(Claim)).scalar_one() == 0
