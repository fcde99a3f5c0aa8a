"""Read ahead: the batch's next image is read, decoded and segmented while this one is stored.

A worker runs its Luigi tasks one after the other, one image each. While a task
measures, writes and stores its image, the CPU the prediction would use sits partly
idle; :class:`ReadAhead` fills it with the next task's image: the one that follows in
the listing (tasks run in listing order, :attr:`ProcessImage.priority`) and is not
stored yet. The tasks stay what they were: each one still stores its own image, in
its own run(), and finds its image already segmented, being segmented (it waits), or
not started (it segments it itself, as without read-ahead).

Only a worker that has the scheduler to itself reads ahead (``cellpipe run`` with one
worker): with others, the next image in the listing may well go to another worker.
What was read ahead for an image that another run claimed or stored meanwhile is
dropped unused, like the image itself: results are stored only by the task.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from cellpipe.io import read_image
from cellpipe.pipeline import CellResult
from cellpipe.tasks.retry import retrying
from cellpipe.tasks.sources import ImageRef, read_source

#: How many listed images after the current one are asked about (stored yet?) to find the next.
LOOK_AHEAD = 8


class Prepared:
    """One image's bytes, decoded image and segmentation, each raised as it failed when asked for.

    Made by :meth:`ReadAhead.take`: read ahead in the background (bytes, image and
    segmentation), or read in the task, the segmentation then made when
    :meth:`result` is first called.
    """

    def __init__(self, ref: ImageRef, max_pixels: int, segment: Callable[[np.ndarray], CellResult]) -> None:
        self.ref = ref
        self._max_pixels = max_pixels
        self._segment = segment
        self._data: bytes | None = None
        self._image: np.ndarray | None = None
        self._error: BaseException | None = None
        self._segmented = False
        self._result: CellResult | None = None
        self._result_error: BaseException | None = None
        self._read_ahead: Future | None = None
        self._segmented_ahead: Future | None = None

    def read(self) -> "Prepared":
        """Read and decode the image (errors kept for :meth:`data` and :meth:`image`); return self."""
        try:
            self._data = retrying(read_source, service="storage")(self.ref.uri)
            if hashlib.sha256(self._data).hexdigest() == self.ref.content_hash:  # else the task says "changed"
                self._image = read_image(self._data, name=self.ref.name, max_pixels=self._max_pixels)
        except Exception as error:  # noqa: BLE001 - raised again, in the task, by data() or image()
            self._error = error
        return self

    def read_ahead(self, executor: ThreadPoolExecutor) -> None:
        """Read and decode, then segment, the image in ``executor``."""
        self._read_ahead = executor.submit(self.read)
        self._segmented_ahead = executor.submit(self._segment_if_decoded)

    def wait(self) -> "Prepared":
        """Wait until the image read ahead is read and decoded; return self."""
        if self._read_ahead is not None:
            self._read_ahead.result()
        return self

    def data(self) -> bytes:
        """Return the file's bytes, or raise what reading them raised."""
        if self._data is None:
            raise self._error
        return self._data

    def image(self) -> np.ndarray:
        """Return the decoded image (call after checking the bytes' hash), or raise what decoding raised."""
        if self._image is None:
            raise self._error
        return self._image

    def result(self) -> CellResult:
        """Return the image's segmentation (made now unless it was made ahead), or raise what it raised."""
        if self._segmented_ahead is not None:
            self._segmented_ahead.result()
        if not self._segmented:
            self._run_segmentation()
        if self._result_error is not None:
            raise self._result_error
        return self._result

    def _segment_if_decoded(self) -> None:
        if self._image is not None:
            self._run_segmentation()

    def _run_segmentation(self) -> None:
        try:
            self._result = self._segment(self.image())
        except Exception as error:  # noqa: BLE001 - raised again, in the task, by result()
            self._result_error = error
        self._segmented = True


class ReadAhead:
    """Prepares the images of a worker's tasks, the next one in the background when allowed.

    Parameters
    ----------
    segment : callable
        ``segment(parameters, image)`` → :class:`~cellpipe.pipeline.CellResult`.
    stored : callable
        ``stored(content_hashes, parameters)`` → the hashes among them whose task is complete.
    max_pixels : int
        Largest image decoded (:func:`cellpipe.io.read_image`).
    enabled : bool
        Whether to read ahead at all; without, :meth:`take` reads in the task and
        :meth:`after` does nothing.
    """

    def __init__(self, segment: Callable[[Mapping, np.ndarray], CellResult],
                 stored: Callable[[Sequence[str], Mapping], set[str]], *, max_pixels: int, enabled: bool) -> None:
        self._segment = segment
        self._stored = stored
        self._max_pixels = max_pixels
        self.enabled = enabled
        self._order: list[ImageRef] = []
        self._position: dict[str, int] = {}
        self._taken: set[str] = set()
        self._ahead: dict[str, Prepared] = {}
        # One segmentation at a time, whichever thread asks: they share one model.
        self._one_at_a_time = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def plan(self, refs: Iterable[ImageRef]) -> None:
        """Add images in the order their tasks will run (the listing's); known ones keep their place."""
        for ref in refs:
            if ref.content_hash not in self._position:
                self._position[ref.content_hash] = len(self._order)
                self._order.append(ref)

    def take(self, ref: ImageRef, parameters: Mapping) -> Prepared:
        """Return ``ref`` prepared: read ahead, or read now (its segmentation then waits for :meth:`Prepared.result`)."""
        self._taken.add(ref.content_hash)
        prepared = self._ahead.pop(ref.content_hash, None)
        if prepared is None:
            return Prepared(ref, self._max_pixels, self._segmenter(parameters)).read()
        return prepared.wait()

    def after(self, ref: ImageRef, parameters: Mapping) -> None:
        """Start reading, decoding and segmenting the image that follows ``ref``, in the background."""
        if not self.enabled:
            return
        upcoming = self._upcoming(ref, parameters)
        if upcoming is None or upcoming.content_hash in self._ahead:
            return
        self._ahead.clear()  # read ahead for a task that did not come next: its work is lost
        prepared = Prepared(upcoming, self._max_pixels, self._segmenter(parameters))
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellpipe-read-ahead")
        prepared.read_ahead(self._executor)
        self._ahead[upcoming.content_hash] = prepared

    def close(self) -> None:
        """Wait for a segmentation under way and drop what was read ahead."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._ahead.clear()

    def _segmenter(self, parameters: Mapping) -> Callable[[np.ndarray], CellResult]:
        def segment(image: np.ndarray) -> CellResult:
            with self._one_at_a_time:
                return self._segment(parameters, image)
        return segment

    def _upcoming(self, ref: ImageRef, parameters: Mapping) -> ImageRef | None:
        start = self._position.get(ref.content_hash)
        if start is None:
            return None
        candidates = [later for later in self._order[start + 1:] if later.content_hash not in self._taken]
        candidates = candidates[:LOOK_AHEAD]
        if not candidates:
            return None
        stored = self._stored([later.content_hash for later in candidates], parameters)
        return next((later for later in candidates if later.content_hash not in stored), None)
