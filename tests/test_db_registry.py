"""Model registry: versions keyed by name and version, at most one default."""

from __future__ import annotations

import hashlib

import pytest

from cellpipe import db


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_registering_a_model_twice_returns_the_same_id_and_updates_metrics(engine):
    first = db.register_model(engine, "unet", "1", file_hash=sha("w1"), location="/a.keras", metrics={"ap": 0.8})
    second = db.register_model(engine, "unet", "1", file_hash=sha("w1"), location="/b.keras", metrics={"ap": 0.9})
    assert first == second
    model = db.get_model(engine, "unet", "1")
    assert (model.location, model.metrics) == ("/b.keras", {"ap": 0.9})


def test_registering_another_file_under_the_same_version_is_refused(engine):
    db.register_model(engine, "unet", "1", file_hash=sha("w1"), location="/a.keras")
    with pytest.raises(ValueError, match="new version"):
        db.register_model(engine, "unet", "1", file_hash=sha("w2"), location="/a.keras")


def test_card_and_cloud_ids_are_kept_as_json(engine):
    card = {"input_shape": [256, 256, 1], "epochs": 40, "augment": {"flip": True}}
    db.register_model(engine, "unet", "2", file_hash=sha("w"), location="/m", card=card, cloud_ids={"azureml": "unet:2"})
    model = db.get_model(engine, "unet", "2")
    assert (model.card, model.cloud_ids) == (card, {"azureml": "unet:2"})


def test_there_is_no_default_model_until_one_is_set(engine):
    db.register_model(engine, "unet", "1", file_hash=sha("w1"), location="/a")
    assert db.get_default_model(engine) is None


def test_setting_a_default_model_unsets_the_previous_one(engine):
    old = db.register_model(engine, "unet", "1", file_hash=sha("w1"), location="/a", make_default=True)
    new = db.register_model(engine, "unet", "2", file_hash=sha("w2"), location="/b")
    db.set_default_model(engine, new)
    assert db.get_default_model(engine).id == new
    assert [model.id for model in db.list_models(engine) if model.is_default] == [new]
    assert old != new


def test_setting_an_unknown_model_as_default_raises_lookup_error(engine):
    with pytest.raises(LookupError):
        db.set_default_model(engine, 12345)


def test_get_model_without_version_returns_the_latest_registered(engine):
    db.register_model(engine, "unet", "1", file_hash=sha("w1"), location="/a")
    db.register_model(engine, "unet", "2", file_hash=sha("w2"), location="/b")
    assert db.get_model(engine, "unet").version == "2"
