"""ReadAhead segments the next image of the listing in the background, and changes nothing else."""

import datetime as dt
import hashlib
import io
import threading

import numpy as np
import pytest
from PIL import Image

from cellpipe.io import ImageReadError
from cellpipe.tasks.read_ahead import ReadAhead
from cellpipe.tasks.sources import ImageRef

DAY = dt.date(2024, 6, 1)


def listed(tmp_path, count):
    """Return ImageRefs of ``count`` small PNGs written into ``tmp_path``."""
    refs = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(np.full((6, 8), 10 * index, dtype=np.uint8)).save(buffer, format="PNG")
        data = buffer.getvalue()
        path = tmp_path / f"{index}.png"
        path.write_bytes(data)
        refs.append(ImageRef(uri=str(path), name=path.name, content_hash=hashlib.sha256(data).hexdigest(),
                             size_bytes=len(data), batch_date=DAY))
    return refs


class Recorder:
    """A fake segmenter that returns the image's first pixel and says which thread ran it."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def __call__(self, parameters, image):
        self.calls.append((int(image[0, 0]), threading.current_thread() is threading.main_thread()))
        if self.fail_on is not None and int(image[0, 0]) == self.fail_on:
            raise RuntimeError("no cells")
        return int(image[0, 0])


def make(segment, stored=lambda hashes, parameters: set(), enabled=True):
    return ReadAhead(segment, stored, max_pixels=10**6, enabled=enabled)


def test_without_reading_ahead_an_image_is_segmented_in_the_task_when_asked(tmp_path):
    refs = listed(tmp_path, 2)
    segment = Recorder()
    ahead = make(segment, enabled=False)
    ahead.plan(refs)
    prepared = ahead.take(refs[0], {})
    assert segment.calls == []
    assert prepared.result() == 0 and segment.calls == [(0, True)]
    ahead.after(refs[0], {})
    assert ahead.take(refs[1], {}).result() == 10 and segment.calls[-1] == (10, True)


def test_after_an_image_the_next_one_is_segmented_in_the_background_and_taken_from_there(tmp_path):
    refs = listed(tmp_path, 3)
    segment = Recorder()
    ahead = make(segment)
    ahead.plan(refs)
    for index, ref in enumerate(refs):
        prepared = ahead.take(ref, {})
        assert prepared.data() == (tmp_path / f"{index}.png").read_bytes()
        assert prepared.result() == 10 * index
        ahead.after(ref, {})
    ahead.close()
    assert segment.calls == [(0, True), (10, False), (20, False)]


def test_images_already_stored_or_taken_are_not_read_ahead(tmp_path):
    refs = listed(tmp_path, 4)
    segment = Recorder()
    ahead = make(segment, stored=lambda hashes, parameters: {refs[1].content_hash})
    ahead.plan(refs)
    ahead.take(refs[2], {}).result()
    ahead.take(refs[0], {}).result()
    ahead.after(refs[0], {})  # 1 is stored, 2 was taken: 3 is next
    assert ahead.take(refs[3], {}).result() == 30
    ahead.close()
    assert [value for value, _ in segment.calls] == [20, 0, 30]


def test_errors_read_ahead_are_raised_by_the_task_that_takes_the_image(tmp_path):
    refs = listed(tmp_path, 3)
    (tmp_path / "1.png").write_bytes(b"")  # unreadable, but with the listed hash
    refs[1] = ImageRef(uri=refs[1].uri, name=refs[1].name, content_hash=hashlib.sha256(b"").hexdigest(),
                       size_bytes=0, batch_date=DAY)
    segment = Recorder(fail_on=20)
    ahead = make(segment)
    ahead.plan(refs)
    ahead.take(refs[0], {}).result()
    ahead.after(refs[0], {})
    with pytest.raises(ImageReadError):
        ahead.take(refs[1], {}).image()
    ahead.after(refs[1], {})
    with pytest.raises(RuntimeError, match="no cells"):
        ahead.take(refs[2], {}).result()
    ahead.close()


def test_a_file_gone_before_it_is_read_ahead_is_missing_for_its_task(tmp_path):
    refs = listed(tmp_path, 2)
    (tmp_path / "1.png").unlink()
    ahead = make(Recorder())
    ahead.plan(refs)
    ahead.take(refs[0], {}).result()
    ahead.after(refs[0], {})
    with pytest.raises(FileNotFoundError):
        ahead.take(refs[1], {}).data()
    ahead.close()
