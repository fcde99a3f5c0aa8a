"""`cellpipe model train-azure | deploy | list | promote | download --dry-run DIR`: specifications, no network."""

import json

import pytest
from typer.testing import CliRunner

import cellpipe.cli.commands_azure_ml  # noqa: F401  (registers the commands)
from cellpipe.cli import app
from cellpipe.unet import DEFAULT_MODEL_PATH

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::PendingDeprecationWarning", "ignore:.*should not be instantiated"
)

WORKSPACE = ["--subscription-id", "00000000-0000-0000-0000-000000000000", "--resource-group", "lab-rg", "--workspace", "lab-ws"]


def cellpipe(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_train_azure_passes_further_options_to_the_training_program(tmp_path):
    result = cellpipe("model", "train-azure", "azureml://datastores/cells/paths/isbi/", "--sdk", "v1", *WORKSPACE,
                      "--dry-run", tmp_path / "job", "--epochs", "40", "--val-ids", "20-24")
    assert result.exit_code == 0, result.output
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["command"][:3] == ["python", "-m", "cellpipe.unet.train"]
    assert job["command"][-4:] == ["--epochs", "40", "--val-ids", "20-24"]
    assert job["workspace"]["workspace_name"] == "lab-ws"


def test_train_azure_chooses_the_cluster_size(tmp_path):
    result = cellpipe("model", "train-azure", "https://labstore.blob.core.windows.net/cells/isbi", "--sdk", "v2",
                      "--compute", "cpu-cluster", "--vm-size", "Standard_D4s_v3", "--dry-run", tmp_path / "job")
    assert result.exit_code == 0, result.output
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert (job["compute"]["name"], job["compute"]["vm_size"], job["compute"]["gpu"]) == ("cpu-cluster", "Standard_D4s_v3", False)
    assert (tmp_path / "job" / "v2" / "job.yml").is_file()


def test_train_azure_rejects_a_local_folder_as_cloud_data(tmp_path):
    result = cellpipe("model", "train-azure", str(tmp_path), "--dry-run", tmp_path / "job")
    assert result.exit_code == 2
    assert "azureml://datastores" in result.output


def test_deploy_to_aci_by_default_packages_the_shipped_model_with_sdk_v1(tmp_path):
    result = cellpipe("model", "deploy", "--dry-run", tmp_path / "service", "--max-pixels", "4000000")
    assert result.exit_code == 0, result.output
    deployment = json.loads((tmp_path / "service" / "deployment.json").read_text())
    assert (deployment["sdk"], deployment["target"]) == ("v1", "aci")
    assert deployment["environment_variables"] == {"CELLPIPE_SCORE_MAX_PIXELS": "4000000"}
    assert (tmp_path / "service" / "model" / "model.keras").read_bytes() == DEFAULT_MODEL_PATH.read_bytes()
    assert "azmlinfsrv --entry_script" in result.output


def test_deploy_to_an_online_endpoint_uses_sdk_v2(tmp_path):
    result = cellpipe("model", "deploy", DEFAULT_MODEL_PATH, "--target", "online-endpoint", "--name", "cells-prod",
                      "--dry-run", tmp_path / "service")
    assert result.exit_code == 0, result.output
    deployment = json.loads((tmp_path / "service" / "deployment.json").read_text())
    assert (deployment["sdk"], deployment["service_name"]) == ("v2", "cells-prod")
    assert (tmp_path / "service" / "v2" / "deployment.yml").is_file()


def test_deploy_refuses_aci_with_sdk_v2(tmp_path):
    result = cellpipe("model", "deploy", "--target", "aci", "--sdk", "v2", "--dry-run", tmp_path / "service")
    assert result.exit_code == 2
    assert "online-endpoint" in result.output


@pytest.mark.parametrize(
    ("command", "operation", "argument"),
    [(["list", "cellpipe-unet"], "list_models", ("name", "cellpipe-unet")),
     (["promote", "cellpipe-unet:3"], "promote_model", ("model", "cellpipe-unet:3")),
     (["download", "cellpipe-unet:3"], "download_model", ("model", "cellpipe-unet:3"))],
)
def test_registry_commands_write_their_request_on_a_dry_run(tmp_path, command, operation, argument):
    result = cellpipe("model", *command, *WORKSPACE, "--sdk", "v2", "--dry-run", tmp_path / "request")
    assert result.exit_code == 0, result.output
    request = json.loads((tmp_path / "request" / "request.json").read_text())
    assert (request["operation"], request["sdk"]) == (operation, "v2")
    assert request[argument[0]] == argument[1]


def test_promote_needs_a_version(tmp_path):
    result = cellpipe("model", "promote", "cellpipe-unet", "--dry-run", tmp_path / "request")
    assert result.exit_code == 2
    assert "version" in result.output


def test_promote_makes_a_model_of_the_database_the_batch_default(tmp_path):
    from cellpipe.db import get_default_model, open_database, register_model

    url = f"sqlite:///{tmp_path / 'cells.sqlite'}"
    engine = open_database(url)
    register_model(engine, "cellpipe-unet", "3", file_hash="b" * 64, location="/models/3/model.keras")
    # Its file is not here, so it cannot be compared with the default (tests/test_promote.py): --force.
    refused = cellpipe("model", "promote", "cellpipe-unet:3", "--db", url)
    assert refused.exit_code == 1 and get_default_model(engine) is None
    result = cellpipe("model", "promote", "cellpipe-unet:3", "--db", url, "--force")
    assert result.exit_code == 0, result.output
    assert (get_default_model(engine).name, get_default_model(engine).version) == ("cellpipe-unet", "3")
    assert get_default_model(engine).metrics["promotions"][0]["forced"] is True


def test_promote_of_a_model_nowhere_fails_and_changes_nothing(tmp_path):
    from cellpipe.db import get_default_model, open_database

    url = f"sqlite:///{tmp_path / 'cells.sqlite'}"
    result = cellpipe("model", "promote", "cellpipe-unet:9", "--db", url)
    assert result.exit_code == 2
    assert "not in the models table" in result.output
    assert get_default_model(open_database(url)) is None
