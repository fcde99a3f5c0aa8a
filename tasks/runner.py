"""``cellpipe run``: list the batch, start the workers, collect their reports, summarise.

Process layout (why: TensorFlow is not fork-safe, and Luigi's ``workers=N`` forks a
process per task, which would also reload the model for every image):

- ``--workers 1``: Luigi runs in this process, ``workers=1`` (no fork), with the local
  scheduler, or the ``luigid`` of ``--scheduler-url``.
- ``--workers N`` (N > 1): N worker processes are *spawned* (fresh interpreters, no
  fork), each runs ``luigi.build(..., workers=1)`` and loads the model once; they share
  the ``luigid`` of ``--scheduler-url`` or, without one, a private ``luigid`` on a free
  loopback port that this process starts and stops. Workers die with this process.

What each worker does is :mod:`cellpipe.tasks.worker`. This process lists the batch
once (hashing every file), registers the model, starts a ``runs`` row, snapshots the
database, passes the listing to the workers, turns their events into progress
(``on_event``) and builds the :class:`BatchReport` from the database afterwards. Images that another run (one sharing no scheduler with this one)
claimed are waited for before that, up to :data:`CLAIM_WAIT_S`, so that the report
says who stored them. A database that does not answer at the start ends the run
before anything is listed as done: :class:`cellpipe.db.DatabaseUnreachableError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import os
import queue as queue_module
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from cellpipe.db import claim_holders, finish_run, open_database, parameter_hash, start_run
from cellpipe.db.engine import unreachable
from cellpipe.settings import Settings
from cellpipe.tasks.context import (
    BatchEvent,
    BatchIdentity,
    batch_model,
    batch_params,
    database_identity,
    output_location,
)
from cellpipe.tasks.outages import OUTAGES, OutageLog, merged, service_of
from cellpipe.tasks.report import BatchReport, Duplicate, ImageLine, WorkerResult
from cellpipe.tasks.retry import is_transient, retrying
from cellpipe.tasks.sources import list_batch
from cellpipe.tasks.state import ensure_model, image_states
from cellpipe.tasks.worker import BatchRoot, WorkerSpec, worker_main, worker_process

#: Seconds a dead worker may take to deliver its last report before it counts as crashed.
_REPORT_GRACE_S = 5.0
#: Seconds the run waits, once its workers are done, for images that another run claimed
#: (it is segmenting them) to be stored; still claimed after that, they count as pending.
CLAIM_WAIT_S = 600.0
_CLAIM_POLL_S = 0.5


class BatchRequestError(ValueError):
    """The arguments of a batch run contradict each other."""


@dataclass(frozen=True)
class BatchRequest:
    """What to run.

    Attributes
    ----------
    settings : Settings
        Database, model, input, output and thresholds.
    date : datetime.date, optional
        A dated batch: the images of ``INPUT/YYYY-MM-DD/``.
    since, until : datetime.date, optional
        A backfill (Luigi ``RangeDaily``) over the dated batches from ``since`` to
        ``until`` inclusive (default: today).
    workers : int
        Worker processes (see the module docstring).
    scheduler_url : str, optional
        A shared ``luigid``, e.g. ``http://scheduler-host:8082``.
    retry_failed : bool
        Process images recorded as failed by earlier runs again.
    today : datetime.date, optional
        The run's date (default: today): the date of images found outside dated
        folders when neither ``date`` nor ``since`` is given ("everything new under
        INPUT/").
    """

    settings: Settings
    date: dt.date | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    workers: int = 1
    scheduler_url: str | None = None
    retry_failed: bool = False
    today: dt.date = field(default_factory=dt.date.today)

    def __post_init__(self) -> None:
        if self.date is not None and (self.since is not None or self.until is not None):
            raise BatchRequestError("give either --date or --since/--until, not both")
        if self.until is not None and self.since is None:
            raise BatchRequestError("--until needs --since")
        if self.since is not None and self.since > (self.until or self.today):
            raise BatchRequestError(f"--since {self.since} is after --until {self.until or self.today}")
        if self.workers < 1:
            raise BatchRequestError(f"--workers must be at least 1, got {self.workers}")
        if not self.settings.input:
            raise BatchRequestError("no input: give --input FOLDER or set input in the [cellpipe] section of luigi.cfg")

    @property
    def batches(self) -> list[tuple[dt.date, bool]]:
        """Return ``(date, dated)`` of every batch the run covers."""
        if self.since is not None:
            days = ((self.until or self.today) - self.since).days + 1
            return [(self.since + dt.timedelta(days=i), True) for i in range(days)]
        if self.date is not None:
            return [(self.date, True)]
        return [(self.today, False)]


def run_batch(request: BatchRequest, on_event: Callable[[BatchEvent], None] | None = None) -> BatchReport:
    """Run the batch of ``request``; return its report (``report.exit_code()`` for the process).

    Parameters
    ----------
    request : BatchRequest
    on_event : callable, optional
        Called in this process with every :class:`BatchEvent`, first a ``planned``
        event whose ``data`` holds ``total``, ``skipped`` and ``unreadable``.

    Raises
    ------
    cellpipe.tasks.context.ModelNotFoundError, cellpipe.tasks.sources.SourceError
        Before anything runs, when the model or the input is missing.
    cellpipe.db.DatabaseUnreachableError
        When the database does not answer this process (after retries): before anything
        runs, or when the run is to be recorded.
    """
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc)
    settings = request.settings
    emit = on_event or (lambda event: None)
    settings.pipeline_params()  # a bad setting fails here, before anything is listed
    listings = {(settings.input, date, dated): list_batch(settings.input, date, dated=dated,
                                                             cache_dir=settings.cache_dir)
                for date, dated in request.batches}
    refs = list({ref.content_hash: ref for listing in reversed(listings.values()) for ref in listing.images}.values())
    refs.sort(key=lambda ref: (ref.batch_date, ref.name))
    unreadable = [item for listing in listings.values() for item in listing.unreadable]

    # Quiet: a database that never answers is reported by the caller, in one line.
    start_outages = OutageLog(quiet=True)
    try:
        engine = retrying(open_database, outages=start_outages)(settings.db_url)
    except Exception as error:
        if is_transient(error):
            raise unreachable(settings.db_url, error) from error
        raise
    try:
        model = retrying(batch_model)(settings, engine)
        model_id = retrying(ensure_model)(engine, name=model.name, version=model.version, file_hash=model.sha256,
                                          location=str(model.path), card=model.card)
        params = batch_params(settings, model)
        param_hash = parameter_hash(params.as_dict())
        hashes = [ref.content_hash for ref in refs]
        before = retrying(image_states)(engine, hashes, model_id, param_hash)
        done_before = {h for h, state in before.items()
                       if state.segmented or (state.status == "failed" and not request.retry_failed)}
        identity = BatchIdentity(database_identity(settings.db_url), model.sha256, params.as_dict())
        root = BatchRoot(settings.input, tuple(request.batches), request.since is not None, identity, request.today)
        with _scheduler(request) as (scheduler_url, scheduler_description):
            run_id = retrying(start_run)(engine, batch_date=request.batches[0][0] if len(request.batches) == 1 else None,
                                         parameters=_run_parameters(request, model, params, scheduler_description))
            emit(BatchEvent("planned", data={"total": len(refs) + len(unreadable), "skipped": len(done_before),
                                             "unreadable": unreadable, "run_id": run_id}))
            collector = _Collector(emit)
            specs = [
                WorkerSpec(i, settings, run_id, request.retry_failed, root, listings, scheduler_url,
                            load_model=len(done_before) < len(refs), parent_pid=os.getpid())
                for i in range(request.workers)
            ]
            workers = _run_in_process(specs[0], collector) if request.workers == 1 else _run_spawned(specs, collector)
        after = _after_claims(engine, hashes, model_id, param_hash)
        report = BatchReport(
            images=_image_lines(refs, unreadable, before, after, done_before, collector),
            workers=workers,
            seconds=time.perf_counter() - started,
            scheduler=scheduler_description,
            run_id=run_id,
            output=output_location(settings),
            stage_seconds=collector.mean_stage_seconds(),
            duplicates=_duplicates(listings.values()),
            outages=merged(start_outages.outages(), *(list(worker.outages) for worker in workers),
                           OUTAGES.outages(since=started_at)),
        )
        retrying(finish_run)(engine, run_id, status="succeeded" if report.exit_code() == 0 else "failed",
                             images_seen=len(report.images), images_failed=report.count("failed"),
                             summary=report.run_summary())
        return report
    except Exception as error:
        if is_transient(error) and service_of(error) == "database":  # down again after the start, past its retries
            raise unreachable(settings.db_url, error) from error
        raise
    finally:
        engine.dispose()


def _after_claims(engine, hashes: list[str], model_id: int, param_hash: str) -> dict:
    """Return the image states once no other run holds a claim on an image of ``hashes`` that is not done."""
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        states = retrying(image_states)(engine, hashes, model_id, param_hash)
        undone = [state.image_id for state in states.values() if not state.segmented and state.status != "failed"]
        if not undone or time.monotonic() > deadline:
            return states
        if not retrying(claim_holders)(engine, undone, model_id, param_hash):
            return states
        time.sleep(_CLAIM_POLL_S)


def _duplicates(listings) -> list[Duplicate]:
    duplicates = []
    for listing in listings:
        first = {ref.content_hash: ref.name for ref in listing.images}
        duplicates.extend(Duplicate(ref.name, first[ref.content_hash], ref.content_hash)
                          for ref in listing.duplicates)
    return duplicates


class _Collector:
    """Receives worker events in this process: remembers what was stored, forwards the rest."""

    def __init__(self, emit: Callable[[BatchEvent], None]) -> None:
        self.emit = emit
        self.stored: dict[str, BatchEvent] = {}
        self.errors: dict[str, str] = {}

    def __call__(self, event: BatchEvent) -> None:
        if event.kind == "stored":
            self.stored[event.content_hash] = event
        elif event.kind in ("task_error", "changed", "claimed"):
            self.errors[event.content_hash] = event.reason
        self.emit(event)

    def mean_stage_seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for event in self.stored.values():
            for stage, seconds in event.timings.items():
                totals[stage] = totals.get(stage, 0.0) + seconds
        return {stage: total / len(self.stored) for stage, total in totals.items()}


def _image_lines(refs, unreadable, before, after, done_before, collector: _Collector) -> list[ImageLine]:
    lines = []
    for ref in refs:
        h, state = ref.content_hash, after.get(ref.content_hash)
        if h in done_before:
            earlier = before[h]
            reason = f"failed earlier: {earlier.last_error}" if not earlier.segmented else ""
            lines.append(ImageLine(ref.name, h, "skipped", earlier.n_cells, reason))
        elif h in collector.stored:
            lines.append(ImageLine(ref.name, h, "stored", collector.stored[h].n_cells))
        elif state is not None and state.segmented:
            lines.append(ImageLine(ref.name, h, "stored_elsewhere", state.n_cells))
        elif state is not None and state.status == "failed":
            lines.append(ImageLine(ref.name, h, "failed", reason=state.last_error or ""))
        else:
            lines.append(ImageLine(ref.name, h, "pending", reason=collector.errors.get(h, "not processed")))
    lines.extend(ImageLine(name, "", "failed", reason=reason) for name, reason in unreadable)
    return lines


def _run_parameters(request: BatchRequest, model, params, scheduler: str) -> dict:
    return {
        "pipeline": params.as_dict(),
        "model": {"sha256": model.sha256, "path": str(model.path)},
        "input": request.settings.input,
        "batches": [date.isoformat() for date, _ in request.batches],
        "dated": request.batches[0][1],
        "workers": request.workers,
        "scheduler": scheduler,
        "retry_failed": request.retry_failed,
    }


@contextlib.contextmanager
def _scheduler(request: BatchRequest) -> Iterator[tuple[str | None, str]]:
    if request.scheduler_url:
        yield request.scheduler_url, f"luigid at {request.scheduler_url}"
    elif request.workers > 1:
        from cellpipe.tasks.scheduler import PrivateScheduler

        with PrivateScheduler() as private:
            yield private.url, f"private luigid at {private.url}"
    else:
        yield None, "local scheduler"


def _run_in_process(spec: WorkerSpec, collector: _Collector) -> list[WorkerResult]:
    try:
        return [worker_main(spec, collector)]
    except Exception as error:  # noqa: BLE001 - reported as a crashed worker, exit code unhandled_exception
        return [WorkerResult(spec.worker, os.getpid(), crashed=f"{type(error).__name__}: {error}")]


def _run_spawned(specs: list[WorkerSpec], collector: _Collector) -> list[WorkerResult]:
    spawn = multiprocessing.get_context("spawn")
    events = spawn.Queue()
    processes = {spec.worker: spawn.Process(target=worker_process, args=(spec, events),
                                             name=f"cellpipe-worker-{spec.worker}") for spec in specs}
    for process in processes.values():
        process.start()
    results: dict[int, WorkerResult] = {}
    dead_since: dict[int, float] = {}
    try:
        while len(results) < len(processes):
            try:
                item = events.get(timeout=0.5)
            except queue_module.Empty:
                for worker, process in processes.items():
                    if worker in results or process.is_alive():
                        continue
                    first_seen = dead_since.setdefault(worker, time.monotonic())
                    if time.monotonic() - first_seen > _REPORT_GRACE_S:
                        results[worker] = WorkerResult(worker, process.pid or 0,
                                                       crashed=f"worker exited with code {process.exitcode}")
                continue
            if isinstance(item, WorkerResult):
                results[item.worker] = item
            else:
                collector(item)
    finally:
        for process in processes.values():
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
    return [results[worker] for worker in sorted(results)]
