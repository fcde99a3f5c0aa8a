"""One image through the batch: read, register, segment, write results, store.

:func:`process_image` is what the per-image Luigi task runs. It is the one place that
decides what happens to an image that cannot be processed:

- the file cannot be decoded (corrupt, empty, text named ``.png``...) or the pipeline
  raises on it → the image is registered and recorded as ``failed`` with a readable
  reason, and the outcome says so; the batch goes on with the other images;
- the database or storage is briefly unavailable → retried with backoff
  (:mod:`cellpipe.tasks.retry`); if it stays unavailable the error propagates, nothing
  is recorded, and a later attempt starts over;
- the file changed or disappeared since it was listed (still being copied? moved
  away?) → outcome ``changed``, nothing recorded: the next run lists it afresh;
- another process (a run that shares no scheduler with this one) is segmenting the
  same image, model and parameters → outcome ``claimed``: left to it
  (:mod:`cellpipe.db.claims`), so that each image is segmented once.

Results are written before the database row that points to them, each file atomically
(the overlay PNG only with the ``overlay`` setting), and the cells of one image are stored
in one transaction: a worker killed at any moment leaves either no segmentation or a
complete one. A worker alone on its scheduler reads ahead (:mod:`cellpipe.tasks.read_ahead`):
the next image is read, decoded and segmented while this one is measured and stored.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from cellpipe.db import (
    claim_segmentation,
    is_segmented,
    mark_image_failed,
    parameter_hash,
    record_pixel_size,
    register_image,
    release_claim,
    store_segmentation,
)
from cellpipe.io import ImageReadError, image_info
from cellpipe.quality import cells_and_quality
from cellpipe.results import result_files
from cellpipe.tasks.context import BatchContext
from cellpipe.tasks.retry import is_transient, retrying
from cellpipe.tasks.sources import ImageRef
from cellpipe.units import ResolvedPixelSize, read_pixel_size, resolve_pixel_size


@dataclass(frozen=True)
class ImageOutcome:
    """What :func:`process_image` did with one image.

    Attributes
    ----------
    status : {"stored", "already_stored", "failed", "changed", "claimed"}
        ``already_stored``: another worker stored it after this one listed it;
        ``changed``: the file changed or disappeared since it was listed;
        ``claimed``: another process is segmenting it (``reason`` names it).
    n_cells : int or None
        Cells stored.
    reason : str
        Why it failed (the message recorded in the database).
    seconds : float
        Wall time of the whole step.
    timings : dict of str to float
        Seconds per stage: ``read``, ``pixel_size`` (reading it from the metadata), the
        pipeline's ``contrast``, ``predict``, ``segment``, ``measure``, then ``quality``
        (Feret diameters and the image's quality figures) and ``write`` (result files).
    pixel_size : ResolvedPixelSize or None
        The pixel size the image was measured with (None when it was not read).
    """

    ref: ImageRef
    status: str
    n_cells: int | None = None
    reason: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    pixel_size: ResolvedPixelSize | None = None


def process_image(context: BatchContext, ref: ImageRef, model_sha256: str,
                  parameters: Mapping[str, Any]) -> ImageOutcome:
    """Return the outcome of segmenting ``ref`` and storing its cells in the context's database.

    Parameters
    ----------
    context : BatchContext
        Database, model, output location and run of this worker.
    ref : ImageRef
        The image, as listed.
    model_sha256 : str
        The model to use (must be the context's).
    parameters : mapping
        ``PipelineParams.as_dict()`` of the segmentation.

    Raises
    ------
    Exception
        Transient errors that outlasted their retries, and errors writing results.
    """
    started = time.perf_counter()
    engine = context.engine
    model_id = context.model_id(model_sha256)
    parameters = dict(parameters)
    timings: dict[str, float] = {}

    prepared = context.read_ahead.take(ref, parameters)  # read ahead, or read now
    try:
        data = prepared.data()
    except FileNotFoundError:
        return ImageOutcome(ref, "changed", reason=f"{ref.name} disappeared since the batch was listed")
    if hashlib.sha256(data).hexdigest() != ref.content_hash:
        return ImageOutcome(ref, "changed", reason=f"{ref.name} changed since the batch was listed; "
                                                  "the next run takes its new content")
    try:
        image = prepared.image()
    except ImageReadError as error:
        return _failed(engine, ref, _register(engine, ref), str(error), started)
    info = image_info(image)
    timings["read"] = time.perf_counter() - started
    read_size = time.perf_counter()
    pixel_size = resolve_pixel_size(read_pixel_size(data), context.settings.pixel_size)
    timings["pixel_size"] = time.perf_counter() - read_size
    image_id = _register(engine, ref, bit_depth=info.bit_depth, width=info.width, height=info.height)
    retrying(record_pixel_size)(engine, image_id, pixel_size.um, pixel_size.source)
    key = (image_id, model_id, parameter_hash(parameters))
    # Claimed before the check, released once stored: whoever stores first is seen by the other.
    # A task that raises keeps its claim; this process takes it again when the task is retried.
    holder = retrying(claim_segmentation)(engine, *key, run_id=context.run_id)
    if holder is not None:
        return ImageOutcome(ref, "claimed", reason=f"{ref.name} is being segmented by {holder.describe()}",
                            seconds=time.perf_counter() - started)
    if retrying(is_segmented)(engine, *key):
        retrying(release_claim)(engine, *key)
        return ImageOutcome(ref, "already_stored", seconds=time.perf_counter() - started)

    try:
        result = prepared.result()
    except Exception as error:  # noqa: BLE001 - any image-specific failure is recorded, the batch goes on
        if is_transient(error):
            raise
        outcome = _failed(engine, ref, image_id,
                          f"segmentation of {ref.name} failed: {type(error).__name__}: {error}", started)
        retrying(release_claim)(engine, *key)
        return outcome
    timings.update(result.timings)
    context.read_ahead.after(ref, parameters)  # the next image is segmented while this one is stored
    measured = time.perf_counter()
    cells, quality = cells_and_quality(result.labels, result.cells)
    timings["quality"] = time.perf_counter() - measured

    written = time.perf_counter()
    label_uri = context.write_results(ref.batch_date, result_files(ref.stem, image, result.labels, cells,
                                                                   with_overlay=context.settings.overlay,
                                                                   pixel_size_um=pixel_size.um))
    timings["write"] = time.perf_counter() - written
    # The scale is stored with the result but is not part of its key: the key is what was asked for.
    retrying(store_segmentation)(engine, image_id, model_id, parameters, cells,
                                 run_id=context.run_id, label_uri=label_uri, timings=timings,
                                 chosen={"scale": result.scale.as_dict()}, quality=quality)
    retrying(release_claim)(engine, *key)
    return ImageOutcome(ref, "stored", n_cells=result.n_cells, seconds=time.perf_counter() - started,
                        timings=timings, pixel_size=pixel_size)


def _register(engine, ref: ImageRef, **info: int) -> int:
    return retrying(register_image)(engine, ref.content_hash, ref.uri, size_bytes=ref.size_bytes,
                                    batch_date=ref.batch_date, **info)


def _failed(engine, ref: ImageRef, image_id: int, reason: str, started: float) -> ImageOutcome:
    retrying(mark_image_failed)(engine, image_id, reason)
    return ImageOutcome(ref, "failed", reason=reason, seconds=time.perf_counter() - started)
