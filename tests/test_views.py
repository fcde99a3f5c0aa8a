"""The views of test-time augmentation (cellpipe.views), checked without TensorFlow."""

import numpy as np
import pytest

from cellpipe.pipeline import PipelineParams
from cellpipe.views import VIEW_COUNTS, check_views, from_view, to_view


def test_the_eight_views_are_the_eight_distinct_symmetries_of_the_square():
    image = np.arange(12).reshape(3, 4)  # no symmetry of its own: every view differs
    views = [to_view(image, index) for index in range(8)]
    assert len({(v.shape, v.tobytes()) for v in views}) == 8
    assert np.array_equal(views[0], image)
    assert np.array_equal(views[1], image[:, ::-1])
    assert np.array_equal(views[2], image[::-1, ::-1])
    assert views[4].shape == (4, 3)


@pytest.mark.parametrize("index", range(8))
def test_a_map_of_a_view_turns_back_onto_the_image(index):
    image = np.random.default_rng(index).random((5, 7))
    view = to_view(image, index)
    assert view.flags.c_contiguous
    assert np.array_equal(from_view(view, index), image)


@pytest.mark.parametrize("views", [0, 3, 16, -1, True, 2.5, "2"])
def test_only_1_2_4_or_8_views_are_accepted(views):
    with pytest.raises(ValueError, match="views must be one of"):
        check_views(views)
    with pytest.raises(ValueError, match="views must be one of"):
        PipelineParams(views=views)


def test_accepted_view_counts_pass_unchanged():
    assert [check_views(v) for v in VIEW_COUNTS] == [1, 2, 4, 8]
