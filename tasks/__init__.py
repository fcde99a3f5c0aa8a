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
    never a duplicate, should two schedulers ever run the same image; and before
    segmenting, a worker claims that key (:mod:`cellpipe.db.claims`), so a run that
    shares no scheduler with another leaves the images the other is segmenting, waits
    for them at the end and counts them as stored elsewhere.
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
    backoff and logged once per outage and retry wave (:mod:`~cellpipe.tasks.outages`);
    the exit code follows ``luigi.cfg`` ``[retcode]``
    (:mod:`~cellpipe.tasks.report`), and the report sorts every image into stored,
    stored elsewhere, skipped, failed or pending.
Secrets:
    the database URL is never a task parameter (parameters travel to ``luigid`` and its
    web page); workers take it from their settings.
Azure Blob Storage:
    ``--input``/``--output az://CONTAINER/PREFIX`` (credentials from the
    ``AZURE_STORAGE_*`` variables or an Azure login, via
    :func:`cellpipe.settings.azure_environ`). Blobs are files: listed by prefix
    (``PREFIX/YYYY-MM-DD/`` when dated) with the same name rules, downloaded (Content-MD5
    verified) and hashed when listed, so task ids and database rows are content-hash
    based exactly as for files, and two machines listing one container schedule the
    same tasks; the database records ``az://CONTAINER/NAME`` as the source. Results are
    blobs ``OUTPUT/YYYY-MM-DD/<stem>_labels.tif``, ``_cells.csv``, written through
    :class:`~cellpipe.tasks.blob_target.BlobTarget` (staged blocks, one commit: never a
    half blob); the database row comes after all of them, so an image whose results are
    only partly uploaded is simply processed again. Requests are retried by azure-core
    (``storage_retries``), whole reads and writes by :mod:`~cellpipe.tasks.retry`; at
    the start, a missing container or refused credentials stop the run (exit 2) and an
    unreachable store fails it within seconds (``[retcode] scheduling_error``). A blob
    that is not an image is recorded as failed, like a file.
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
