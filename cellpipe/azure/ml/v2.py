"""SDK v2 backend (``azure-ai-ml``): command job, model asset, managed online endpoint.

The SDK entities are built by :func:`write_training_spec` / :func:`write_deployment_spec`
and written as the YAML files ``az ml`` reads (paths relative to the YAML file). A real
submission loads those files back with ``load_job`` / ``load_online_deployment`` and
sends what was loaded, so a dry run shows exactly what would be sent. Every call to Azure
goes through :class:`V2ControlPlane`.
"""

from __future__ import annotations

import os
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

EXTRA = "azureml-v2"


def _ml():
    return require_sdk("azure.ai.ml", EXTRA)


def build_environment(folder: Path) -> Any:
    """Return the v2 ``Environment`` built from the Docker build context ``folder``.

    It is anonymous (the SDK ignores the name of an inline environment): Azure ML names
    it by the hash of the build context and reuses the image while that is unchanged.
    """
    _ml()
    from azure.ai.ml.entities import BuildContext, Environment

    return Environment(build=BuildContext(path=str(folder), dockerfile_path="Dockerfile"),
                       description="cellpipe: pinned requirements and the project itself")


def write_training_spec(job: TrainingJob, workspace: WorkspaceRef, folder: Path) -> dict[str, Path]:
    """Write the training specification into ``folder``; return the paths of its YAML files."""
    ml = _ml()
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import AmlCompute

    env = spec.write_environment(folder / "environment", gpu=job.compute.gpu, serve=False)
    command = spec.training_command("${{inputs.data}}", job.train_args, "${{outputs.model}}/model.keras")
    command_job = ml.command(
        command=" ".join(command),
        inputs={"data": ml.Input(type=AssetTypes.URI_FOLDER, path=job.data.datastore_uri)},
        outputs={"model": ml.Output(type=AssetTypes.URI_FOLDER)},
        environment=build_environment(env.path),
        compute=job.compute.name,
        experiment_name=job.experiment,
        display_name="cellpipe U-Net training",
        environment_variables={"TF_CPP_MIN_LOG_LEVEL": "1"},
    )
    compute = AmlCompute(name=job.compute.name, size=job.compute.vm_size, min_instances=job.compute.min_nodes,
                         max_instances=job.compute.max_nodes, idle_time_before_scale_down=job.compute.idle_seconds)
    paths = {"job": dump(command_job._to_job(), folder / "v2" / "job.yml"), "compute": dump(compute, folder / "v2" / "compute.yml")}
    spec.write_json(folder / "job.json", {
        "sdk": "v2", "workspace": workspace.as_dict(), "experiment": job.experiment, "command": command,
        "data": {"uri": job.data.uri, "datastore": job.data.datastore, "path": job.data.path,
                 "register_container": bool(job.data.account)},
        "output_model": "outputs.model/model.keras",
        "compute": {"name": job.compute.name, "vm_size": job.compute.vm_size, "gpu": job.compute.gpu,
                    "min_nodes": job.compute.min_nodes, "max_nodes": job.compute.max_nodes},
        "environment": {"base_image": env.base_image, "requirements": list(env.requirements),
                        "project_archive": f"environment/{env.archive.name}"},
    })
    return paths


def write_deployment_spec(model: Path | ModelRef, deployment: Deployment, workspace: WorkspaceRef,
                          folder: Path) -> dict[str, Path]:
    """Write the deployment specification into ``folder``; return the paths of its YAML files.

    A local ``model`` is copied to ``folder/model`` (and registered with the deployment);
    a :class:`ModelRef` names a registered version.
    """
    _ml()
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model

    if deployment.target != "online-endpoint":
        raise AzureMLError("SDK v2 deploys to managed online endpoints: use --target online-endpoint (or --sdk v1 for ACI)")
    if isinstance(model, ModelRef):
        if not model.version:
            raise AzureMLError(f"give the version of model {model.name} to deploy (NAME:VERSION)")
        entry_script = folder / "score.py"
        entry_script.write_bytes((Path(spec.__file__).resolve().parents[1] / "score.py").read_bytes())
        model_asset: Any = f"azureml:{model.name}:{model.version}"
    else:
        entry_script, model_dir = spec.write_service_files(folder, model)
        model_asset = Model(path=str(model_dir), name="cellpipe-unet", type=AssetTypes.CUSTOM_MODEL,
                            description="cellpipe U-Net edge model (model.keras + model.json card)")
    code = folder / "code"  # the code configuration uploads this folder: score.py alone
    code.mkdir(exist_ok=True)
    (code / "score.py").write_bytes(entry_script.read_bytes())
    env = spec.write_environment(folder / "environment", gpu=False, serve=True)
    endpoint = ManagedOnlineEndpoint(name=deployment.service_name, auth_mode="key",
                                     description="cellpipe: cells in microscope images", tags={"app": "cellpipe"})
    online = ManagedOnlineDeployment(
        name=deployment.deployment_name, endpoint_name=deployment.service_name, model=model_asset,
        environment=build_environment(env.path),
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
        instance_type=deployment.instance_type, instance_count=deployment.instance_count,
        environment_variables=dict(deployment.environment_variables) or None,
    )
    v2 = folder / "v2"
    paths = {"endpoint": dump(endpoint, v2 / "endpoint.yml"), "deployment": dump(online, v2 / "deployment.yml")}
    spec.write_json(folder / "deployment.json", {
        "sdk": "v2", "target": "online-endpoint", "workspace": workspace.as_dict(),
        "service_name": deployment.service_name, "deployment_name": deployment.deployment_name,
        "entry_script": "score.py", "model_dir": "model" if isinstance(model, Path) else str(model),
        "instance_type": deployment.instance_type, "instance_count": deployment.instance_count,
        "auth_mode": "key", "environment_variables": dict(deployment.environment_variables),
        "environment": {"base_image": env.base_image, "requirements": list(env.requirements),
                        "project_archive": f"environment/{env.archive.name}"},
    })
    return paths


def dump(entity: Any, path: Path) -> Path:
    """Write an SDK entity as ``az ml`` YAML, its local paths relative to the YAML file."""
    import yaml

    content = entity._to_dict()  # ManagedOnlineEndpoint.dump() ignores its destination
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_relative_paths(content, path.parent), sort_keys=False))
    return path


def _relative_paths(value: Any, base: Path) -> Any:
    if isinstance(value, Mapping):
        return {key: _relative_paths(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [_relative_paths(item, base) for item in value]
    if isinstance(value, str) and os.path.isabs(value) and Path(value).exists():
        return os.path.relpath(value, base)
    return value


def load_entities(paths: Mapping[str, Path]) -> dict[str, Any]:
    """Return the SDK entities of the YAML files written by the ``write_*_spec`` functions."""
    ml = _ml()
    loaders = {"job": ml.load_job, "compute": ml.load_compute, "endpoint": ml.load_online_endpoint,
               "deployment": ml.load_online_deployment}
    return {kind: loaders[kind](source=str(path)) for kind, path in paths.items()}


class V2ControlPlane:
    """The only code that talks to Azure ML through SDK v2: one method per SDK call."""

    def client(self, ref: WorkspaceRef) -> Any:
        ml = _ml()
        from azure.identity import DefaultAzureCredential

        if ref.from_config:
            return ml.MLClient.from_config(credential=DefaultAzureCredential(), path=ref.config_path)
        return ml.MLClient(DefaultAzureCredential(), ref.subscription_id, ref.resource_group, ref.workspace_name)

    def find_compute(self, client: Any, name: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return client.compute.get(name)
        except ResourceNotFoundError:
            return None

    def register_blob_datastore(self, client: Any, name: str, container: str, account: str) -> Any:
        from azure.ai.ml.entities import AzureBlobDatastore

        # No key or SAS: identity-based access with the workspace's / user's identity.
        return client.datastores.create_or_update(
            AzureBlobDatastore(name=name, account_name=account, container_name=container))

    def create_compute(self, client: Any, compute: Any) -> Any:
        return client.compute.begin_create_or_update(compute).result()

    def create_job(self, client: Any, job: Any) -> Any:
        return client.jobs.create_or_update(job)

    def stream_job(self, client: Any, name: str) -> Any:
        client.jobs.stream(name)
        return client.jobs.get(name)

    def get_job(self, client: Any, name: str) -> Any:
        return client.jobs.get(name)

    def create_model(self, client: Any, model: Any) -> Any:
        return client.models.create_or_update(model)

    def get_model(self, client: Any, name: str, version: str) -> Any:
        return client.models.get(name, version=version) if version else client.models.get(name, label="latest")

    def list_models(self, client: Any, name: str | None) -> list[Any]:
        return list(client.models.list(name=name) if name else client.models.list())

    def download_model(self, client: Any, name: str, version: str, target: Path) -> Path:
        client.models.download(name=name, version=version, download_path=str(target))
        return target / name

    def create_endpoint(self, client: Any, endpoint: Any) -> Any:
        return client.online_endpoints.begin_create_or_update(endpoint).result()

    def create_deployment(self, client: Any, deployment: Any) -> Any:
        return client.online_deployments.begin_create_or_update(deployment).result()

    def get_endpoint(self, client: Any, name: str) -> Any:
        return client.online_endpoints.get(name)

    def delete_deployment(self, client: Any, endpoint: str, name: str) -> None:
        client.online_deployments.begin_delete(name=name, endpoint_name=endpoint).result()

    def delete_endpoint(self, client: Any, name: str) -> None:
        client.online_endpoints.begin_delete(name=name).result()


class V2Backend(AzureMLBackend):
    """:class:`~cellpipe.azure.ml.AzureMLBackend` on ``azure-ai-ml``."""

    sdk = "v2"

    def __init__(self, workspace: WorkspaceRef, control_plane: Any = None) -> None:
        self.workspace_ref = workspace
        self.control = control_plane or V2ControlPlane()
        self._client = None

    @property
    def _ml_client(self) -> Any:
        if self._client is None:
            self._client = self.control.client(self.workspace_ref)
        return self._client

    def submit_training(self, job: TrainingJob, *, dry_run: Path | None = None) -> RunRef:
        if dry_run is not None:
            load_entities(write_training_spec(job, self.workspace_ref, spec.prepare_folder(dry_run)))
            return RunRef("", "DryRun", str(dry_run), job.experiment)
        with tempfile.TemporaryDirectory(prefix="cellpipe-azureml-") as staging:
            entities = load_entities(write_training_spec(job, self.workspace_ref, Path(staging)))
            client = self._ml_client
            if job.data.account:
                self.control.register_blob_datastore(client, job.data.datastore, job.data.container, job.data.account)
            if self.control.find_compute(client, job.compute.name) is None:
                self.control.create_compute(client, entities["compute"])
            created = self.control.create_job(client, entities["job"])
        return RunRef(created.name, str(created.status), created.studio_url or "", job.experiment)

    def wait(self, run: RunRef, *, show_output: bool = False) -> RunRef:
        finished = self.control.stream_job(self._ml_client, run.run_id)
        if finished.status != "Completed":
            raise AzureMLError(f"job {run.run_id} ended {finished.status}: see {run.portal_url or 'the Azure ML studio'}")
        return RunRef(run.run_id, finished.status, run.portal_url, run.experiment)

    def register_model(self, source: RunRef | Path, name: str, *, tags: Mapping[str, str] | None = None) -> ModelRef:
        _ml()
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        tags = {"app": "cellpipe", **(tags or {})}
        if isinstance(source, RunRef):
            path = f"azureml://jobs/{source.run_id}/outputs/model"
            model = self.control.create_model(self._ml_client, Model(path=path, name=name, type=AssetTypes.CUSTOM_MODEL, tags=tags))
        else:
            with tempfile.TemporaryDirectory(prefix="cellpipe-model-") as staging:
                folder = Path(staging) / "model"
                folder.mkdir()
                keras_file, card = spec.model_files(source)
                for file, target in ((keras_file, "model.keras"), (card, "model.json")):
                    (folder / target).write_bytes(file.read_bytes())
                asset = Model(path=str(folder), name=name, type=AssetTypes.CUSTOM_MODEL, tags=tags)
                model = self.control.create_model(self._ml_client, asset)
        return ModelRef(model.name, str(model.version), dict(model.tags or {}))

    def deploy(self, model: ModelRef | Path, deployment: Deployment, *, dry_run: Path | None = None) -> EndpointStatus:
        if dry_run is not None:
            load_entities(write_deployment_spec(model, deployment, self.workspace_ref, spec.prepare_folder(dry_run)))
            return EndpointStatus(deployment.service_name, "DryRun", details={"folder": str(dry_run)})
        if isinstance(model, Path):
            model = self.register_model(model, "cellpipe-unet")
        with tempfile.TemporaryDirectory(prefix="cellpipe-azureml-") as staging:
            entities = load_entities(write_deployment_spec(model, deployment, self.workspace_ref, Path(staging)))
            client = self._ml_client
            self.control.create_endpoint(client, entities["endpoint"])
            self.control.create_deployment(client, entities["deployment"])
        endpoint = self.control.get_endpoint(client, deployment.service_name)
        endpoint.traffic = {deployment.deployment_name: 100}
        return _status(self.control.create_endpoint(client, endpoint))

    def endpoint_status(self, service_name: str) -> EndpointStatus:
        return _status(self.control.get_endpoint(self._ml_client, service_name))

    def delete_deployment(self, service_name: str, deployment_name: str | None = None) -> None:
        if deployment_name:
            self.control.delete_deployment(self._ml_client, service_name, deployment_name)
        else:
            self.control.delete_endpoint(self._ml_client, service_name)

    def list_models(self, name: str | None = None) -> list[ModelRef]:
        return [ModelRef(m.name, str(m.version), dict(m.tags or {})) for m in self.control.list_models(self._ml_client, name)]

    def promote_model(self, model: ModelRef) -> ModelRef:
        client = self._ml_client
        for other in self.control.list_models(client, model.name):
            if DEFAULT_TAG in (other.tags or {}) and str(other.version) != model.version:
                other.tags = {k: v for k, v in other.tags.items() if k != DEFAULT_TAG}
                self.control.create_model(client, other)
        chosen = self.control.get_model(client, model.name, model.version)
        chosen.tags = {**(chosen.tags or {}), DEFAULT_TAG: "true"}
        updated = self.control.create_model(client, chosen)
        return ModelRef(updated.name, str(updated.version), dict(updated.tags or {}))

    def download_model(self, model: ModelRef, target: Path) -> Path:
        chosen = self.control.get_model(self._ml_client, model.name, model.version)
        folder = self.control.download_model(self._ml_client, chosen.name, str(chosen.version), target)
        found = sorted(Path(folder).rglob("model.keras"))
        if not found:
            raise AzureMLError(f"model {chosen.name}:{chosen.version} holds no model.keras")
        return found[0]


def _status(endpoint: Any) -> EndpointStatus:
    return EndpointStatus(endpoint.name, str(endpoint.provisioning_state), endpoint.scoring_uri or "",
                          {"traffic": dict(endpoint.traffic or {})})
