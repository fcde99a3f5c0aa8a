"""``cellpipe model retrain``: the Luigi tasks of :mod:`cellpipe.tasks.models`, for cron and systemd.

Retrains model NAME VERSION (locally or in Azure ML), registers it in the ``models``
table and, with ``--deploy SERVICE``, serves it. A rerun with the same name and version
does nothing: completeness is in the database.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from cellpipe.cli import model_app
from cellpipe.cli.commands_azure_ml import DRY_RUN_HELP, ResourceGroup, Subscription, WorkspaceConfig, WorkspaceName

console = Console(stderr=True)


@model_app.command("retrain", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def retrain_command(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Training data: a folder (--backend local), or "
                               "azureml://datastores/NAME/paths/PATH or "
                               "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX (azure-v1, azure-v2)."),
    version: Optional[str] = typer.Option(None, "--version", help="Model version. Default: today's date, YYYY-MM-DD."),
    name: str = typer.Option("cellpipe-unet", "--name", help="Model name in the models table (and Azure ML)."),
    backend: str = typer.Option("local", "--backend", help="local (in this process), azure-v1 or azure-v2."),
    make_default: bool = typer.Option(False, "--make-default",
                                      help="Mark it as the models table's default (is_default)."),
    models_dir: Optional[Path] = typer.Option(
        None, "--models-dir", help="Model files go to MODELS_DIR/NAME/VERSION/. "
        "Default: \\[cellpipe] models_dir, else models/ next to the SQLite database."),
    db: Optional[str] = typer.Option(None, "--db", help="Database URL. Default: CELLPIPE_DB_URL, \\[cellpipe] db_url, "
                                     "else SQLite in the user's data directory."),
    deploy: Optional[str] = typer.Option(None, "--deploy", help="Then serve it as this web service / endpoint."),
    target: str = typer.Option("online-endpoint", "--target", help="aci (SDK v1) or online-endpoint (SDK v2)."),
    deployment_name: str = typer.Option("blue", "--deployment", help="Deployment under the endpoint (v2)."),
    compute: Optional[str] = typer.Option(None, "--compute",
                                          help="AmlCompute cluster. Default: \\[azureml] compute, else cellpipe-gpu."),
    vm_size: Optional[str] = typer.Option(None, "--vm-size", help="VM size of a new cluster. Default: a T4 GPU."),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Experiment the run is filed under."),
    scheduler_url: Optional[str] = typer.Option(None, "--scheduler-url", help="Shared luigid, e.g. "
                                                "http://scheduler-host:8082. Default: the local scheduler."),
    dry_run: Optional[Path] = typer.Option(None, "--dry-run", help=DRY_RUN_HELP + " Azure backends; no --deploy."),
    workspace_config: Optional[Path] = WorkspaceConfig,
    subscription_id: str = Subscription,
    resource_group: str = ResourceGroup,
    workspace: str = WorkspaceName,
) -> None:
    """Retrain the U-Net, register it in the models table, and optionally deploy it (Luigi tasks).

    Options after the known ones go to `cellpipe model train`, e.g.
    `cellpipe model retrain data/ --version 2026-07-01 --epochs 20 --val-ids 20-24`.
    """
    from cellpipe.db import DatabaseError
    from cellpipe.settings import Settings
    from cellpipe.tasks.models import DeployModel, RetrainModel, run_model_tasks

    version = version or dt.date.today().isoformat()
    # Unset values are left out, so that luigi.cfg [azureml] / [cellpipe] still apply.
    workspace_ids = _given(subscription_id=subscription_id, resource_group=resource_group, workspace_name=workspace,
                           workspace_config=str(workspace_config or ""))
    retrain = {"data": data, "backend": backend, "train_args": list(ctx.args), "make_default": make_default,
               "dry_run": str(dry_run or ""), **workspace_ids,
               **_given(compute=compute, vm_size=vm_size, experiment=experiment, models_dir=str(models_dir or ""))}
    try:
        if dry_run is not None and deploy:
            raise ValueError("--dry-run writes the training specification only: a deployment packages the trained "
                             "model (`cellpipe model deploy MODEL.keras --dry-run DIR` once it exists)")
        settings = Settings.load({"db_url": db})
        task = RetrainModel(name=name, version=version, **retrain)
        if deploy:
            task = DeployModel(name=name, version=version, service=deploy, target=target,
                               deployment_name=deployment_name, retrain=retrain, **workspace_ids)
        outcome = run_model_tasks([task], settings, scheduler_url=scheduler_url)
    except (ValueError, DatabaseError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    if not outcome.succeeded:
        for failure in outcome.failures:
            console.print(f"[red]failed[/red] {failure}")
        console.print(outcome.summary)
        raise typer.Exit(1)
    if dry_run is not None:
        console.print(f"Training specification ({backend}) written to {dry_run}")
        typer.echo(str(dry_run))
        return
    model = outcome.models[(name, version)]
    cloud = model.cloud_ids or {}
    if not outcome.ran:
        console.print("Nothing to do: already in the models table" + (" and deployed." if deploy else "."))
    console.print(f"{name} {version}: {model.location}" + ("  (default)" if model.is_default else ""))
    if "azureml" in cloud:
        console.print(f"Azure ML model {cloud['azureml']['model']}")
    for key, deployment in cloud.get("deployments", {}).items():
        console.print(f"{key}: {deployment['state']} {deployment['scoring_uri']}")
    typer.echo(model.location)


def _given(**values: Optional[str]) -> dict[str, str]:
    return {key: value for key, value in values.items() if value}
