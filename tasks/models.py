"""Luigi tasks that retrain the U-Net and deploy it, so that retraining is scheduled like the batch.

``RetrainModel(name, version, data, backend)`` trains a model locally (in this process,
:func:`cellpipe.unet.train.train`) or as an Azure ML job and registers it in the
``models`` table; ``DeployModel(name, version, target, service)`` serves it from ACI
(SDK v1) or a managed online endpoint (SDK v2), after its ``RetrainModel`` when
``retrain`` holds that task's parameters. :func:`run_model_tasks` runs them (``cellpipe
model retrain``), as does ``luigi --module cellpipe.tasks.models RetrainModel ...``.

Completeness is in the database, as for the batch:
    ``RetrainModel`` is complete when (name, version) is in the ``models`` table,
    ``DeployModel`` when that row's ``cloud_ids["deployments"]`` holds
    ``"TARGET/SERVICE"`` (deploying another model to the service moves the entry to
    that model's row). With ``dry_run=DIR`` a task writes the specification into DIR,
    calls nothing in Azure, touches no table, and is complete once DIR holds
    ``job.json`` / ``deployment.json``.
Files:
    ``MODELS_DIR/NAME/VERSION/model.keras`` and its card ``model.json``, trained (or
    downloaded) into a hidden folder and renamed into place complete; a folder left by
    a run that died before the database write is registered without training again.
    ``models_dir`` defaults to ``models/`` next to a SQLite database, else in the
    user's data folder.
Cloud ids (``models.cloud_ids``):
    ``{"azureml": {"model": "NAME:N", "sdk", "workspace", "run_id", "portal_url"},
    "deployments": {"aci/SERVICE": {"sdk", "service", "deployment", "state",
    "scoring_uri", "deployed_at"}}}``. Azure models carry the tag
    ``cellpipe-version=VERSION``: a retraining whose model is already registered under
    it (the worker died after registering) is downloaded, not trained again.
Settings:
    the database is the worker's (:mod:`cellpipe.settings`), never a parameter. The
    workspace and compute may be set in ``luigi.cfg`` ``[azureml]``
    (``subscription_id``, ``resource_group``, ``workspace_name``, ``workspace_config``,
    ``compute``, ``vm_size``, ``experiment``), the models folder as ``[cellpipe]``
    ``models_dir``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import luigi

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
from cellpipe.settings import Settings, default_data_dir
from cellpipe.tasks.context import BatchContext, activated, current, database_identity
from cellpipe.tasks.retry import retrying

#: Values of ``RetrainModel.backend``.
BACKENDS = ("local", "azure-v1", "azure-v2")
#: Tag of an Azure ML model version that names its version in the ``models`` table.
VERSION_TAG = "cellpipe-version"
#: The program whose options ``train_args`` are.
TRAIN_PROGRAM = "cellpipe model train"

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _azureml(name: str, default: str = "", **kwargs: Any) -> luigi.Parameter:
    # Where the model goes or which workspace serves it: not what the task computes.
    return luigi.Parameter(default=default, significant=False, config_path={"section": "azureml", "name": name},
                           **kwargs)


class _ModelTask:
    """Parameters of both tasks: the model, the workspace and a dry-run folder."""

    #: A failure is not transient (bad data, a failed cloud run; the database is retried
    #: inside): the scheduler gives up at once rather than start an hour of training again.
    retry_count = 1

    name = luigi.Parameter(default="cellpipe-unet", description="model name (models table and Azure ML)")
    version = luigi.Parameter(description="model version, e.g. the date: 2026-07-01")
    subscription_id = _azureml("subscription_id", description="workspace subscription id")
    resource_group = _azureml("resource_group", description="workspace resource group")
    workspace_name = _azureml("workspace_name", description="workspace name")
    workspace_config = _azureml("workspace_config", description="config.json of the workspace (instead of the ids)")
    dry_run = luigi.Parameter(default="", description="write the specification into this folder; no Azure call")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ModelRef(self.name)  # raises ValueError for a name Azure ML would refuse
        if not _VERSION.match(self.version):
            raise ValueError(f"model version {self.version!r}: use up to 64 letters, digits, '-', '_' and '.'")

    def workspace(self) -> WorkspaceRef:
        """Return the Azure ML workspace of the parameters."""
        config = Path(self.workspace_config).expanduser() if self.workspace_config else None
        return WorkspaceRef(self.subscription_id, self.resource_group, self.workspace_name, config)


class RetrainModel(_ModelTask, luigi.Task):
    """Model ``name`` ``version`` trained on ``data`` and registered in the ``models`` table."""

    data = luigi.Parameter(description="training data: a local folder (backend local), or "
                                       "azureml://datastores/NAME/paths/PATH or https://ACCOUNT.blob...")
    backend = luigi.ChoiceParameter(choices=BACKENDS, var_type=str, default="local",
                                    description="local (in this process), azure-v1 or azure-v2")
    train_args = luigi.ListParameter(default=(), description=f"options of `{TRAIN_PROGRAM}`, e.g. [--epochs, 20]")
    make_default = luigi.BoolParameter(default=False, description="also mark it as the models table's default")
    models_dir = luigi.Parameter(default="", significant=False,
                                 config_path={"section": "cellpipe", "name": "models_dir"},
                                 description="where model files go (default: models/ next to a SQLite database)")
    compute = _azureml("compute", ComputeTarget.name, description="AmlCompute cluster (created when missing)")
    vm_size = _azureml("vm_size", ComputeTarget.vm_size, description="VM size of a new cluster")
    experiment = _azureml("experiment", "cellpipe-unet", description="experiment the run is filed under")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.backend == "local" and self.dry_run:
            raise ValueError("a dry run writes an Azure ML job specification: use backend azure-v1 or azure-v2")
        if self.backend != "local":
            parse_data_location(self.data)  # raises ValueError naming the accepted forms
        if any(arg in ("--out", "-o") or str(arg).startswith("--out=") for arg in self.train_args):
            raise ValueError("leave --out out of the training options: the model goes to MODELS_DIR/NAME/VERSION/")

    def complete(self) -> bool:
        if self.dry_run:
            return (Path(self.dry_run) / "job.json").is_file()
        return registered_model(self.name, self.version) is not None

    def run(self) -> None:
        folder = model_folder(self.models_dir, self.name, self.version)
        if self.backend == "local":
            if not _holds_model(folder):
                from cellpipe.unet.train import train

                with _staged_into(folder) as staging:
                    train(training_config(Path(self.data), staging / "model.keras", self.train_args))
            register_file(folder / "model.keras", self.name, self.version, make_default=self.make_default)
            return
        backend = open_backend(self.backend.removeprefix("azure-"), self.workspace())
        job = TrainingJob(parse_data_location(self.data), tuple(self.train_args),
                          ComputeTarget(self.compute, self.vm_size), self.experiment)
        if self.dry_run:
            backend.submit_training(job, dry_run=Path(self.dry_run))
            return
        cloud = _tagged(backend.list_models(self.name), self.version)
        cloud_ids: dict[str, Any] = {}
        if cloud is None:
            run = backend.wait(backend.submit_training(job))
            cloud = backend.register_model(run, self.name, tags={VERSION_TAG: self.version})
            cloud_ids = {"run_id": run.run_id, "portal_url": run.portal_url}
        if not _holds_model(folder):
            with _staged_into(folder) as staging:
                _copy_model(backend.download_model(cloud, staging / "download"), staging)
        register_file(folder / "model.keras", self.name, self.version, make_default=self.make_default,
                      cloud_ids={"azureml": {"model": str(cloud), "sdk": backend.sdk,
                                             "workspace": self.workspace().as_dict(), **cloud_ids}})


class DeployModel(_ModelTask, luigi.Task):
    """Model ``name`` ``version`` served by ``service``, recorded in its ``models`` row."""

    target = luigi.ChoiceParameter(choices=("aci", "online-endpoint"), var_type=str, default="online-endpoint",
                                   description="aci (SDK v1) or online-endpoint (SDK v2)")
    service = luigi.Parameter(default="cellpipe", description="ACI web service or online endpoint name")
    deployment_name = luigi.Parameter(default="blue", description="deployment under the endpoint (v2)")
    cpu_cores = luigi.FloatParameter(default=1.0, significant=False, description="ACI CPU cores")
    memory_gb = luigi.FloatParameter(default=4.0, significant=False, description="ACI memory in GB")
    instance_type = luigi.Parameter(default="Standard_DS3_v2", significant=False, description="endpoint VM size")
    instance_count = luigi.IntParameter(default=1, significant=False, description="endpoint instances")
    retrain = luigi.DictParameter(default={}, description="parameters of the RetrainModel that makes the model "
                                  "(its name and version are this task's); empty: the model is in the table")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.dry_run and self.retrain:
            raise ValueError("a dry run packages a model that is in the models table; a dry-run retraining trains "
                             "none: deploy a registered NAME:VERSION, or leave the dry run out")

    @property
    def sdk(self) -> str:
        """Return the SDK that serves the target: v1 for ACI, v2 for managed online endpoints."""
        return "v1" if self.target == "aci" else "v2"

    @property
    def key(self) -> str:
        """Return the key of this deployment in ``cloud_ids["deployments"]``."""
        return f"{self.target}/{self.service}"

    def requires(self) -> list[RetrainModel]:
        if not self.retrain:
            return []
        return [RetrainModel(**{**dict(self.retrain), "name": self.name, "version": self.version})]

    def complete(self) -> bool:
        if self.dry_run:
            return (Path(self.dry_run) / "deployment.json").is_file()
        model = registered_model(self.name, self.version)
        return model is not None and self.key in (model.cloud_ids or {}).get("deployments", {})

    def run(self) -> None:
        model = registered_model(self.name, self.version)
        if model is None:
            raise LookupError(f"model {self.name} {self.version} is not in the models table of "
                              f"{database_identity(current().settings.db_url)}: retrain it first (or give retrain=...)")
        backend = open_backend(self.sdk, self.workspace())
        deployment = Deployment(self.service, self.target, self.deployment_name, self.cpu_cores, self.memory_gb,
                                self.instance_type, self.instance_count)
        if self.dry_run:
            backend.deploy(Path(model.location), deployment, dry_run=Path(self.dry_run))
            return
        cloud = (model.cloud_ids or {}).get("azureml", {})
        if cloud.get("workspace") == self.workspace().as_dict():
            cloud_model = parse_model_ref(cloud["model"])
        else:  # trained here, or in another workspace: register the file first
            cloud_model = backend.register_model(Path(model.location), self.name, tags={VERSION_TAG: self.version})
            register_file(Path(model.location), self.name, self.version, cloud_ids={
                **(model.cloud_ids or {}),
                "azureml": {"model": str(cloud_model), "sdk": self.sdk, "workspace": self.workspace().as_dict()}})
        status = backend.deploy(cloud_model, deployment)
        record_deployment(self.name, self.version, self.key, {
            "sdk": self.sdk, "service": status.name, "deployment": self.deployment_name if self.sdk == "v2" else None,
            "state": status.state, "scoring_uri": status.scoring_uri,
            "deployed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})


# --- what the tasks call ---------------------------------------------------------------


def model_folder(models_dir: str, name: str, version: str) -> Path:
    """Return ``MODELS_DIR/NAME/VERSION``; an empty ``models_dir`` means the default (see module docs)."""
    if models_dir:
        return Path(models_dir).expanduser() / name / version
    from cellpipe.db.engine import is_sqlite, sqlite_path

    db_url = current().settings.db_url
    base = sqlite_path(db_url).parent if is_sqlite(db_url) else default_data_dir()
    return base / "models" / name / version


def training_config(data_dir: Path, out: Path, train_args: Sequence[str]):
    """Return the :class:`~cellpipe.unet.train.TrainConfig` that ``cellpipe model train`` makes of these options.

    The options are parsed by that command's own parser (same names, types and
    defaults), so a schedule can move between the local and the Azure backends, whose
    job runs the same command.

    Raises
    ------
    ValueError
        For an option ``cellpipe model train`` does not accept; the message names it.
    """
    import typer

    from cellpipe.cli.commands_model import train_command, train_config

    args = [str(data_dir), "--out", str(out), *map(str, train_args)]
    parser = typer.Typer()
    parser.command()(train_command)
    try:
        with typer.main.get_command(parser).make_context(TRAIN_PROGRAM, list(args)) as context:
            options = dict(context.params)
    except (typer.TyperException, typer.Exit) as error:  # a usage error, or --help
        message = error.format_message() if hasattr(error, "format_message") else "not an option to schedule"
        raise ValueError(f"training options {shlex.join(map(str, train_args))}: {message}") from error
    return train_config(options, f"{TRAIN_PROGRAM} {shlex.join(args)}")


def registered_model(name: str, version: str):
    """Return the ``models`` row of ``name`` ``version`` in the settings' database, or None."""
    from cellpipe.db import get_model

    return retrying(get_model)(current().engine, name, version)


def register_file(path: Path, name: str, version: str, *, make_default: bool = False,
                  cloud_ids: dict[str, Any] | None = None) -> int:
    """Register the model file ``path`` (card next to it) as ``name`` ``version``; return its id."""
    from cellpipe.db import register_model
    from cellpipe.pipeline import file_sha256

    card = json.loads(path.with_suffix(".json").read_text())
    return retrying(register_model)(current().engine, name, version, file_hash=file_sha256(path),
                                    location=str(path.resolve()), card=card, metrics=card.get("metrics") or {},
                                    cloud_ids=cloud_ids, make_default=make_default)


def record_deployment(name: str, version: str, key: str, entry: dict[str, Any]) -> None:
    """Record ``entry`` under ``cloud_ids["deployments"][key]`` of ``name`` ``version``, and of it only."""
    from cellpipe.db import list_models, register_model

    engine = current().engine
    models = sorted(retrying(list_models)(engine), key=lambda m: (m.name, m.version) != (name, version))
    for model in models:  # this model first: a crash in between leaves the new service recorded
        deployments = dict((model.cloud_ids or {}).get("deployments", {}))
        if (model.name, model.version) == (name, version):
            deployments[key] = entry
        elif deployments.pop(key, None) is None:
            continue
        retrying(register_model)(engine, model.name, model.version, file_hash=model.file_hash,
                                 location=model.location,
                                 cloud_ids={**(model.cloud_ids or {}), "deployments": deployments})


def _holds_model(folder: Path) -> bool:
    return (folder / "model.keras").is_file() and (folder / "model.json").is_file()


@contextlib.contextmanager
def _staged_into(folder: Path) -> Iterator[Path]:
    # A hidden folder next to `folder` that becomes `folder`, by one rename, when the block succeeds.
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} holds files but no model.keras with its model.json: "
                              "move it away and run again")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        yield staging
        for leftover in [path for path in staging.iterdir() if path.name not in ("model.keras", "model.json")]:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        os.replace(staging, folder)  # replaces an empty folder too
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_model(keras_file: Path, folder: Path) -> None:
    from cellpipe.azure.ml.spec import model_files

    keras_file, card = model_files(keras_file)
    shutil.copyfile(keras_file, folder / "model.keras")
    shutil.copyfile(card, folder / "model.json")


def _tagged(models: Iterable[ModelRef], version: str) -> ModelRef | None:
    return next((model for model in models if model.tags.get(VERSION_TAG) == version), None)


# --- running them ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRun:
    """How :func:`run_model_tasks` went.

    Attributes
    ----------
    succeeded : bool
        Every task is complete.
    summary : str
        Luigi's summary of the run.
    ran : list of str
        The tasks that ran (none when everything was complete already).
    failures : list of str
        Why each failed task failed.
    models : dict
        ``(name, version)`` of every task: its ``models`` row after the run, or None.
    """

    succeeded: bool
    summary: str
    ran: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    models: dict[tuple[str, str], Any] = field(default_factory=dict)


_RAN: list[str] = []
_FAILURES: list[str] = []


@RetrainModel.event_handler(luigi.Event.SUCCESS)
@DeployModel.event_handler(luigi.Event.SUCCESS)
def _remember_success(task: luigi.Task) -> None:
    _RAN.append(str(task))


@RetrainModel.event_handler(luigi.Event.FAILURE)
@DeployModel.event_handler(luigi.Event.FAILURE)
def _remember_failure(task: luigi.Task, error: BaseException) -> None:
    _FAILURES.append(f"{task.task_family} {task.name} {task.version}: {type(error).__name__}: {error}")


def run_model_tasks(tasks: Sequence[luigi.Task], settings: Settings, *, scheduler_url: str | None = None) -> ModelRun:
    """Run ``tasks`` with Luigi in this process (one worker; TensorFlow is not fork-safe); return how it went.

    Parameters
    ----------
    settings : Settings
        Where the ``models`` table is (``db_url``).
    scheduler_url : str, optional
        A shared ``luigid``, e.g. ``http://scheduler-host:8082``; default the local scheduler.
    """
    import luigi.configuration
    from luigi.execution_summary import LuigiStatusCode

    scheduler = {"scheduler_url": scheduler_url} if scheduler_url else {"local_scheduler": True}
    log_level = luigi.configuration.get_config().get("core", "log_level", "WARNING")
    del _RAN[:], _FAILURES[:]
    with activated(BatchContext(settings)):
        result = luigi.build(list(tasks), workers=1, detailed_summary=True, log_level=log_level, **scheduler)
        models = {(task.name, task.version): None if task.dry_run else registered_model(task.name, task.version)
                  for task in tasks}
    succeeded = result.status in (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY)
    return ModelRun(succeeded, result.summary_text, list(_RAN), list(_FAILURES), models)
