"""One worker of ``cellpipe run``: Luigi in this process (``workers=1``, no fork) over the batch's root task.

:func:`worker_main` runs in the coordinating process (``--workers 1``) or in each
spawned worker process (:func:`worker_process`). It loads the model once, runs
``luigi.build`` with the local scheduler or the shared ``luigid``, and reports what it
stored, which tasks raised and which outages it saw (:class:`WorkerResult`). Tasks that
failed on a transient error get no traceback from Luigi's logger: the process's outage
log has told it once (:mod:`cellpipe.tasks.outages`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
from dataclasses import dataclass
from typing import Callable, Iterator

import luigi
import luigi.configuration
from luigi.execution_summary import LuigiStatusCode
from luigi.task_register import Register

from cellpipe.settings import Settings
from cellpipe.tasks.context import BatchContext, BatchEvent, BatchIdentity, activated, model_loads
from cellpipe.tasks.nightly import NightlyBatch, backfill
from cellpipe.tasks.outages import OUTAGES
from cellpipe.tasks.report import WorkerResult
from cellpipe.tasks.retry import is_transient
from cellpipe.tasks.scheduler import die_with_parent


@dataclass(frozen=True)
class BatchRoot:
    """The root task of a run, in a form that pickles into spawned workers."""

    input: str
    batches: tuple[tuple[dt.date, bool], ...]
    backfill: bool
    identity: BatchIdentity
    today: dt.date

    def task(self) -> luigi.Task:
        """Return the Luigi task: a ``NightlyBatch``, or a ``RangeDaily`` backfill over them."""
        common = dict(input=self.input, database=self.identity.database,
                      model_sha256=self.identity.model_sha256, parameters=self.identity.parameters)
        if self.backfill:
            return backfill(self.batches[0][0], self.batches[-1][0], today=self.today, **common)
        (date, dated), = self.batches
        return NightlyBatch(date=date, dated=dated, **common)


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process runs: its number, settings, run, root task, listings and scheduler."""

    worker: int
    settings: Settings
    run_id: int
    retry_failed: bool
    root: BatchRoot
    listings: dict
    scheduler_url: str | None
    load_model: bool
    parent_pid: int


#: Luigi settings that cellpipe's workers assume where luigi.cfg does not set them (see its [worker] and [scheduler]).
_WORKER_DEFAULTS = {("worker", "check_unfulfilled_deps"): "false", ("scheduler", "prune_on_get_work"): "true"}


def worker_main(spec: WorkerSpec, emit: Callable[[BatchEvent], None]) -> WorkerResult:
    """Run Luigi in this process (``workers=1``, no fork) for ``spec``; return its report."""
    started_at = dt.datetime.now(dt.timezone.utc)
    Register.clear_instance_cache()  # task instances (and their listings) are per run
    config = luigi.configuration.get_config()
    for (section, option), value in _WORKER_DEFAULTS.items():
        # See [worker] and [scheduler] in luigi.cfg: the root runs once its image tasks
        # have run; the local scheduler, too, runs a failed task again after retry_delay.
        if not config.has_option(section, option):
            if not config.has_section(section):
                config.add_section(section)
            config.set(section, option, value)
    OUTAGES.wave_s = config.getfloat("scheduler", "retry_delay", 60.0)
    failed_tasks: list[str] = []
    stored = 0

    def forward(event: BatchEvent) -> None:
        nonlocal stored
        if event.kind == "task_error":
            failed_tasks.append(f"{event.name}: {event.reason}")
        stored += event.kind == "stored"
        emit(event)

    loads_before = model_loads()
    # A worker alone on its (local) scheduler knows which image comes next: it reads ahead.
    context = BatchContext(spec.settings, run_id=spec.run_id, retry_failed=spec.retry_failed,
                           listings=spec.listings, emit=forward, worker=spec.worker,
                           read_ahead=spec.scheduler_url is None)
    with activated(context):
        if spec.load_model:
            # Before scheduling: the model loads once in this process, and the tasks'
            # resources() know whether it sits on a GPU.
            context.segmenter(context.params.as_dict())
        scheduler = {"scheduler_url": spec.scheduler_url} if spec.scheduler_url else {"local_scheduler": True}
        log_level = config.get("core", "log_level", "WARNING")
        with _quiet_transient_failures():
            result = luigi.build([spec.root.task()], workers=1, detailed_summary=True, log_level=log_level,
                                 **scheduler)
    scheduling_failed = {LuigiStatusCode.SCHEDULING_FAILED, LuigiStatusCode.FAILED_AND_SCHEDULING_FAILED}
    succeeded = result.status in {LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY}
    return WorkerResult(spec.worker, os.getpid(), model_loads() - loads_before, stored, tuple(failed_tasks),
                        scheduling_errors=result.status in scheduling_failed,
                        luigi_summary="" if succeeded else result.summary_text,
                        outages=tuple(OUTAGES.outages(since=started_at)))


class _TransientFailureFilter(logging.Filter):
    """Drops Luigi's traceback of a task that failed on a transient error: the outage log told it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or not is_transient(error)


@contextlib.contextmanager
def _quiet_transient_failures() -> Iterator[None]:
    luigi_logger = logging.getLogger("luigi-interface")
    quiet = _TransientFailureFilter()
    luigi_logger.addFilter(quiet)
    try:
        yield
    finally:
        luigi_logger.removeFilter(quiet)


def worker_process(spec: WorkerSpec, events) -> None:
    """Run :func:`worker_main` in a spawned process, putting its events and then its result on ``events``."""
    _die_with_parent(spec.parent_pid)
    try:
        result = worker_main(spec, events.put)
    except BaseException as error:  # noqa: BLE001 - the parent reports it
        result = WorkerResult(spec.worker, os.getpid(), crashed=f"{type(error).__name__}: {error}")
    events.put(result)


def _die_with_parent(parent_pid: int) -> None:
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
