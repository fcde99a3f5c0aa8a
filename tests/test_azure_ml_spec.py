"""Dry-run specifications: built by the real SDK classes, written to a folder, read back offline."""

import json
import tarfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cellpipe.azure.ml import (
    ComputeTarget,
    Deployment,
    ModelRef,
    TrainingJob,
    WorkspaceRef,
    open_backend,
    parse_data_location,
    parse_model_ref,
)
from cellpipe.azure.ml import spec
from cellpipe.unet import DEFAULT_MODEL_PATH

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::PendingDeprecationWarning", "ignore:.*should not be instantiated"
)

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = WorkspaceRef("00000000-0000-0000-0000-000000000000", "lab-rg", "lab-ws")
JOB = TrainingJob(parse_data_location("azureml://datastores/cells/paths/isbi/train/"), ("--epochs", "3", "--val-ids", "20-24"))
TRAIN_COMMAND = ["python", "-m", "cellpipe.unet.train"]


def test_every_runtime_dependency_has_an_exact_pin_that_satisfies_pyproject():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {Requirement(line).name.lower(): Requirement(line) for line in spec.pinned_requirements(gpu=False, serve=False)}
    for dependency in map(Requirement, dependencies):
        pin = pins[dependency.name.lower()]
        (version,) = [s.version for s in pin.specifier if s.operator == "=="]
        assert dependency.specifier.contains(version), f"{pin} does not satisfy {dependency}"


def test_gpu_environments_install_tensorflow_with_its_cuda_libraries():
    gpu = spec.pinned_requirements(gpu=True, serve=False)
    cpu = spec.pinned_requirements(gpu=False, serve=False)
    assert any(line.startswith("tensorflow[and-cuda]==") for line in gpu)
    assert any(line.startswith("tensorflow==") for line in cpu)


def test_service_environments_add_the_inference_server():
    assert any(line.startswith("azureml-inference-server-http==") for line in spec.pinned_requirements(gpu=False, serve=True))
    assert not any("inference-server" in line for line in spec.pinned_requirements(gpu=False, serve=False))


def test_the_project_archive_holds_the_sources_pip_builds_from(tmp_path):
    names = tarfile.open(spec.write_project_archive(tmp_path)).getnames()
    for expected in ("pyproject.toml", "setup.py", "cellpipe/unet/train.py", "cli/commands_model.py",
                     "cellpipe/models/default/model.keras", "cellpipe/azure/score.py"):
        assert f"cellpipe-0.1.0/{expected}" in names
    assert any(name.startswith("cellpipe-0.1.0/ext/") and name.endswith(".pyx") for name in names)


def test_the_project_archive_leaves_out_build_outputs(tmp_path):
    names = tarfile.open(spec.write_project_archive(tmp_path)).getnames()
    assert not [name for name in names if name.endswith((".so", ".c", ".pyc")) or "__pycache__" in name]


def test_the_project_archive_is_byte_identical_when_written_again(tmp_path):
    first = spec.write_project_archive(tmp_path / "a").read_bytes()
    assert spec.write_project_archive(tmp_path / "b").read_bytes() == first


def test_v1_training_spec_reads_back_with_the_training_command_and_datastore(tmp_path):
    from azureml.core.runconfig import RunConfiguration

    open_backend("v1", WORKSPACE).submit_training(JOB, dry_run=tmp_path)
    run_config = RunConfiguration.load(str(tmp_path / "v1" / "train.runconfig"))
    assert run_config.command == [*TRAIN_COMMAND, "$AZUREML_DATAREFERENCE_data", "--out", "outputs/model/model.keras",
                                  "--epochs", "3", "--val-ids", "20-24"]
    assert run_config.target == "cellpipe-gpu"
    reference = run_config.data_references["data"]
    assert (reference.data_store_name, reference.path_on_data_store, reference.mode) == ("cells", "isbi/train/", "mount")


def test_v1_training_environment_pins_the_requirements_and_installs_the_project(tmp_path):
    from azureml.core import Environment

    open_backend("v1", WORKSPACE).submit_training(JOB, dry_run=tmp_path)
    environment = Environment.load_from_directory(str(tmp_path / "v1" / "environment"))
    pip_packages = list(environment.python.conda_dependencies.pip_packages)
    assert set(spec.pinned_requirements(gpu=True, serve=False)) <= set(pip_packages)
    assert "cellpipe-0.1.0.tar.gz" in pip_packages
    assert (tmp_path / "environment" / "cellpipe-0.1.0.tar.gz").is_file()
    assert environment.docker.base_image == spec.GPU_IMAGE


def test_v1_training_spec_records_the_cluster_to_create(tmp_path):
    job = TrainingJob(JOB.data, compute=ComputeTarget("cpu-cluster", "Standard_D4s_v3", max_nodes=2))
    open_backend("v1", WORKSPACE).submit_training(job, dry_run=tmp_path)
    compute = json.loads((tmp_path / "v1" / "compute.json").read_text())
    settings = compute["properties"]["properties"]
    assert (compute["name"], settings["vmSize"]) == ("cpu-cluster", "Standard_D4s_v3")
    assert settings["scaleSettings"] == {"minNodeCount": 0, "maxNodeCount": 2, "nodeIdleTimeBeforeScaleDown": "PT1800S"}
    assert json.loads((tmp_path / "job.json").read_text())["environment"]["base_image"] == spec.CPU_IMAGE


def test_v2_training_spec_loads_as_a_command_job(tmp_path):
    from azure.ai.ml import load_compute, load_job

    open_backend("v2", WORKSPACE).submit_training(JOB, dry_run=tmp_path)
    job = load_job(tmp_path / "v2" / "job.yml")
    assert job.command == ("python -m cellpipe.unet.train ${{inputs.data}} --out ${{outputs.model}}/model.keras "
                           "--epochs 3 --val-ids 20-24")
    assert job.inputs["data"].path == "azureml://datastores/cells/paths/isbi/train/"
    assert job.compute == "cellpipe-gpu"
    assert Path(tmp_path / "v2" / job.environment.build.path).resolve() == (tmp_path / "environment").resolve()
    assert load_compute(tmp_path / "v2" / "compute.yml").size == "Standard_NC4as_T4_v3"


def test_v2_environment_dockerfile_installs_requirements_then_the_project(tmp_path):
    open_backend("v2", WORKSPACE).submit_training(JOB, dry_run=tmp_path)
    dockerfile = (tmp_path / "environment" / "Dockerfile").read_text()
    assert dockerfile.startswith(f"FROM {spec.GPU_IMAGE}\n")
    assert dockerfile.index("-r /tmp/cellpipe-environment/requirements.txt") < dockerfile.index("cellpipe-0.1.0.tar.gz \\")


def test_a_deployment_folder_holds_score_py_and_the_model_as_the_service_sees_them(tmp_path):
    open_backend("v1", WORKSPACE).deploy(DEFAULT_MODEL_PATH, Deployment("cellpipe"), dry_run=tmp_path)
    assert (tmp_path / "score.py").read_bytes() == (REPO / "cellpipe" / "azure" / "score.py").read_bytes()
    assert (tmp_path / "model" / "model.keras").read_bytes() == DEFAULT_MODEL_PATH.read_bytes()
    assert (tmp_path / "model" / "model.json").read_bytes() == DEFAULT_MODEL_PATH.with_suffix(".json").read_bytes()


def test_v1_deployment_spec_is_an_authenticated_aci_service(tmp_path):
    from azureml.core import Environment

    service = Deployment("cellpipe", cpu_cores=2, memory_gb=6, environment_variables={"CELLPIPE_SCORE_MAX_PIXELS": "1000"})
    open_backend("v1", WORKSPACE).deploy(DEFAULT_MODEL_PATH, service, dry_run=tmp_path)
    payload = json.loads((tmp_path / "v1" / "aci_deploy_config.json").read_text())
    assert (payload["computeType"], payload["authEnabled"], payload["name"]) == ("ACI", True, "cellpipe")
    assert payload["containerResourceRequirements"] == {"cpu": 2, "memoryInGB": 6}
    environment = Environment.load_from_directory(str(tmp_path / "v1" / "environment"))
    assert environment.environment_variables == {"CELLPIPE_SCORE_MAX_PIXELS": "1000"}
    assert set(spec.pinned_requirements(gpu=False, serve=True)) <= set(environment.python.conda_dependencies.pip_packages)


def test_v2_deployment_spec_loads_as_a_key_authenticated_endpoint(tmp_path):
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    service = Deployment("cellpipe", "online-endpoint", "green", instance_type="Standard_F4s_v2")
    open_backend("v2", WORKSPACE).deploy(DEFAULT_MODEL_PATH, service, dry_run=tmp_path)
    endpoint = load_online_endpoint(tmp_path / "v2" / "endpoint.yml")
    deployment = load_online_deployment(tmp_path / "v2" / "deployment.yml")
    assert (endpoint.name, endpoint.auth_mode) == ("cellpipe", "key")
    assert (deployment.name, deployment.endpoint_name, deployment.instance_type) == ("green", "cellpipe", "Standard_F4s_v2")
    assert Path(deployment.model.path).resolve() == (tmp_path / "model").resolve()
    assert (tmp_path / "v2" / deployment.code_configuration.code / "score.py").is_file()


def test_a_v2_deployment_of_a_registered_model_references_it_without_copying(tmp_path):
    from azure.ai.ml import load_online_deployment

    open_backend("v2", WORKSPACE).deploy(ModelRef("cellpipe-unet", "7"), Deployment("cellpipe", "online-endpoint"), dry_run=tmp_path)
    assert load_online_deployment(tmp_path / "v2" / "deployment.yml").model == "cellpipe-unet:7"
    assert not (tmp_path / "model").exists()


def test_a_dry_run_refuses_a_folder_that_already_holds_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(spec.SpecError, match="not empty"):
        open_backend("v2", WORKSPACE).submit_training(JOB, dry_run=tmp_path)


def test_data_locations_are_datastore_paths_or_blob_containers():
    blob = parse_data_location("https://labstore.blob.core.windows.net/microscope-a/train/2024")
    assert (blob.datastore, blob.container, blob.path) == ("labstore_microscope_a", "microscope-a", "train/2024")
    assert blob.datastore_uri == "azureml://datastores/labstore_microscope_a/paths/train/2024"
    with pytest.raises(ValueError, match="azureml://datastores"):
        parse_data_location("/home/me/train")
    with pytest.raises(ValueError, match="SAS"):
        parse_data_location("https://labstore.blob.core.windows.net/microscope-a/train?sv=2024&sig=secret")


def test_model_references_are_name_and_optional_version():
    assert (parse_model_ref("cellpipe-unet:12").name, parse_model_ref("cellpipe-unet:12").version) == ("cellpipe-unet", "12")
    assert parse_model_ref("cellpipe-unet").version == ""
    with pytest.raises(ValueError, match="number"):
        parse_model_ref("cellpipe-unet:latest")


def test_a_cloud_job_chooses_its_own_output_folder():
    with pytest.raises(ValueError, match="--out"):
        TrainingJob(JOB.data, ("--out", "elsewhere.keras"))


def test_service_names_follow_azure_rules():
    with pytest.raises(ValueError, match="lowercase"):
        Deployment("Cellpipe_Service")
    with pytest.raises(ValueError, match="target"):
        Deployment("cellpipe", "kubernetes")
