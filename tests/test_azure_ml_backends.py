"""Both Azure ML backends make the right SDK calls in the right order.

The control plane (one thin adapter per SDK) is the only thing replaced: the double below
records each call; the SDK objects handed to it are the real ones the backends build.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest

from cellpipe.azure.ml import (
    DEFAULT_TAG,
    AzureMLError,
    Deployment,
    ModelRef,
    RunRef,
    TrainingJob,
    WorkspaceRef,
    open_backend,
    parse_data_location,
)
from cellpipe.azure.ml.v1 import V1ControlPlane
from cellpipe.azure.ml.v2 import V2ControlPlane
from cellpipe.unet import DEFAULT_MODEL_PATH

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::PendingDeprecationWarning", "ignore:.*should not be instantiated"
)

WORKSPACE = WorkspaceRef("00000000-0000-0000-0000-000000000000", "lab-rg", "lab-ws")
DATASTORE_DATA = parse_data_location("azureml://datastores/cells/paths/isbi/train/")
BLOB_DATA = parse_data_location("https://labstore.blob.core.windows.net/microscope-a/train")


class RecordingControlPlane:
    """Stands in for V1ControlPlane / V2ControlPlane: records calls, answers from ``answers``."""

    def __init__(self, adapter: type, **answers):
        self._adapter = adapter
        self._answers = answers
        self.calls = []

    def __getattr__(self, name):
        if not callable(getattr(self._adapter, name, None)):
            raise AttributeError(f"{self._adapter.__name__} has no method {name}")

        def call(*args, **kwargs):
            self.calls.append(SimpleNamespace(name=name, args=args, kwargs=kwargs))
            answer = self._answers.get(name)
            return answer(*args, **kwargs) if callable(answer) else answer

        return call

    @property
    def names(self):
        return [call.name for call in self.calls]

    def call(self, name):
        return next(call for call in self.calls if call.name == name)


def v1_run(status="Completed"):
    return SimpleNamespace(id="cellpipe-unet_1", get_status=lambda: status, get_portal_url=lambda: "https://ml.azure.com/runs/1")


def v1_model(version=3, tags=None):
    return SimpleNamespace(name="cellpipe-unet", version=version, tags=dict(tags or {}))


def v1_control(**answers):
    defaults = dict(workspace="ws", find_compute=None, upload_package="https://ws.blob/cellpipe-0.1.0.tar.gz",
                    submit=v1_run(), get_run=v1_run(), wait_for_run=lambda run, show: run,
                    register_run_model=v1_model(), register_model=v1_model(4), get_model=v1_model(),
                    deploy=SimpleNamespace(name="cellpipe", state="Healthy", scoring_uri="http://aci/score"))
    return RecordingControlPlane(V1ControlPlane, **{**defaults, **answers})


def test_v1_training_creates_a_missing_cluster_before_submitting():
    control = v1_control()
    run = open_backend("v1", WORKSPACE, control_plane=control).submit_training(TrainingJob(DATASTORE_DATA))
    assert control.names == ["workspace", "upload_package", "find_compute", "create_compute", "submit"]
    assert control.call("create_compute").args[1] == "cellpipe-gpu"
    assert control.call("create_compute").args[2].vm_size == "Standard_NC4as_T4_v3"
    assert run.run_id == "cellpipe-unet_1"


def test_v1_training_reuses_an_existing_cluster():
    control = v1_control(find_compute=SimpleNamespace(name="cellpipe-gpu"))
    open_backend("v1", WORKSPACE, control_plane=control).submit_training(TrainingJob(DATASTORE_DATA))
    assert "create_compute" not in control.names


def test_v1_training_runs_the_training_module_in_an_environment_with_the_uploaded_project():
    control = v1_control()
    job = TrainingJob(DATASTORE_DATA, ("--epochs", "5"))
    open_backend("v1", WORKSPACE, control_plane=control).submit_training(job)
    workspace, experiment, script_run = control.call("submit").args
    assert (workspace, experiment) == ("ws", "cellpipe-unet")
    assert script_run.command == ["python", "-m", "cellpipe.unet.train", "$AZUREML_DATAREFERENCE_data",
                                  "--out", "outputs/model/model.keras", "--epochs", "5"]
    pip_packages = list(script_run.run_config.environment.python.conda_dependencies.pip_packages)
    assert "https://ws.blob/cellpipe-0.1.0.tar.gz" in pip_packages
    assert control.call("upload_package").args[1].name == "cellpipe-0.1.0.tar.gz"


def test_v1_training_registers_a_blob_container_as_a_datastore_first():
    control = v1_control()
    open_backend("v1", WORKSPACE, control_plane=control).submit_training(TrainingJob(BLOB_DATA))
    assert control.names[:2] == ["workspace", "register_blob_datastore"]
    assert control.call("register_blob_datastore").args[1:] == ("labstore_microscope_a", "microscope-a", "labstore")
    script_run = control.call("submit").args[2]
    assert script_run.run_config.data_references["data"].data_store_name == "labstore_microscope_a"


def test_v1_wait_then_register_the_runs_model_folder():
    control = v1_control()
    backend = open_backend("v1", WORKSPACE, control_plane=control)
    finished = backend.wait(RunRef("cellpipe-unet_1", experiment="cellpipe-unet"))
    model = backend.register_model(finished, "cellpipe-unet")
    assert control.names == ["workspace", "get_run", "wait_for_run", "get_run", "register_run_model"]
    assert control.call("register_run_model").args[1:3] == ("cellpipe-unet", "outputs/model")
    assert str(model) == "cellpipe-unet:3"


def test_v1_wait_raises_when_the_run_failed():
    control = v1_control(get_run=v1_run("Failed"))
    with pytest.raises(AzureMLError, match="ended Failed"):
        open_backend("v1", WORKSPACE, control_plane=control).wait(RunRef("cellpipe-unet_1", experiment="x"))


def test_v1_deploys_a_registered_model_to_aci_with_key_auth():
    control = v1_control()
    service = Deployment("cellpipe", "aci", cpu_cores=2, memory_gb=8, environment_variables={"CELLPIPE_SCORE_MAX_IMAGES": "50"})
    status = open_backend("v1", WORKSPACE, control_plane=control).deploy(ModelRef("cellpipe-unet", "3"), service)
    assert control.names == ["workspace", "get_model", "upload_package", "deploy"]
    _, name, models, inference, aci = control.call("deploy").args
    assert name == "cellpipe"
    assert models == [control._answers["get_model"]]
    assert inference.entry_script == "score.py"
    assert (aci.auth_enabled, aci.cpu_cores, aci.memory_gb) == (True, 2, 8)
    assert inference.environment.environment_variables == {"CELLPIPE_SCORE_MAX_IMAGES": "50"}
    assert status.scoring_uri == "http://aci/score"


def test_v1_deploying_a_local_model_registers_it_first():
    control = v1_control()
    open_backend("v1", WORKSPACE, control_plane=control).deploy(DEFAULT_MODEL_PATH, Deployment("cellpipe"))
    assert control.names[:2] == ["workspace", "register_model"]
    registered_folder = control.call("register_model").args[1]
    assert control.call("register_model").args[2] == "cellpipe-unet"
    assert control.call("get_model").args[1:] == ("cellpipe-unet", "4")
    assert registered_folder.name == "model"


def test_v1_refuses_a_managed_online_endpoint_without_calling_azure():
    control = v1_control()
    with pytest.raises(AzureMLError, match="--sdk v2"):
        open_backend("v1", WORKSPACE, control_plane=control).deploy(
            ModelRef("cellpipe-unet", "3"), Deployment("cellpipe", "online-endpoint"))
    assert "deploy" not in control.names


def test_v1_promote_moves_the_default_tag_to_the_chosen_version():
    old_default = v1_model(2, {DEFAULT_TAG: "true"})
    control = v1_control(list_models=[old_default, v1_model(3)], get_model=v1_model(3))
    promoted = open_backend("v1", WORKSPACE, control_plane=control).promote_model(ModelRef("cellpipe-unet", "3"))
    assert control.names == ["workspace", "list_models", "update_model_tags", "get_model", "update_model_tags"]
    untag, tag = [call.args for call in control.calls if call.name == "update_model_tags"]
    assert untag == (old_default, {}, [DEFAULT_TAG])
    assert tag[1:] == ({DEFAULT_TAG: "true"}, [])
    assert promoted.tags[DEFAULT_TAG] == "true"


def test_v1_delete_deployment_deletes_the_web_service():
    service = SimpleNamespace(name="cellpipe")
    control = v1_control(get_service=service)
    open_backend("v1", WORKSPACE, control_plane=control).delete_deployment("cellpipe")
    assert control.names == ["workspace", "get_service", "delete_service"]
    assert control.call("delete_service").args == (service,)


def test_a_dry_run_makes_no_control_plane_call(tmp_path):
    for sdk, target in (("v1", "aci"), ("v2", "online-endpoint")):
        control = v1_control() if sdk == "v1" else v2_control()
        backend = open_backend(sdk, WORKSPACE, control_plane=control)
        backend.submit_training(TrainingJob(BLOB_DATA), dry_run=tmp_path / sdk / "train")
        backend.deploy(DEFAULT_MODEL_PATH, Deployment("cellpipe", target), dry_run=tmp_path / sdk / "deploy")
        assert control.calls == []


def v2_job(status="Completed"):
    return SimpleNamespace(name="sincere_cup_1", status=status, studio_url="https://ml.azure.com/runs/sincere_cup_1")


def v2_endpoint():
    return SimpleNamespace(name="cellpipe", provisioning_state="Succeeded", scoring_uri="https://cellpipe.inference/score", traffic={})


def v2_control(**answers):
    defaults = dict(client="ml_client", find_compute=None, create_job=v2_job(), stream_job=v2_job(),
                    create_model=lambda client, model: SimpleNamespace(name=model.name, version="7", tags=model.tags),
                    get_endpoint=v2_endpoint(), create_endpoint=lambda client, endpoint: endpoint)
    return RecordingControlPlane(V2ControlPlane, **{**defaults, **answers})


def test_v2_training_creates_a_missing_cluster_then_the_command_job():
    control = v2_control()
    job = TrainingJob(DATASTORE_DATA, ("--epochs", "5"))
    run = open_backend("v2", WORKSPACE, control_plane=control).submit_training(job)
    assert control.names == ["client", "find_compute", "create_compute", "create_job"]
    compute = control.call("create_compute").args[1]
    assert (compute.name, compute.size, compute.min_instances) == ("cellpipe-gpu", "Standard_NC4as_T4_v3", 0)
    command_job = control.call("create_job").args[1]
    assert command_job.command == ("python -m cellpipe.unet.train ${{inputs.data}} --out ${{outputs.model}}/model.keras"
                                   " --epochs 5")
    assert command_job.inputs["data"].path == "azureml://datastores/cells/paths/isbi/train/"
    assert Path(command_job.environment.build.path).name == "environment"
    assert run.run_id == "sincere_cup_1"


def test_v2_training_registers_a_blob_container_as_a_datastore_first():
    control = v2_control(find_compute=SimpleNamespace(name="cellpipe-gpu"))
    open_backend("v2", WORKSPACE, control_plane=control).submit_training(TrainingJob(BLOB_DATA))
    assert control.names == ["client", "register_blob_datastore", "find_compute", "create_job"]
    assert control.call("create_job").args[1].inputs["data"].path == "azureml://datastores/labstore_microscope_a/paths/train"


def test_v2_registers_the_jobs_model_output():
    control = v2_control()
    model = open_backend("v2", WORKSPACE, control_plane=control).register_model(RunRef("sincere_cup_1"), "cellpipe-unet")
    asset = control.call("create_model").args[1]
    assert asset.path == "azureml://jobs/sincere_cup_1/outputs/model"
    assert (asset.type, str(model)) == ("custom_model", "cellpipe-unet:7")


def test_v2_wait_raises_when_the_job_failed():
    control = v2_control(stream_job=v2_job("Failed"))
    with pytest.raises(AzureMLError, match="ended Failed"):
        open_backend("v2", WORKSPACE, control_plane=control).wait(RunRef("sincere_cup_1"))


def test_v2_deploys_endpoint_then_deployment_then_routes_traffic_to_it():
    control = v2_control()
    service = Deployment("cellpipe", "online-endpoint", "green", instance_type="Standard_F4s_v2", instance_count=2)
    status = open_backend("v2", WORKSPACE, control_plane=control).deploy(ModelRef("cellpipe-unet", "7"), service)
    assert control.names == ["client", "create_endpoint", "create_deployment", "get_endpoint", "create_endpoint"]
    endpoint = control.calls[1].args[1]
    deployment = control.call("create_deployment").args[1]
    assert (endpoint.name, endpoint.auth_mode) == ("cellpipe", "key")
    assert (deployment.name, deployment.instance_type, deployment.instance_count) == ("green", "Standard_F4s_v2", 2)
    assert deployment.model == "cellpipe-unet:7"  # how the SDK loads an azureml:NAME:VERSION reference
    assert deployment.code_configuration.scoring_script == "score.py"
    assert control.calls[-1].args[1].traffic == {"green": 100}
    assert status.scoring_uri == "https://cellpipe.inference/score"


def test_v2_deploying_a_local_model_registers_it_first():
    control = v2_control()
    open_backend("v2", WORKSPACE, control_plane=control).deploy(DEFAULT_MODEL_PATH, Deployment("cellpipe", "online-endpoint"))
    assert control.names[:3] == ["client", "create_model", "create_endpoint"]
    assert control.call("create_deployment").args[1].model == "cellpipe-unet:7"


def test_v2_delete_removes_one_deployment_or_the_whole_endpoint():
    control = v2_control()
    backend = open_backend("v2", WORKSPACE, control_plane=control)
    backend.delete_deployment("cellpipe", "blue")
    backend.delete_deployment("cellpipe")
    assert control.names == ["client", "delete_deployment", "delete_endpoint"]
    assert control.call("delete_deployment").args[1:] == ("cellpipe", "blue")


def test_the_double_refuses_methods_the_real_adapter_lacks():
    with pytest.raises(AttributeError):
        v1_control().create_job
