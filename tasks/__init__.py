"""The nightly batch: Luigi tasks that wire cellpipe's library to the database.

Every night everything that arrived is segmented and measured, and the cells are in the
database by morning — even if an image is broken, a worker dies, or two machines run
the batch at once. ``cellpipe run`` (:func:`~cellpipe.tasks.runner.run_batch`) is the
entry point; ``luigi --module cellpipe.tasks NightlyBatch --date D --local-scheduler``
works too (settings from ``luigi.cfg``; one worker).

Design
------
Tasks (:mod:`~cellpipe.tasks.nightly`) are thin:
    ``NightlyBatch(date)`` lists a batch (``INPUT/YYYY-MM-DD/``, or everything under
    ``INPUT/``) and requires one ``ProcessImage`` per distinct image content;
    ``backfill(since, until)`` is a Luigi ``RangeDaily`` over ``NightlyBatch``.
    ``ProcessImage.run()`` calls :func:`~cellpipe.tasks.steps.process_image`.
Identity and deduplication:
    an image is its content hash (sha256 of its bytes), found by
    :mod:`~cellpipe.tasks.sources`. ``ProcessImage``'s task id is built from the
    content hash, the database (URL without password), the model file's hash and the
    segmentation parameters, so every process that lists the same images schedules
    the same task ids and a shared ``luigid`` gives each to one worker. The database
    key (image × model × parameter hash, unique) makes a second store a replacement,
    never a duplicate, should two schedulers ever run the same image.
Completeness is in the database:
    ``ProcessImage.complete()`` is true when its segmentation is stored (or the image
    is recorded as failed, unless ``--retry-failed``). Result files
    (``OUTPUT/YYYY-MM-DD/<stem>_labels.tif``, ``<stem>_cells.csv``) are written first,
    atomically; the cells of one image are stored in one transaction. A worker killed
    at any moment leaves complete results or none, and a rerun does exactly the rest.
One model per worker process:
    Luigi with ``workers > 1`` forks a process per task, which would reload the model
    for every image (and TensorFlow is not fork-safe). ``cellpipe run --workers N``
    instead spawns N processes that each run ``luigi.build(workers=1)`` in-process and
    share one scheduler (``--scheduler-url``, else a private ``luigid`` on a loopback
    port, :mod:`~cellpipe.tasks.scheduler`); ``--workers 1`` runs in the calling process
    with the local scheduler. Each process loads the model once
    (:class:`~cellpipe.tasks.context.BatchContext`), which the report counts.
Failure isolation (:mod:`~cellpipe.tasks.steps`, :mod:`~cellpipe.tasks.retry`):
    an image that cannot be read or segmented is recorded as failed with a readable
    reason and the others go on; transient database or storage errors are retried with
    backoff; the exit code follows ``luigi.cfg`` ``[retcode]``
    (:mod:`~cellpipe.tasks.report`), and the report sorts every image into stored,
    stored elsewhere, skipped, failed or pending.
Secrets:
    the database URL is never a task parameter (parameters travel to ``luigid`` and its
    web page); workers take it from their settings.
Azure (later):
    ``az://`` inputs and outputs are recognised and refused in
    :mod:`~cellpipe.tasks.sources` and ``BatchContext.write_results``; a blob source
    only has to list ``PREFIX/YYYY-MM-DD/`` into :class:`~cellpipe.tasks.sources.ImageRef`
    values and read their bytes.
"""

from cellpipe.tasks.nightly import NightlyBatch, ProcessImage, backfill
from cellpipe.tasks.report import BatchReport
from cellpipe.tasks.runner import BatchRequest, BatchRequestError, run_batch

__all__ = [
    "BatchReport",
    "BatchRequest",
    "BatchRequestError",
    "NightlyBatch",
    "ProcessImage",
    "backfill",
    "run_batch",
]
