"""Azure Machine Learning: train the U-Net in the cloud, register it, and serve it.

One small interface, :class:`AzureMLBackend`, with two backends that users can switch
between without touching anything else:

- ``"v1"`` (:mod:`cellpipe.azure.ml.v1`): ``azureml-core``: ScriptRunConfig on an
  AmlCompute cluster, ``run.register_model``, ``Model.deploy`` to Azure Container
  Instances. SDK v1 left Microsoft's support on 2026-06-30 and its ACI deployments are
  deprecated: prefer ``"v2"`` for new work.
- ``"v2"`` (:mod:`cellpipe.azure.ml.v2`): ``azure-ai-ml``: command job, model asset,
  managed online endpoint.

Both build their SDK objects from the same specification folder
(:mod:`cellpipe.azure.ml.spec`): the environment (pinned requirements plus a source
archive of this checkout), the training command ``python -m cellpipe.unet.train DATA
--out ...`` and, for a deployment, the entry script ``score.py`` next to the model
folder exactly as the service sees them. ``dry_run=DIR`` writes that folder, with the
SDK objects serialised, and makes no network call.

The SDKs are optional extras (``cellpipe[azureml-v1]``, ``cellpipe[azureml-v2]``) and
are imported only when a backend is used. Every call to Azure goes through one thin
adapter per backend (``V1ControlPlane``, ``V2ControlPlane``): one method per SDK call.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

#: Backends by name.
SDK_CHOICES = ("v1", "v2")
#: Deployment targets by name: ACI is SDK v1's, managed online endpoints SDK v2's.
TARGET_CHOICES = ("aci", "online-endpoint")
#: Tag that marks the registered model version the nightly batch uses.
DEFAULT_TAG = "cellpipe-default"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_DATASTORE_URI = re.compile(r"^azureml://datastores/(?P<datastore>[A-Za-z0-9_]+)/paths/(?P<path>.*)$")
_BLOB_HTTPS = re.compile(r"^https://(?P<account>[a-z0-9]{3,24})\.blob\.(?P<suffix>[^/]+)/(?P<container>[a-z0-9-]{3,63})/?(?P<path>.*)$")


class AzureMLError(RuntimeError):
    """An Azure ML request failed or cannot be made; the message says what to do."""


class SDKMissingError(AzureMLError, ImportError):
    """The Azure ML SDK of the chosen backend is not installed."""


@dataclass(frozen=True)
class WorkspaceRef:
    """Which Azure ML workspace to use: a ``config.json`` or the three ids.

    Attributes
    ----------
    subscription_id, resource_group, workspace_name : str
        The workspace's ids (Azure portal, workspace overview).
    config_path : Path, optional
        A ``config.json`` downloaded from the portal; used when the ids are empty.
    """

    subscription_id: str = ""
    resource_group: str = ""
    workspace_name: str = ""
    config_path: Path | None = None

    def __post_init__(self) -> None:
        ids = (self.subscription_id, self.resource_group, self.workspace_name)
        if any(ids) and not all(ids):
            raise ValueError("give all of subscription id, resource group and workspace name, or a config.json")

    @property
    def from_config(self) -> bool:
        """Return whether the workspace is named by a ``config.json`` rather than ids."""
        return not self.subscription_id

    def as_dict(self) -> dict[str, str]:
        """Return the workspace reference as JSON-ready strings (no secret in it)."""
        return {
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "workspace_name": self.workspace_name,
            "config_path": str(self.config_path or ""),
        }


@dataclass(frozen=True)
class ComputeTarget:
    """An AmlCompute cluster, created when missing.

    Attributes
    ----------
    name : str
        Cluster name in the workspace.
    vm_size : str
        Azure VM size. The default, ``Standard_NC4as_T4_v3``, has one NVIDIA T4 GPU.
    min_nodes, max_nodes : int
        Scale limits; ``min_nodes=0`` costs nothing while idle.
    idle_seconds : int
        Idle time before the cluster scales down.
    """

    name: str = "cellpipe-gpu"
    vm_size: str = "Standard_NC4as_T4_v3"
    min_nodes: int = 0
    max_nodes: int = 1
    idle_seconds: int = 1800

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z][A-Za-z0-9-]{1,31}$", self.name):
            raise ValueError(f"compute name {self.name!r}: use 2-32 letters, digits and hyphens, starting with a letter")
        if not 0 <= self.min_nodes <= self.max_nodes or self.max_nodes < 1:
            raise ValueError(f"need 0 <= min_nodes <= max_nodes and max_nodes >= 1, got {self.min_nodes}, {self.max_nodes}")

    @property
    def gpu(self) -> bool:
        """Return whether the VM size is an N-series (GPU) size."""
        return self.vm_size.lower().startswith("standard_n")


@dataclass(frozen=True)
class DataLocation:
    """Training data in the cloud: a datastore path or a blob container (and prefix).

    Use :func:`parse_data_location` to make one from a URI.
    """

    datastore: str
    path: str
    account: str = ""
    container: str = ""

    @property
    def uri(self) -> str:
        """Return the location as the user gave it: the ``https://`` or datastore form."""
        if self.account:
            return f"https://{self.account}.blob.core.windows.net/{self.container}/{self.path}"
        return self.datastore_uri

    @property
    def datastore_uri(self) -> str:
        """Return ``azureml://datastores/NAME/paths/PATH``, how jobs of both SDKs mount the data."""
        return f"azureml://datastores/{self.datastore}/paths/{self.path}"


def parse_data_location(uri: str) -> DataLocation:
    """Return the training data location named by ``uri``.

    Parameters
    ----------
    uri : str
        ``azureml://datastores/NAME/paths/PATH`` (a registered datastore) or
        ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`` (a blob container,
        reached with the workspace's identity: it is registered as datastore
        ``ACCOUNT_CONTAINER``, without secrets, before the job is submitted).

    Raises
    ------
    ValueError
        For any other form; the message shows the accepted ones.
    """
    match = _DATASTORE_URI.match(uri)
    if match:
        return DataLocation(match["datastore"], match["path"])
    match = _BLOB_HTTPS.match(uri)
    if match:
        if "?" in uri:
            raise ValueError("do not put a SAS token in the data URL: the workspace's identity reads the container")
        datastore = f"{match['account']}_{match['container']}".replace("-", "_")
        return DataLocation(datastore, match["path"], match["account"], match["container"])
    raise ValueError(
        f"training data {uri!r}: use azureml://datastores/NAME/paths/PATH or "
        "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX"
    )


@dataclass(frozen=True)
class TrainingJob:
    """A cloud training run of ``python -m cellpipe.unet.train``.

    Attributes
    ----------
    data : DataLocation
        Training data in the layout ``cellpipe model train`` reads.
    train_args : tuple of str
        Further options of ``cellpipe model train`` (``--epochs 50``, ``--val-ids 20-24``...).
    compute : ComputeTarget
        Where the job runs.
    experiment : str
        Experiment (v1) / experiment name (v2) the run is filed under.
    """

    data: DataLocation
    train_args: tuple[str, ...] = ()
    compute: ComputeTarget = field(default_factory=ComputeTarget)
    experiment: str = "cellpipe-unet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_args", tuple(str(a) for a in self.train_args))
        if any(a in ("--out", "-o") for a in self.train_args):
            raise ValueError("the cloud job chooses --out itself (its outputs folder); leave it out")


@dataclass(frozen=True)
class ModelRef:
    """A registered model version."""

    name: str
    version: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"model name {self.name!r}: use letters, digits, '-', '_' and '.'")

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


def parse_model_ref(text: str) -> ModelRef:
    """Return the :class:`ModelRef` of ``NAME:VERSION`` (or ``NAME`` for the latest)."""
    name, _, version = text.partition(":")
    if version and not version.isdigit():
        raise ValueError(f"model {text!r}: the version after ':' must be a number")
    return ModelRef(name, version)


@dataclass(frozen=True)
class Deployment:
    """A scoring service for one model.

    Attributes
    ----------
    service_name : str
        ACI web service name (v1) or online endpoint name (v2): 3-32 lowercase letters,
        digits and hyphens.
    target : {"aci", "online-endpoint"}
    deployment_name : str
        Deployment under the endpoint (v2 only), e.g. ``blue``.
    cpu_cores, memory_gb : float
        Container size on ACI.
    instance_type, instance_count :
        VM size and count of a managed online deployment.
    environment_variables : dict
        Passed to the service (e.g. the limits of :mod:`cellpipe.azure.score`).
    """

    service_name: str
    target: str = "aci"
    deployment_name: str = "blue"
    cpu_cores: float = 1.0
    memory_gb: float = 4.0
    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1
    environment_variables: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$", self.service_name):
            raise ValueError(f"service name {self.service_name!r}: use 3-32 lowercase letters, digits and hyphens")
        if self.target not in TARGET_CHOICES:
            raise ValueError(f"target must be one of {TARGET_CHOICES}, got {self.target!r}")
        if self.cpu_cores <= 0 or self.memory_gb <= 0 or self.instance_count < 1:
            raise ValueError("cpu_cores and memory_gb must be > 0 and instance_count >= 1")


@dataclass(frozen=True)
class RunRef:
    """A submitted training run: its id, status and where to see it."""

    run_id: str
    status: str = ""
    portal_url: str = ""
    experiment: str = ""


@dataclass(frozen=True)
class EndpointStatus:
    """State of a scoring service: ``Healthy``, ``Transitioning``, ``Failed``, ``Unhealthy`` ..."""

    name: str
    state: str
    scoring_uri: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


class AzureMLBackend(abc.ABC):
    """What cellpipe asks of Azure ML; one implementation per SDK.

    Every method that takes ``dry_run`` writes the specification it would send into that
    folder and returns without any network call.
    """

    sdk: str = ""

    @abc.abstractmethod
    def submit_training(self, job: TrainingJob, *, dry_run: Path | None = None) -> RunRef:
        """Start ``python -m cellpipe.unet.train`` on the job's compute; return the run."""

    @abc.abstractmethod
    def wait(self, run: RunRef, *, show_output: bool = False) -> RunRef:
        """Block until the run ends; return it with its final status."""

    @abc.abstractmethod
    def register_model(self, source: RunRef | Path, name: str, *, tags: Mapping[str, str] | None = None) -> ModelRef:
        """Register a run's trained model (or a local model folder); return the new version."""

    @abc.abstractmethod
    def deploy(self, model: ModelRef | Path, deployment: Deployment, *, dry_run: Path | None = None) -> EndpointStatus:
        """Serve a registered model (or a local one, registered first) with ``score.py``."""

    @abc.abstractmethod
    def endpoint_status(self, service_name: str) -> EndpointStatus:
        """Return the state and scoring URI of a service."""

    @abc.abstractmethod
    def delete_deployment(self, service_name: str, deployment_name: str | None = None) -> None:
        """Delete a service (v1) or one deployment of an endpoint, or the endpoint (v2)."""

    @abc.abstractmethod
    def list_models(self, name: str | None = None) -> list[ModelRef]:
        """Return the registered models (all versions of ``name``, or everything)."""

    @abc.abstractmethod
    def promote_model(self, model: ModelRef) -> ModelRef:
        """Tag ``model`` as the nightly batch's default, untagging the other versions."""

    @abc.abstractmethod
    def download_model(self, model: ModelRef, target: Path) -> Path:
        """Download a registered model into ``target``; return the ``.keras`` file."""


def open_backend(sdk: str, workspace: WorkspaceRef, *, control_plane: Any = None) -> AzureMLBackend:
    """Return the backend for ``sdk`` (``"v1"`` or ``"v2"``) on ``workspace``.

    Parameters
    ----------
    control_plane : optional
        The adapter that makes the SDK calls; default the real one of that SDK. Tests
        pass a double here.
    """
    if sdk == "v1":
        from cellpipe.azure.ml.v1 import V1Backend

        return V1Backend(workspace, control_plane)
    if sdk == "v2":
        from cellpipe.azure.ml.v2 import V2Backend

        return V2Backend(workspace, control_plane)
    raise ValueError(f"sdk must be one of {SDK_CHOICES}, got {sdk!r}")


def require_sdk(module: str, extra: str) -> Any:
    """Import and return ``module``, or raise :class:`SDKMissingError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise SDKMissingError(f"{module} is not installed: pip install 'cellpipe[{extra}]'") from error


__all__ = [
    "DEFAULT_TAG",
    "SDK_CHOICES",
    "TARGET_CHOICES",
    "AzureMLBackend",
    "AzureMLError",
    "ComputeTarget",
    "DataLocation",
    "Deployment",
    "EndpointStatus",
    "ModelRef",
    "RunRef",
    "SDKMissingError",
    "TrainingJob",
    "WorkspaceRef",
    "open_backend",
    "parse_data_location",
    "parse_model_ref",
]
