"""Two ``cellpipe run`` processes on the same input without a shared scheduler: each image is segmented once.

Each process has its own local scheduler, so both schedule every image. They see each
other's work in the database: an image one is segmenting is claimed
(:mod:`cellpipe.db.claims`) and the other leaves it, then counts it as stored elsewhere.
Each summary counts only what its own run stored, and so does each ``runs`` row.
"""

from __future__ import annotations

import json

import pytest
from test_batch import DAY, cellpipe_run, command_args, copy_samples, query, samples, settings_for  # noqa: F401

pytest_plugins = ["tiny_model"]

N_IMAGES = 20


@pytest.mark.slow
def test_two_runs_with_local_schedulers_segment_each_image_once_and_count_only_their_own(
        tmp_path, tiny_model, samples):  # noqa: F811
    copy_samples(samples, tmp_path / "input" / DAY.isoformat(), N_IMAGES)
    settings = settings_for(tmp_path, tiny_model)
    # Eight views per image: slow enough that both runs are still segmenting when the other starts.
    runs = [cellpipe_run("--date", DAY.isoformat(), "--views", "8", "--summary-json", str(tmp_path / f"s{i}.json"),
                         *command_args(settings)) for i in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    summaries = [json.loads((tmp_path / f"s{i}.json").read_text()) for i in range(2)]

    stored = [summary["counts"]["stored"] for summary in summaries]
    assert sum(stored) == N_IMAGES, stored
    assert min(stored) > 0, f"the runs did not overlap: {stored}"
    for summary in summaries:
        counts = summary["counts"]
        assert counts["stored"] + counts["stored_elsewhere"] + counts["skipped"] == N_IMAGES, counts
        assert counts["failed"] == counts["pending"] == 0
        assert summary["workers"][0]["stored"] == counts["stored"]
    assert query(settings, "SELECT count(*), count(DISTINCT image_id) FROM segmentations") == [(N_IMAGES, N_IMAGES)]
    assert query(settings, "SELECT count(*) FROM claims") == [(0,)]

    for summary in summaries:
        cells = sum(line["n_cells"] for line in summary["images"] if line["category"] == "stored")
        assert query(settings, f"SELECT status, images_seen, images_segmented, cells_stored FROM runs "
                               f"WHERE id = {summary['run_id']}") == [("succeeded", N_IMAGES, summary["counts"]["stored"],
                                                                        cells)]
    assert query(settings, "SELECT sum(n_cells) FROM segmentations") == query(settings, "SELECT count(*) FROM cells")
