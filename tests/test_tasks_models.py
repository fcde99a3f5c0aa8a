"""Retraining and deployment as Luigi tasks: models land in the ``models`` table, reruns do nothing.

Local retraining trains a tiny U-Net for a few steps on synthetic cells. The Azure ML
control plane is the only thing replaced, by the recording double of
tests/test_azure_ml_backends.py; the backends and their SDK objects are the real ones.
"""

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import cellpipe.tasks.models as model_tasks
from cellpipe.azure.ml import ModelRef, open_backend
from cellpipe.db import get_model, open_database, register_model
from cellpipe.io import write_png
from cellpipe.settings import Settings
from cellpipe.synthetic import synthetic_cells
from cellpipe.tasks.models import VERSION_TAG, DeployModel, RetrainModel, run_model_tasks
from cellpipe.unet import DEFAULT_MODEL_PATH
from test_azure_ml_backends import WORKSPACE, v1_control, v1_run, v2_control

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::PendingDeprecationWarning", "ignore:.*should not be instantiated"
)

VERSION = "2026-07-01"
TINY_TRAINING = ["--depth", "2", "--base-filters", "4", "--epochs", "1", "--steps", "2", "--batch-size", "2",
                 "--crop", "32", "--val-ids", "2", "--no-deterministic"]
AZURE_DATA = "azureml://datastores/cells/paths/isbi/train/"
WORKSPACE_IDS = dict(subscription_id=WORKSPACE.subscription_id, resource_group=WORKSPACE.resource_group,
                     workspace_name=WORKSPACE.workspace_name)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def database(folder):
    return Settings(db_url=f"sqlite:///{folder / 'cells.sqlite'}")


def row(settings, name="cellpipe-unet", version=VERSION):
    engine = open_database(settings.db_url)
    try:
        return get_model(engine, name, version)
    finally:
        engine.dispose()


def copy_default_model(folder):
    """Copy the shipped model and its card into ``folder`` as model.keras and model.json; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".keras", ".json"):
        shutil.copyfile(DEFAULT_MODEL_PATH.with_suffix(suffix), folder / f"model{suffix}")
    return folder


def register_default_model(settings, models_dir, version):
    """Put the shipped model into the models table as cellpipe-unet VERSION, as a local retraining would."""
    model_file = copy_default_model(models_dir / "cellpipe-unet" / version) / "model.keras"
    engine = open_database(settings.db_url)
    register_model(engine, "cellpipe-unet", version, file_hash=sha256(model_file), location=str(model_file))
    engine.dispose()
    return model_file


@pytest.fixture(scope="module")
def training_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cells")
    for i in range(3):
        sample = synthetic_cells((64, 64), kind="tissue", mean_cell_diameter=14, wall_width=(2, 3), seed=i)
        write_png(folder / "train" / "image" / f"{i}.png", sample.image)
        write_png(folder / "train" / "label" / f"{i}.png", np.where(sample.labels > 0, 255, 0).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def retrained(training_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("retrain")
    settings = database(folder)
    task = RetrainModel(version=VERSION, data=str(training_data), train_args=TINY_TRAINING,
                        models_dir=str(folder / "models"))
    outcome = run_model_tasks([task], settings)
    assert outcome.succeeded, outcome.failures
    return SimpleNamespace(settings=settings, task=task, models_dir=folder / "models", outcome=outcome)


@pytest.fixture
def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training ran")

    monkeypatch.setattr("cellpipe.unet.train.train", fail)


def test_local_retraining_registers_the_trained_file_in_the_models_table(retrained):
    assert retrained.outcome.ran == [str(retrained.task)]
    model = row(retrained.settings)
    assert model.location == str(retrained.models_dir / "cellpipe-unet" / VERSION / "model.keras")
    assert model.file_hash == sha256(model.location)
    assert model.card["training"]["command"].startswith("cellpipe model train ")


def test_local_retraining_passes_the_training_options_to_the_trainer(retrained):
    card = row(retrained.settings).card
    assert (card["architecture"]["depth"], card["architecture"]["base_filters"]) == (2, 4)
    assert card["training"]["steps_run"] == 2


def test_the_model_is_installed_with_its_card_and_no_leftovers(retrained):
    assert sorted(p.name for p in (retrained.models_dir / "cellpipe-unet").iterdir()) == [VERSION]
    installed = retrained.models_dir / "cellpipe-unet" / VERSION
    assert sorted(p.name for p in installed.iterdir()) == ["model.json", "model.keras"]


def test_a_second_retraining_of_the_same_version_is_a_no_op(retrained, no_training):
    before = row(retrained.settings)
    mtime = Path(before.location).stat().st_mtime_ns
    outcome = run_model_tasks([retrained.task], retrained.settings)
    assert outcome.succeeded, outcome.failures
    assert outcome.ran == []
    after = row(retrained.settings)
    assert (after.id, after.created_at, after.file_hash) == (before.id, before.created_at, before.file_hash)
    assert Path(after.location).stat().st_mtime_ns == mtime


def test_a_model_folder_left_by_a_dead_worker_is_registered_without_training_again(tmp_path, no_training):
    settings = database(tmp_path)
    copy_default_model(tmp_path / "models" / "cellpipe-unet" / VERSION)
    task = RetrainModel(version=VERSION, data=str(tmp_path / "unused"), models_dir=str(tmp_path / "models"))
    assert run_model_tasks([task], settings).succeeded
    assert row(settings).file_hash == sha256(DEFAULT_MODEL_PATH)


def test_make_default_marks_the_retrained_model_as_the_tables_default(tmp_path, no_training):
    settings = database(tmp_path)
    copy_default_model(tmp_path / "models" / "cellpipe-unet" / VERSION)
    task = RetrainModel(version=VERSION, data="unused", models_dir=str(tmp_path / "models"), make_default=True)
    assert run_model_tasks([task], settings).succeeded
    assert row(settings).is_default


def test_an_unknown_training_option_fails_the_task_and_registers_nothing(tmp_path, training_data):
    settings = database(tmp_path)
    task = RetrainModel(version=VERSION, data=str(training_data), train_args=["--bogus", "1"],
                        models_dir=str(tmp_path / "models"))
    outcome = run_model_tasks([task], settings)
    assert not outcome.succeeded
    assert "No such option: --bogus" in " ".join(outcome.failures)
    assert row(settings) is None


# --- Azure ML, through the recording double of the control plane ------------------------


def v1_double(**answers):
    defaults = dict(list_models=[], download_model=lambda model, target: copy_default_model(Path(target) / "model"))
    return v1_control(**{**defaults, **answers})


def v2_double(**answers):
    defaults = dict(list_models=[], get_model=SimpleNamespace(name="cellpipe-unet", version="7", tags={}),
                    download_model=lambda client, name, version, target: copy_default_model(
                        Path(target) / name / "model").parent)
    return v2_control(**{**defaults, **answers})


@pytest.fixture
def azure(monkeypatch):
    """Make the tasks' backends talk to ``azure.control``, a recording double."""
    state = SimpleNamespace(control=None)
    monkeypatch.setattr(model_tasks, "open_backend",
                        lambda sdk, workspace: open_backend(sdk, workspace, control_plane=state.control))
    return state


def retrain_task(tmp_path, backend, **changes):
    return RetrainModel(**{"version": VERSION, "data": AZURE_DATA, "backend": backend,
                           "models_dir": str(tmp_path / "models"), **WORKSPACE_IDS, **changes})


def test_azure_v1_retraining_submits_waits_registers_and_downloads_in_order(tmp_path, azure):
    azure.control = v1_double()
    assert run_model_tasks([retrain_task(tmp_path, "azure-v1")], database(tmp_path)).succeeded
    assert azure.control.names == ["workspace", "list_models", "upload_package", "find_compute", "create_compute",
                                   "submit", "get_run", "wait_for_run", "get_run", "register_run_model",
                                   "get_model", "download_model"]
    assert azure.control.call("register_run_model").args[3][VERSION_TAG] == VERSION


def test_azure_v1_retraining_lands_in_the_models_table_with_its_cloud_ids(tmp_path, azure):
    azure.control = v1_double()
    settings = database(tmp_path)
    assert run_model_tasks([retrain_task(tmp_path, "azure-v1")], settings).succeeded
    model = row(settings)
    assert model.cloud_ids["azureml"] == {"model": "cellpipe-unet:3", "sdk": "v1", "workspace": WORKSPACE.as_dict(),
                                          "run_id": "cellpipe-unet_1", "portal_url": "https://ml.azure.com/runs/1"}
    assert model.file_hash == sha256(DEFAULT_MODEL_PATH)
    assert Path(model.location) == tmp_path / "models" / "cellpipe-unet" / VERSION / "model.keras"


def test_a_version_already_registered_in_the_workspace_is_downloaded_not_trained_again(tmp_path, azure):
    azure.control = v1_double(list_models=[ModelRef("cellpipe-unet", "5", {VERSION_TAG: VERSION})])
    settings = database(tmp_path)
    assert run_model_tasks([retrain_task(tmp_path, "azure-v1")], settings).succeeded
    assert azure.control.names == ["workspace", "list_models", "get_model", "download_model"]
    assert row(settings).cloud_ids["azureml"]["model"] == "cellpipe-unet:5"


def test_a_failed_cloud_run_registers_nothing(tmp_path, azure):
    azure.control = v1_double(get_run=v1_run("Failed"))
    settings = database(tmp_path)
    outcome = run_model_tasks([retrain_task(tmp_path, "azure-v1")], settings)
    assert not outcome.succeeded
    assert "ended Failed" in " ".join(outcome.failures)
    assert row(settings) is None


def deploy_after_v2_retraining(tmp_path):
    retrain = {"data": AZURE_DATA, "backend": "azure-v2", "models_dir": str(tmp_path / "models"), **WORKSPACE_IDS}
    return DeployModel(version=VERSION, target="online-endpoint", service="cellpipe", retrain=retrain, **WORKSPACE_IDS)


def test_azure_v2_retrain_then_deploy_makes_the_sdk_calls_in_order(tmp_path, azure):
    azure.control = v2_double()
    assert run_model_tasks([deploy_after_v2_retraining(tmp_path)], database(tmp_path)).succeeded
    assert azure.control.names == ["client", "list_models", "find_compute", "create_compute", "create_job",
                                   "stream_job", "create_model", "get_model", "download_model",
                                   "client", "create_endpoint", "create_deployment", "get_endpoint", "create_endpoint"]
    assert azure.control.call("create_deployment").args[1].model == "cellpipe-unet:7"


def test_a_deployment_is_recorded_in_the_models_row_and_a_rerun_calls_nothing(tmp_path, azure):
    azure.control = v2_double()
    settings = database(tmp_path)
    assert run_model_tasks([deploy_after_v2_retraining(tmp_path)], settings).succeeded
    deployment = row(settings).cloud_ids["deployments"]["online-endpoint/cellpipe"]
    assert (deployment["sdk"], deployment["deployment"]) == ("v2", "blue")
    assert deployment["scoring_uri"] == "https://cellpipe.inference/score"
    azure.control = v2_double()
    assert run_model_tasks([deploy_after_v2_retraining(tmp_path)], settings).succeeded
    assert azure.control.calls == []


def test_deploying_a_locally_trained_model_registers_it_in_the_workspace_first(tmp_path, azure):
    settings = database(tmp_path)
    register_default_model(settings, tmp_path / "models", VERSION)
    azure.control = v1_double()
    task = DeployModel(version=VERSION, target="aci", service="cellpipe", **WORKSPACE_IDS)
    assert run_model_tasks([task], settings).succeeded
    assert azure.control.names == ["workspace", "register_model", "get_model", "upload_package", "deploy"]
    cloud_ids = row(settings).cloud_ids
    assert cloud_ids["azureml"]["model"] == "cellpipe-unet:4"
    assert cloud_ids["deployments"]["aci/cellpipe"]["scoring_uri"] == "http://aci/score"


def test_deploying_another_model_to_a_service_moves_its_record(tmp_path, azure):
    settings = database(tmp_path)
    register_default_model(settings, tmp_path / "models", "2026-06-01")
    register_default_model(settings, tmp_path / "models", VERSION)
    for version in ("2026-06-01", VERSION):
        azure.control = v1_double()
        assert run_model_tasks([DeployModel(version=version, target="aci", **WORKSPACE_IDS)], settings).succeeded
    assert "aci/cellpipe" in row(settings, version=VERSION).cloud_ids["deployments"]
    assert row(settings, version="2026-06-01").cloud_ids["deployments"] == {}


def test_a_dry_run_retraining_writes_the_job_specification_and_calls_nothing(tmp_path, azure):
    azure.control = v2_double()
    settings = database(tmp_path)
    task = retrain_task(tmp_path, "azure-v2", dry_run=str(tmp_path / "spec"), train_args=["--epochs", "20"])
    assert run_model_tasks([task], settings).succeeded
    job = json.loads((tmp_path / "spec" / "job.json").read_text())
    assert job["command"][-2:] == ["--epochs", "20"]
    assert (tmp_path / "spec" / "v2" / "job.yml").is_file()
    assert azure.control.calls == []
    assert row(settings) is None


def test_a_dry_run_deployment_packages_the_registered_model_file_and_calls_nothing(tmp_path, azure):
    azure.control = v1_double()
    settings = database(tmp_path)
    model_file = register_default_model(settings, tmp_path / "models", VERSION)
    task = DeployModel(version=VERSION, target="aci", dry_run=str(tmp_path / "spec"), **WORKSPACE_IDS)
    assert run_model_tasks([task], settings).succeeded
    assert json.loads((tmp_path / "spec" / "deployment.json").read_text())["service_name"] == "cellpipe"
    assert (tmp_path / "spec" / "model" / "model.keras").read_bytes() == model_file.read_bytes()
    assert (tmp_path / "spec" / "score.py").is_file()
    assert azure.control.calls == []
    assert row(settings).cloud_ids == {}


# --- the command line ------------------------------------------------------------------


def cellpipe(*args):
    from cellpipe.cli import _register_commands, app

    _register_commands()
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_retrain_command_passes_further_options_to_the_training_program(tmp_path):
    result = cellpipe("model", "retrain", AZURE_DATA, "--backend", "azure-v1", "--version", VERSION,
                      "--db", database(tmp_path).db_url, "--dry-run", tmp_path / "spec", "--workspace", "lab-ws",
                      "--subscription-id", WORKSPACE.subscription_id, "--resource-group", "lab-rg",
                      "--epochs", "40", "--val-ids", "20-24")
    assert result.exit_code == 0, result.output
    job = json.loads((tmp_path / "spec" / "job.json").read_text())
    assert job["command"][-4:] == ["--epochs", "40", "--val-ids", "20-24"]
    assert job["workspace"]["workspace_name"] == "lab-ws"


def test_retraining_in_azure_refuses_a_local_folder_before_running():
    with pytest.raises(ValueError, match="azureml://datastores"):
        RetrainModel(version=VERSION, data="/data/cells", backend="azure-v2")


def test_retrain_command_refuses_a_dry_run_deployment(tmp_path):
    result = cellpipe("model", "retrain", AZURE_DATA, "--backend", "azure-v2", "--db", database(tmp_path).db_url,
                      "--dry-run", tmp_path / "spec", "--deploy", "cellpipe")
    assert result.exit_code == 2
    assert "training specification only" in result.output
    assert not (tmp_path / "spec").exists()
