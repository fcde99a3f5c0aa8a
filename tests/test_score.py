"""score.py's request handling without a server or a model: limits, parsing, JSON output."""

import json

import numpy as np
import pytest

from cellpipe.azure import score


def test_limits_come_from_the_services_environment_variables():
    limits = score.Limits.from_environment({"CELLPIPE_SCORE_MAX_PIXELS": "1000", "CELLPIPE_SCORE_MAX_IMAGES": " 5 "})
    assert limits == score.Limits(max_request_bytes=score.Limits().max_request_bytes, max_pixels=1000, max_images=5)


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="CELLPIPE_SCORE_MAX_IMAGES"):
        score.Limits.from_environment({"CELLPIPE_SCORE_MAX_IMAGES": "0"})


def test_cell_rows_are_json_with_non_finite_numbers_as_null():
    cells = {"label": np.array([1, 2]), "area": np.array([10, 20]), "eccentricity": np.array([0.5, np.nan])}
    rows = score.cell_rows(cells)
    assert rows == [{"label": 1, "area": 10, "eccentricity": 0.5}, {"label": 2, "area": 20, "eccentricity": None}]
    json.dumps(rows, allow_nan=False)


def test_a_request_before_the_model_is_loaded_gets_a_503_error(monkeypatch):
    monkeypatch.setattr(score, "_service", {})
    status, body = score.handle(json.dumps({"image": "aGVsbG8="}))
    assert status == 503
    assert "init()" in body["error"]


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(monkeypatch):
    monkeypatch.setattr(score, "_service", {"limits": score.Limits(max_request_bytes=10)})
    status, body = score.handle(b'{"image": "aGVsbG8gd29ybGQ="}')
    assert status == 413


def test_a_json_array_is_not_a_request(monkeypatch):
    monkeypatch.setattr(score, "_service", {})
    status, body = score.handle("[1, 2, 3]")
    assert (status, body["error"]) == (400, "the request body must be a JSON object")


def test_the_model_is_found_directly_or_one_folder_down(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "model.keras").touch()
    (tmp_path / "registered" / "model").mkdir(parents=True)
    (tmp_path / "registered" / "model" / "model.keras").touch()
    assert score.find_model(tmp_path / "local") == tmp_path / "local" / "model.keras"
    assert score.find_model(tmp_path / "registered") == tmp_path / "registered" / "model" / "model.keras"


def test_a_model_folder_without_a_model_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.keras"):
        score.find_model(tmp_path)


def test_a_requests_inversion_keeps_the_models_tuned_post_processing(monkeypatch):
    from cellpipe.pipeline import PipelineParams
    from cellpipe.segment import SegmentParams

    class Segmenter:  # what _segmenter needs of a CellSegmenter, without a model
        params = PipelineParams(segment=SegmentParams(threshold=0.35, min_area=20))

        def with_params(self, params):
            return params

    monkeypatch.setattr(score, "_service", {"segmenter": Segmenter()})
    assert score._segmenter({"invert": "true"}) == PipelineParams(
        invert="true", segment=SegmentParams(threshold=0.35, min_area=20))
    with pytest.raises(score.RequestError, match='"invert"'):
        score._segmenter({"invert": "sideways"})
