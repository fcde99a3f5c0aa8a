"""SDK v1 backend (``azureml-core``): ScriptRunConfig on AmlCompute, ``Model.deploy`` to ACI.

Azure ML SDK v1 left Microsoft's support on 2026-06-30 and new ACI deployments through it
are deprecated; this backend exists for workspaces that still use it. The v2 backend
(:mod:`cellpipe.azure.ml.v2`) offers the same interface.

The service environment installs ``azureml-inference-server-http`` itself rather than
SDK v1's usual ``azureml-defaults``: that meta-package pulls ``azureml-dataset-runtime``,
which pins ``numpy<2.3.3`` and cannot share an environment with cellpipe's numpy 2.4
(``Model.deploy`` prints a warning about it, which is expected).

The SDK objects are built by :func:`build_training` and :func:`build_deployment` from a
specification folder, and every call to Azure goes through :class:`V1ControlPlane`.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Mapping

from cellpipe.azure.ml import (
    DEFAULT_TAG,
    AzureMLBackend,
    AzureMLError,
    Deployment,
    EndpointStatus,
    ModelRef,
    RunRef,
    TrainingJob,
    WorkspaceRef,
    require_sdk,
)
from cellpipe.azure.ml import spec

EXTRA = "azureml-v1"
DATA_REFERENCE = "data"


def _core():
    return require_sdk("azureml.core", EXTRA)


def build_environment(env: spec.EnvironmentFolder, name: str, package: str) -> Any:
    """Return the v1 ``Environment``: base image, Python, pinned requirements and ``package``.

    ``package`` is the project archive as pip sees it: its URL in the workspace once
    uploaded (:meth:`V1ControlPlane.upload_package`), its file name in a dry run.
    """
    core = _core()
    from azureml.core.conda_dependencies import CondaDependencies

    environment = core.Environment(name)
    environment.docker.base_image = env.base_image
    conda = CondaDependencies.create(python_version=spec.PYTHON_VERSION, conda_packages=["pip"],
                                     pip_packages=[*env.requirements, package], pin_sdk_version=False)
    environment.python.conda_dependencies = conda
    set_environment_variables(environment, {})  # not the SDK's EXAMPLE_ENV_VAR
    return environment


def set_environment_variables(environment: Any, values: Mapping[str, str]) -> None:
    """Set the variables of a v1 ``Environment`` (those of a web service), without the SDK's deprecation notice."""
    import logging

    sdk_logger = logging.getLogger("azureml.core.environment")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.ERROR)  # the notice is about training runs, which use RunConfiguration
    try:
        environment.environment_variables = dict(values)
    finally:
        sdk_logger.setLevel(level)


def build_training(job: TrainingJob, folder: Path, env: spec.EnvironmentFolder, package: str) -> dict[str, Any]:
    """Return the v1 objects of a training run: environment, run configuration, compute."""
    core = _core()
    from azureml.core.compute import AmlCompute
    from azureml.core.runconfig import DataReferenceConfiguration

    environment = build_environment(env, "cellpipe-train", package)
    data = DataReferenceConfiguration(datastore_name=job.data.datastore, mode="mount",
                                      path_on_datastore=job.data.path or None)
    command = spec.training_command(f"$AZUREML_DATAREFERENCE_{DATA_REFERENCE}", job.train_args)
    source = folder / "code"
    source.mkdir(parents=True, exist_ok=True)
    (source / ".amlignore").write_text("# the job runs the cellpipe installed in its environment\n")
    script_run = core.ScriptRunConfig(source_directory=str(source), command=command,
                                      compute_target=job.compute.name, environment=environment)
    script_run.run_config.command = command  # what Experiment.submit copies at submission
    script_run.run_config.data_references = {DATA_REFERENCE: data}
    script_run.run_config.environment_variables = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    provisioning = AmlCompute.provisioning_configuration(
        vm_size=job.compute.vm_size, min_nodes=job.compute.min_nodes, max_nodes=job.compute.max_nodes,
        idle_seconds_before_scaledown=job.compute.idle_seconds)
    return {"environment": environment, "script_run": script_run, "provisioning": provisioning}


def write_training_spec(job: TrainingJob, workspace: WorkspaceRef, folder: Path, *, package: str | None = None) -> dict[str, Any]:
    """Write the training specification into ``folder``; return the v1 objects built for it."""
    env = spec.write_environment(folder / "environment", gpu=job.compute.gpu, serve=False)
    objects = build_training(job, folder, env, package or env.archive.name)
    v1 = folder / "v1"
    v1.mkdir(parents=True, exist_ok=True)
    (v1 / "train.runconfig").touch()  # RunConfiguration.save takes a file path only if the file exists
    # save() turns some fields into YAML maps: save a copy, submit the original
    copy.deepcopy(objects["script_run"].run_config).save(path=str(v1 / "train.runconfig"))
    objects["environment"].save_to_directory(str(v1 / "environment"), overwrite=True)
    from azureml.core.compute import AmlCompute

    # The REST body ComputeTarget.create sends (location: the workspace's, filled in at creation).
    payload = AmlCompute._build_create_payload(objects["provisioning"], None, workspace.subscription_id)
    spec.write_json(v1 / "compute.json", {"name": job.compute.name, **payload})
    spec.write_json(folder / "job.json", {
        "sdk": "v1", "workspace": workspace.as_dict(), "experiment": job.experiment,
        "command": objects["script_run"].command, "data": {"uri": job.data.uri, "datastore": job.data.datastore,
        "path": job.data.path, "register_container": bool(job.data.account)},
        "compute": {"name": job.compute.name, "vm_size": job.compute.vm_size, "gpu": job.compute.gpu,
                    "min_nodes": job.compute.min_nodes, "max_nodes": job.compute.max_nodes},
        "environment": {"base_image": env.base_image, "requirements": list(env.requirements),
                        "project_archive": f"environment/{env.archive.name}"},
        "output_model": spec.OUTPUT_MODEL,
    })
    return objects


def build_deployment(deployment: Deployment, env: spec.EnvironmentFolder, entry_script: Path, package: str) -> dict[str, Any]:
    """Return the v1 objects of an ACI deployment: inference and deployment configurations."""
    _core()
    from azureml.core.model import InferenceConfig
    from azureml.core.webservice import AciWebservice

    if deployment.target != "aci":
        raise AzureMLError("SDK v1 deploys to ACI only: use --sdk v2 for a managed online endpoint")
    environment = build_environment(env, "cellpipe-serve", package)
    set_environment_variables(environment, deployment.environment_variables)
    inference = InferenceConfig(entry_script=entry_script.name, source_directory=str(entry_script.parent),
                                environment=environment)
    aci = AciWebservice.deploy_configuration(
        cpu_cores=deployment.cpu_cores, memory_gb=deployment.memory_gb, auth_enabled=True,
        description="cellpipe: cells in microscope images", tags={"app": "cellpipe"})
    return {"environment": environment, "inference_config": inference, "deployment_config": aci}


def write_deployment_spec(model_path: Path, deployment: Deployment, workspace: WorkspaceRef, folder: Path,
                          *, package: str | None = None) -> dict[str, Any]:
    """Write the deployment specification (with score.py and the model) into ``folder``."""
    entry_script, model_dir = spec.write_service_files(folder, model_path)
    code = folder / "code"  # InferenceConfig uploads its source directory: score.py alone
    code.mkdir(exist_ok=True)
    (code / "score.py").write_bytes(entry_script.read_bytes())
    env = spec.write_environment(folder / "environment", gpu=False, serve=True)
    objects = build_deployment(deployment, env, code / "score.py", package or env.archive.name)
    objects["inference_config"].validate_configuration()
    objects["deployment_config"].validate_configuration()
    v1 = folder / "v1"
    objects["environment"].save_to_directory(str(v1 / "environment"), overwrite=True)
    aci = objects["deployment_config"]
    payload = aci._build_create_payload(deployment.service_name, {})  # the REST body Model.deploy sends
    spec.write_json(v1 / "aci_deploy_config.json", payload)
    spec.write_json(v1 / "inference_config.json", {"entry_script": "score.py", "source_directory": "code",
                                                   "environment": "v1/environment"})
    spec.write_json(folder / "deployment.json", {
        "sdk": "v1", "target": "aci", "workspace": workspace.as_dict(), "service_name": deployment.service_name,
        "entry_script": "score.py", "model_dir": "model", "cpu_cores": deployment.cpu_cores,
        "memory_gb": deployment.memory_gb, "auth_enabled": True,
        "environment_variables": dict(deployment.environment_variables),
        "environment": {"base_image": env.base_image, "requirements": list(env.requirements),
                        "project_archive": f"environment/{env.archive.name}"},
    })
    return {**objects, "model_dir": model_dir}


class V1ControlPlane:
    """The only code that talks to Azure ML through SDK v1: one method per SDK call."""

    def workspace(self, ref: WorkspaceRef) -> Any:
        core = _core()
        if ref.from_config:
            return core.Workspace.from_config(path=str(ref.config_path) if ref.config_path else None)
        return core.Workspace(ref.subscription_id, ref.resource_group, ref.workspace_name)

    def find_compute(self, workspace: Any, name: str) -> Any | None:
        return workspace.compute_targets.get(name)

    def create_compute(self, workspace: Any, name: str, provisioning: Any) -> Any:
        target = _core().ComputeTarget.create(workspace, name, provisioning)
        target.wait_for_completion(show_output=False)
        return target

    def register_blob_datastore(self, workspace: Any, name: str, container: str, account: str) -> Any:
        # No key or SAS: identity-based access with the workspace's / user's identity.
        return _core().Datastore.register_azure_blob_container(workspace, name, container, account)

    def upload_package(self, workspace: Any, archive: Path) -> str:
        return _core().Environment.add_private_pip_wheel(workspace, str(archive), exist_ok=True)

    def submit(self, workspace: Any, experiment: str, script_run: Any) -> Any:
        return _core().Experiment(workspace, experiment).submit(script_run)

    def get_run(self, workspace: Any, experiment: str, run_id: str) -> Any:
        return _core().Run(_core().Experiment(workspace, experiment), run_id)

    def wait_for_run(self, run: Any, show_output: bool) -> Any:
        run.wait_for_completion(show_output=show_output)
        return run

    def register_run_model(self, run: Any, name: str, path: str, tags: Mapping[str, str]) -> Any:
        return run.register_model(model_name=name, model_path=path, tags=dict(tags))

    def register_model(self, workspace: Any, path: Path, name: str, tags: Mapping[str, str]) -> Any:
        return _core().Model.register(workspace, model_path=str(path), model_name=name, tags=dict(tags))

    def get_model(self, workspace: Any, name: str, version: str) -> Any:
        return _core().Model(workspace, name=name, version=int(version) if version else None)

    def list_models(self, workspace: Any, name: str | None) -> list[Any]:
        return list(_core().Model.list(workspace, name=name))

    def update_model_tags(self, model: Any, add: Mapping[str, str], remove: list[str]) -> None:
        model.update_tags_properties(add_tags=dict(add) or None, remove_tags=remove or None)

    def download_model(self, model: Any, target: Path) -> Path:
        return Path(model.download(target_dir=str(target), exist_ok=True))

    def deploy(self, workspace: Any, name: str, models: list[Any], inference_config: Any, deployment_config: Any) -> Any:
        service = _core().Model.deploy(workspace, name, models, inference_config, deployment_config, overwrite=True)
        service.wait_for_deployment(show_output=False)
        return service

    def get_service(self, workspace: Any, name: str) -> Any:
        from azureml.core.webservice import Webservice

        return Webservice(workspace, name=name)

    def delete_service(self, service: Any) -> None:
        service.delete()


class V1Backend(AzureMLBackend):
    """:class:`~cellpipe.azure.ml.AzureMLBackend` on ``azureml-core``."""

    sdk = "v1"

    def __init__(self, workspace: WorkspaceRef, control_plane: Any = None) -> None:
        self.workspace_ref = workspace
        self.control = control_plane or V1ControlPlane()
        self._workspace = None

    @property
    def _ws(self) -> Any:
        if self._workspace is None:
            self._workspace = self.control.workspace(self.workspace_ref)
        return self._workspace

    def submit_training(self, job: TrainingJob, *, dry_run: Path | None = None) -> RunRef:
        if dry_run is not None:
            write_training_spec(job, self.workspace_ref, spec.prepare_folder(dry_run))
            return RunRef("", "DryRun", str(dry_run), job.experiment)
        with tempfile.TemporaryDirectory(prefix="cellpipe-azureml-") as staging:
            folder = Path(staging)
            archive = spec.write_project_archive(folder / "package")
            ws = self._ws
            if job.data.account:
                self.control.register_blob_datastore(ws, job.data.datastore, job.data.container, job.data.account)
            package = self.control.upload_package(ws, archive)
            objects = write_training_spec(job, self.workspace_ref, folder / "spec", package=package)
            if self.control.find_compute(ws, job.compute.name) is None:
                self.control.create_compute(ws, job.compute.name, objects["provisioning"])
            run = self.control.submit(ws, job.experiment, objects["script_run"])
        return RunRef(run.id, run.get_status(), run.get_portal_url(), job.experiment)

    def wait(self, run: RunRef, *, show_output: bool = False) -> RunRef:
        handle = self.control.wait_for_run(self.control.get_run(self._ws, run.experiment, run.run_id), show_output)
        status = handle.get_status()
        if status != "Completed":
            raise AzureMLError(f"run {run.run_id} ended {status}: see {run.portal_url or 'the Azure ML studio'}")
        return RunRef(run.run_id, status, run.portal_url, run.experiment)

    def register_model(self, source: RunRef | Path, name: str, *, tags: Mapping[str, str] | None = None) -> ModelRef:
        tags = {"app": "cellpipe", **(tags or {})}
        if isinstance(source, RunRef):
            run = self.control.get_run(self._ws, source.experiment, source.run_id)
            model = self.control.register_run_model(run, name, str(Path(spec.OUTPUT_MODEL).parent), tags)
        else:
            with tempfile.TemporaryDirectory(prefix="cellpipe-model-") as staging:
                folder = Path(staging) / "model"
                folder.mkdir()
                keras_file, card = spec.model_files(source)
                for path, target in ((keras_file, "model.keras"), (card, "model.json")):
                    (folder / target).write_bytes(path.read_bytes())
                model = self.control.register_model(self._ws, folder, name, tags)
        return ModelRef(model.name, str(model.version), dict(model.tags or {}))

    def deploy(self, model: ModelRef | Path, deployment: Deployment, *, dry_run: Path | None = None) -> EndpointStatus:
        if dry_run is not None:
            if not isinstance(model, Path):
                raise spec.SpecError("a dry run packages a local model: pass its path, not NAME:VERSION")
            write_deployment_spec(model, deployment, self.workspace_ref, spec.prepare_folder(dry_run))
            return EndpointStatus(deployment.service_name, "DryRun", details={"folder": str(dry_run)})
        if isinstance(model, Path):
            model = self.register_model(model, "cellpipe-unet")
        ws = self._ws
        registered = self.control.get_model(ws, model.name, model.version)
        with tempfile.TemporaryDirectory(prefix="cellpipe-azureml-") as staging:
            folder = Path(staging)
            package = self.control.upload_package(ws, spec.write_project_archive(folder / "package"))
            entry_script = folder / "code" / "score.py"
            entry_script.parent.mkdir()
            entry_script.write_bytes((Path(spec.__file__).resolve().parents[1] / "score.py").read_bytes())
            env = spec.write_environment(folder / "environment", gpu=False, serve=True)
            objects = build_deployment(deployment, env, entry_script, package)
            service = self.control.deploy(ws, deployment.service_name, [registered],
                                          objects["inference_config"], objects["deployment_config"])
        return _status(service)

    def endpoint_status(self, service_name: str) -> EndpointStatus:
        return _status(self.control.get_service(self._ws, service_name))

    def delete_deployment(self, service_name: str, deployment_name: str | None = None) -> None:
        self.control.delete_service(self.control.get_service(self._ws, service_name))

    def list_models(self, name: str | None = None) -> list[ModelRef]:
        return [ModelRef(m.name, str(m.version), dict(m.tags or {})) for m in self.control.list_models(self._ws, name)]

    def promote_model(self, model: ModelRef) -> ModelRef:
        ws = self._ws
        for other in self.control.list_models(ws, model.name):
            if DEFAULT_TAG in (other.tags or {}) and str(other.version) != model.version:
                self.control.update_model_tags(other, {}, [DEFAULT_TAG])
        chosen = self.control.get_model(ws, model.name, model.version)
        self.control.update_model_tags(chosen, {DEFAULT_TAG: "true"}, [])
        return ModelRef(chosen.name, str(chosen.version), {**(chosen.tags or {}), DEFAULT_TAG: "true"})

    def download_model(self, model: ModelRef, target: Path) -> Path:
        downloaded = self.control.download_model(self.control.get_model(self._ws, model.name, model.version), target)
        return spec.model_files(downloaded)[0]


def _status(service: Any) -> EndpointStatus:
    return EndpointStatus(service.name, str(service.state), service.scoring_uri or "",
                          {"compute_type": getattr(service, "compute_type", "ACI")})
