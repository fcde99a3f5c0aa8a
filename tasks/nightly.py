"""The Luigi tasks of the nightly batch: one per image, one per night, a backfill range.

``NightlyBatch(date)`` ─requires→ ``ProcessImage(content_hash, …)`` for each image of
the night; ``backfill(since, until)`` is a ``RangeDaily`` over ``NightlyBatch``.

A ``ProcessImage`` task id is its family plus its significant parameters: the image's
content hash and the :class:`~cellpipe.tasks.context.BatchIdentity` (database without
password, model hash, segmentation parameters). Two processes — on one machine or
many — that list the same images therefore schedule the same task ids, and a shared
``luigid`` hands each to exactly one worker. Where the file was found, its size and
batch date ride along as insignificant parameters.

A ``ProcessImage`` is complete when the database has its result: a segmentation for
(content hash, model, parameter hash), or the image recorded as failed (unless the run
retries failed images). Intermediate files do not count, so deleting them never makes
finished work run again. A database that does not answer the question, even after
retries, makes the task not complete rather than a scheduling error: its ``run()``
looks again (and is retried by the scheduler while the outage lasts).
"""

from __future__ import annotations

import datetime as dt

import luigi
from luigi.tools.range import RangeDaily

from cellpipe.db import parameter_hash
from cellpipe.db.engine import error_cause
from cellpipe.tasks.context import BatchEvent, current
from cellpipe.tasks.retry import is_transient, retrying
from cellpipe.tasks.sources import ImageRef
from cellpipe.tasks.state import image_states
from cellpipe.tasks.steps import process_image


#: Priority of the first image of a listing; each later one has one less.
LISTING_PRIORITY = 10**9


class ProcessImage(luigi.Task):
    """Segment one image and store its cells (see :func:`cellpipe.tasks.steps.process_image`)."""

    content_hash = luigi.Parameter(description="sha256 of the image file: the image's identity")
    database = luigi.Parameter(description="database URL without password")
    model_sha256 = luigi.Parameter(description="sha256 of the model file")
    parameters = luigi.DictParameter(description="segmentation parameters (PipelineParams.as_dict())")
    source = luigi.Parameter(significant=False, description="where the image was found")
    name = luigi.Parameter(significant=False, description="path relative to the input")
    size_bytes = luigi.IntParameter(significant=False)
    batch_date = luigi.DateParameter(significant=False)
    position = luigi.IntParameter(default=0, significant=False, description="place in the batch's listing")

    @property
    def priority(self) -> int:
        # Tasks run in listing order, so that a worker reading ahead reads the next one.
        # Above 0: Luigi raises a task's priority to that of the tasks requiring it.
        return LISTING_PRIORITY - self.position

    @property
    def resources(self) -> dict[str, int]:
        # One "gpu" per segmentation when this worker predicts on a GPU; [resources] in
        # luigi.cfg says how many may run at once across the workers of a scheduler.
        return current().task_resources()

    def ref(self) -> ImageRef:
        """Return the image this task processes."""
        return ImageRef(uri=self.source, name=self.name, content_hash=self.content_hash,
                        size_bytes=self.size_bytes, batch_date=self.batch_date)

    def complete(self) -> bool:
        context = current()
        context.check_identity(self.database, self.model_sha256)
        try:
            model_id = context.model_id(self.model_sha256)
            states = retrying(image_states)(context.engine, [self.content_hash], model_id,
                                            parameter_hash(self.parameters))
        except Exception as error:
            if is_transient(error):
                return False  # told once by the outage log; run() finds out what is stored
            raise
        state = states.get(self.content_hash)
        if state is None:
            return False
        return state.segmented or (state.status == "failed" and not context.retry_failed)

    def run(self) -> None:
        context = current()
        context.check_identity(self.database, self.model_sha256)
        self.outcome = process_image(context, self.ref(), self.model_sha256, self.parameters)


class NightlyBatch(luigi.WrapperTask):
    """Every image of one night's batch, segmented and stored.

    Empty ``input``, ``database``, ``model_sha256`` and ``parameters`` are taken from
    the settings of the worker process (``luigi.cfg`` [cellpipe], environment).
    """

    date = luigi.DateParameter(description="the batch's date")
    input = luigi.Parameter(default="", description="input folder; images of INPUT/YYYY-MM-DD/ when dated")
    dated = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                description="only INPUT/YYYY-MM-DD/ (else everything under INPUT/)")
    database = luigi.Parameter(default="")
    model_sha256 = luigi.Parameter(default="")
    parameters = luigi.DictParameter(default={})

    def requires(self) -> list[ProcessImage]:
        context = current()
        identity = context.identity
        listing = context.listing(self.input or context.settings.input, self.date, self.dated)
        context.read_ahead.plan(listing.images)
        return [
            ProcessImage(
                content_hash=ref.content_hash,
                database=self.database or identity.database,
                model_sha256=self.model_sha256 or identity.model_sha256,
                parameters=self.parameters or identity.parameters,
                source=ref.uri, name=ref.name, size_bytes=ref.size_bytes, batch_date=ref.batch_date,
                position=position,
            )
            for position, ref in enumerate(listing.images)
        ]

    @classmethod
    def bulk_complete(cls, parameter_tuples):
        # RangeDaily asks through here; there are no output files to infer it from.
        return [date for date in parameter_tuples if cls(date=date).complete()]


def backfill(since: dt.date, until: dt.date, *, today: dt.date | None = None, **of_params) -> RangeDaily:
    """Return a ``RangeDaily`` that requires ``NightlyBatch`` for every date from ``since`` to ``until``.

    Dates whose batch is complete are skipped by ``RangeDaily`` itself.
    """
    if until < since:
        raise ValueError(f"the backfill ends ({until}) before it starts ({since})")
    today = today or dt.date.today()
    days = (until - since).days + 1
    return RangeDaily(of=NightlyBatch, of_params=of_params, start=since, stop=until + dt.timedelta(days=1),
                      days_back=max((today - since).days + 1, 1), task_limit=days)


@ProcessImage.event_handler(luigi.Event.SUCCESS)
def _report_outcome(task: ProcessImage) -> None:
    outcome = getattr(task, "outcome", None)
    if outcome is not None:
        context = current()
        pixel_size = {"pixel_size": outcome.pixel_size.as_dict()} if outcome.pixel_size is not None else {}
        context.emit(BatchEvent(outcome.status, context.worker, outcome.ref.name, outcome.ref.content_hash,
                                outcome.n_cells, outcome.seconds, outcome.reason, dict(outcome.timings),
                                data=pixel_size))


@ProcessImage.event_handler(luigi.Event.FAILURE)
def _report_error(task: ProcessImage, error: BaseException) -> None:
    context = current()
    context.emit(BatchEvent("task_error", context.worker, task.name, task.content_hash,
                            reason=f"{type(error).__name__}: {error_cause(error)}",
                            data={"transient": is_transient(error)}))
