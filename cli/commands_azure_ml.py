"""``cellpipe model`` commands that talk to Azure Machine Learning.

``train-azure``, ``deploy``, ``status``, ``undeploy``, ``list``, ``promote``, ``download``.
Each has ``--dry-run DIR``: it writes the complete specification (or request) to DIR and
makes no network call. ``--sdk v1`` uses azureml-core (ACI), ``--sdk v2`` azure-ai-ml
(managed online endpoints); see :mod:`cellpipe.azure.ml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from cellpipe.cli import model_app

console = Console(stderr=True)

SDK_HELP = "Azure ML SDK: v1 (azureml-core, ACI; out of support since 2026-06-30) or v2 (azure-ai-ml)."
DRY_RUN_HELP = "Write the complete specification to this folder and make no network call."


def _workspace(config: Optional[Path], subscription: str, resource_group: str, workspace: str):
    from cellpipe.azure.ml import WorkspaceRef

    return WorkspaceRef(subscription, resource_group, workspace, config)


WorkspaceConfig = typer.Option(None, "--workspace-config", help="config.json of the workspace (from the Azure portal).")
Subscription = typer.Option("", "--subscription-id", envvar="AZURE_SUBSCRIPTION_ID", help="Workspace subscription id.")
ResourceGroup = typer.Option("", "--resource-group", envvar="AZUREML_RESOURCE_GROUP", help="Workspace resource group.")
WorkspaceName = typer.Option("", "--workspace", envvar="AZUREML_WORKSPACE_NAME", help="Workspace name.")


def _fail(error: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {error}")
    return typer.Exit(2)


def _errors():
    from cellpipe.azure.ml import AzureMLError
    from cellpipe.azure.ml.spec import SpecError

    return (AzureMLError, SpecError, ValueError, ImportError)


@model_app.command(
    "train-azure",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train_azure_command(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="azureml://datastores/NAME/paths/PATH or https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX"),
    sdk: str = typer.Option("v1", "--sdk", help=SDK_HELP),
    compute: str = typer.Option("cellpipe-gpu", "--compute", help="AmlCompute cluster (created when missing)."),
    vm_size: str = typer.Option("Standard_NC4as_T4_v3", "--vm-size", help="VM size of a new cluster (N-series = GPU)."),
    max_nodes: int = typer.Option(1, "--max-nodes", help="Largest size of a new cluster."),
    experiment: str = typer.Option("cellpipe-unet", "--experiment", help="Experiment the run is filed under."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the run to finish."),
    register: Optional[str] = typer.Option("cellpipe-unet", "--register", help="Register the trained model under this name (with --wait)."),
    dry_run: Optional[Path] = typer.Option(None, "--dry-run", help=DRY_RUN_HELP),
    workspace_config: Optional[Path] = WorkspaceConfig,
    subscription_id: str = Subscription,
    resource_group: str = ResourceGroup,
    workspace: str = WorkspaceName,
) -> None:
    """Train the U-Net in Azure ML: the cloud job runs `python -m cellpipe.unet.train DATA --out ...`.

    Options after the known ones go to the training program, e.g.
    `cellpipe model train-azure azureml://datastores/cells/paths/isbi/ --epochs 50 --val-ids 20-24`.
    """
    from cellpipe.azure.ml import ComputeTarget, TrainingJob, open_backend, parse_data_location

    try:
        job = TrainingJob(parse_data_location(data), tuple(ctx.args),
                          ComputeTarget(compute, vm_size, max_nodes=max_nodes), experiment)
        backend = open_backend(sdk, _workspace(workspace_config, subscription_id, resource_group, workspace))
        run = backend.submit_training(job, dry_run=dry_run)
        if dry_run is not None:
            console.print(f"Training specification ({sdk}) written to {dry_run}")
            typer.echo(str(dry_run))
            return
        console.print(f"Submitted run {run.run_id}: {run.portal_url}")
        if wait:
            run = backend.wait(run, show_output=True)
            console.print(f"Run {run.run_id} {run.status}")
            if register:
                model = backend.register_model(run, register)
                console.print(f"Registered model {model}")
        typer.echo(run.run_id)
    except _errors() as error:
        raise _fail(error) from error


@model_app.command("deploy")
def deploy_command(
    model: Optional[str] = typer.Argument(None, help="Local .keras model (default: the shipped one) or registered NAME:VERSION."),
    target: str = typer.Option("aci", "--target", help="aci or online-endpoint."),
    sdk: Optional[str] = typer.Option(None, "--sdk", help=SDK_HELP + " Default: v1 for aci, v2 for online-endpoint."),
    name: str = typer.Option("cellpipe", "--name", help="Web service / endpoint name."),
    deployment_name: str = typer.Option("blue", "--deployment", help="Deployment under the endpoint (v2)."),
    cpu_cores: float = typer.Option(1.0, "--cpu-cores", help="ACI CPU cores."),
    memory_gb: float = typer.Option(4.0, "--memory-gb", help="ACI memory in GB."),
    instance_type: str = typer.Option("Standard_DS3_v2", "--instance-type", help="Online endpoint VM size."),
    instance_count: int = typer.Option(1, "--instance-count", help="Online endpoint instances."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Largest image the service accepts (pixels)."),
    max_request_bytes: Optional[int] = typer.Option(None, "--max-request-bytes", help="Largest request body (bytes)."),
    dry_run: Optional[Path] = typer.Option(None, "--dry-run", help=DRY_RUN_HELP + " DIR holds score.py and model/ for azmlinfsrv."),
    workspace_config: Optional[Path] = WorkspaceConfig,
    subscription_id: str = Subscription,
    resource_group: str = ResourceGroup,
    workspace: str = WorkspaceName,
) -> None:
    """Deploy a model as a web service running score.py (one image, or a blob container batch)."""
    from cellpipe.azure.ml import Deployment, open_backend, parse_model_ref
    from cellpipe.unet import DEFAULT_MODEL_PATH

    limits = {"CELLPIPE_SCORE_MAX_PIXELS": max_pixels, "CELLPIPE_SCORE_MAX_REQUEST_BYTES": max_request_bytes}
    try:
        source = Path(model) if model and Path(model).exists() else (parse_model_ref(model) if model else DEFAULT_MODEL_PATH)
        deployment = Deployment(name, target, deployment_name, cpu_cores, memory_gb, instance_type, instance_count,
                                {key: str(value) for key, value in limits.items() if value is not None})
        backend = open_backend(sdk or ("v1" if target == "aci" else "v2"),
                               _workspace(workspace_config, subscription_id, resource_group, workspace))
        status = backend.deploy(source, deployment, dry_run=dry_run)
    except _errors() as error:
        raise _fail(error) from error
    if dry_run is not None:
        console.print(f"Deployment specification written to {dry_run}; serve it locally with\n"
                      f"  azmlinfsrv --entry_script {dry_run / 'score.py'} --model_dir {dry_run / 'model'}")
        typer.echo(str(dry_run))
        return
    console.print(f"{status.name}: {status.state}")
    typer.echo(status.scoring_uri)


@model_app.command("status")
def status_command(
    name: str = typer.Argument(..., help="Web service / endpoint name."),
    sdk: str = typer.Option("v1", "--sdk", help=SDK_HELP),
    workspace_config: Optional[Path] = WorkspaceConfig,
    subscription_id: str = Subscription,
    resource_group: str = ResourceGroup,
    workspace: str = WorkspaceName,
) -> None:
    """Print the state and scoring URI of a web service / endpoint."""
    from cellpipe.azure.ml import open_backend

    try:
        status = open_backend(sdk, _workspace(workspace_config, subscription_id, resource_group, workspace)).endpoint_status(name)
    except _errors() as error:
        raise _fail(error) from error
    typer.echo(f"{status.name}\t{status.state}\t{status.scoring_uri}")


@model_app.command("undeploy")
def undeploy_command(
    name: str = typer.Argument(..., help="Web service / endpoint name."),
    deployment_name: Optional[str] = typer.Option(None, "--deployment", help="v2: delete this deployment only."),
    sdk: str = typer.Option("v1", "--sdk", help=SDK_HELP),
    workspace_config: Optional[Path] = WorkspaceConfig,
    subscription_id: str = Subscription,
    resource_group: str = ResourceGroup,
    workspace: str = WorkspaceName,
) -> None:
    """Delete a web service (v1), or an endpoint or one of its deployments (v2)."""
    from cellpipe.azure.ml import open_backend

    try:
        open_backend(sdk, _workspace(workspace_config, subscription_id, resource_group, workspace)).delete_deployment(
            name, deployment_name)
    except _errors() as error:
        raise _fail(error) from error
    console.print(f"Deleted {name}{'/' + deployment_name if deployment_name else ''}")


def _request_dry_run(folder: Path, sdk: str, workspace, operation: str, **arguments) -> None:
    from cellpipe.azure.ml.spec import prepare_folder, write_json

    write_json(prepare_folder(folder) / "request.json",
               {"sdk": sdk, "workspace": workspace.as_dict(), "operation": operation, **arguments})
    console.print(f"Request written to {folder / 'request.json'}")
    typer.echo(str(folder))


@model_app.command("list")
def list_command(
    name: Optional[str] = typer.Argument(None, help="Only the versions of this model."),
    sdk: str = typer.Option("v1", "--sdk", help=SDK_HELP),
    dry_run: Optional[Path] = typer.Option(None, "--dry-run", help=DRY_RUN_HELP),
    workspace_config: Optional[Path] = WorkspaceConfig,
    subscription_id: str = Subscription,
    resource_group: str = ResourceGroup,
    workspace: str = WorkspaceName,
) -> None:
    """List the models registered in the workspace; * marks the nightly batch's default."""
    from cellpipe.azure.ml import DEFAULT_TAG, open_backend

    try:
        ref = _workspace(workspace_config, subscription_id, resource_group, workspace)
        if dry_run is not None:
            return _request_dry_run(dry_run, sdk, ref, "list_models", name=name)
        models = open_backend(sdk, ref).list_models(name)
    except _errors() as error:
        raise _fail(error) from error
    table = Table("model", "version", "default", "tags")
    for model in models:
        tags = ", ".join(f"{k}={v}" for k, v in model.tags.items() if k != DEFAULT_TAG)
        table.add_row(model.name, model.version, "*" if DEFAULT_TAG in model.tags else "", tags)
    Console().print(table)


@model_app.command("promote")
def promote_command(
    model: str = typer.Argument(..., help="NAME:VERSION of a registered model."),
    db: Optional[str] = typer.Option(None, "--db", help="Database URL. Default: CELLPIPE_DB_URL, [cellpipe] db_url."),
    corrections: Optional[Path] = typer.Option(
        None, "--corrections", exists=True, file_okay=False,
        help="Held-out corrected Labelme files to compare on. Default: those the candidate's card names "
        "(cellpipe model finetune)."),
    shared: Path = typer.Option(Path("../shared/data"), "--shared",
                                help="Folder of the shipped validation sources (isbi2012/, nuclei/)."),
    sources: Optional[List[str]] = typer.Option(None, "--source", help="Compare on this validation source only "
                                                "(repeatable). Default: every one."),
    tolerance: float = typer.Option(0.02, "--tolerance", min=0.0,
                                    help="Largest drop of (F1@0.5 + V_rand) / 2 allowed on any set."),
    force: bool = typer.Option(False, "--force", help="Promote even when worse or not comparable (recorded)."),
    sdk: str = typer.Option("v1", "--sdk", help=SDK_HELP),
    dry_run: Optional[Path] = typer.Option(None, "--dry-run", help=DRY_RUN_HELP),
    workspace_config: Optional[Path] = WorkspaceConfig,
    subscription_id: str = Subscription,
    resource_group: str = ResourceGroup,
    workspace: str = WorkspaceName,
) -> None:
    """Make NAME:VERSION the model the nightly batch uses, only if it is not worse than the current one.

    In the database's models table (what `cellpipe run` reads when no --model is set)
    when the model is there, and in the Azure ML workspace (tag cellpipe-default) when a
    workspace is given. Before a model of the database replaces its default (or the
    shipped default), both are scored on the held-out corrections and the shipped
    validation sets; a drop beyond --tolerance on any of them refuses the promotion
    (exit 1) unless --force, which is recorded in the models table and the card.
    """
    from cellpipe.azure.ml import open_backend, parse_model_ref
    from cellpipe.promotion import PromotionRefused

    in_azure = bool(workspace_config or subscription_id or workspace)
    try:
        ref = _workspace(workspace_config, subscription_id, resource_group, workspace)
        chosen = parse_model_ref(model)
        if not chosen.version:
            raise ValueError(f"give the version to promote: {chosen.name}:VERSION")
        if dry_run is not None:
            return _request_dry_run(dry_run, sdk, ref, "promote_model", model=str(chosen))
        gate = {"corrections": corrections, "shared": shared, "sources": sources, "tolerance": tolerance,
                "force": force}
        promoted_locally = _promote_in_database(db, chosen.name, chosen.version, gate)
        if not (promoted_locally or in_azure):
            raise ValueError(
                f"{chosen} is not in the models table of the database; register it (cellpipe model "
                "retrain, or run the batch with --model) or give an Azure ML workspace"
            )
        if in_azure:
            console.print(f"{open_backend(sdk, ref).promote_model(chosen)} is now the default in the workspace")
    except PromotionRefused as error:
        console.print(f"[red]not promoted:[/red] {error}")
        raise typer.Exit(1) from None
    except _errors() as error:
        raise _fail(error) from error
    if promoted_locally:
        console.print(f"{chosen} is now the default model of the nightly batch")


def _promote_in_database(db_url: Optional[str], name: str, version: str, gate: dict) -> bool:
    """Make (name, version) the database's default model once it passed the gate; False when it is not there."""
    from cellpipe.db import get_default_model, get_model, open_database, set_default_model
    from cellpipe.db.registry import record_promotion as record_in_database
    from cellpipe.settings import Settings

    engine = open_database(Settings.load({"db_url": db_url}).db_url)
    try:
        found = get_model(engine, name, version)
        if found is None:
            return False
        current = get_default_model(engine)
        if current is not None and current.id == found.id:
            return True
        entry = _promotion_gate(found.location, current.location if current is not None else None, **gate)
        set_default_model(engine, found.id)
        record_in_database(engine, found.id, entry)
        return True
    finally:
        engine.dispose()


def _promotion_gate(candidate: str, current: Optional[str], *, corrections: Optional[Path], shared: Path,
                    sources: Optional[List[str]], tolerance: float, force: bool) -> dict:
    """Return the record of a promotion the comparison allows (or --force); raise PromotionRefused otherwise."""
    from cellpipe.promotion import (
        PromotionRefused,
        check_promotion,
        held_out_corrections,
        promotion_entry,
        record_promotion,
    )
    from cellpipe.shipped import model_file
    from cellpipe.unet.mix import default_sources

    missing = [str(model_file(path)) for path in (candidate, current) if not model_file(path).is_file()]
    if missing:
        reason = f"cannot compare: no model file at {', '.join(missing)}"
        if not force:
            raise PromotionRefused(f"{reason}; download it (cellpipe model download) or promote it with --force")
        console.print(f"[yellow]{reason}; promoted anyway (--force, recorded)[/yellow]")
        return promotion_entry(None, forced=True, reason=reason)
    files = sorted(corrections.glob("*.json")) if corrections else held_out_corrections(candidate)
    validation = [source for source in default_sources(shared) if sources is None or source.name in sources]
    if not shared.is_dir():
        validation = [source for source in validation if source.root is None]  # the synthetic ones need no files
    check = check_promotion(candidate, current, corrections=files, sources=validation, tolerance=tolerance)
    table = Table("set", "images", "candidate F1", "V_rand", "current F1", "V_rand", "change")
    for score in check.sets:
        table.add_row(score.name, str(score.n_images), f"{score.candidate['f1']:.3f}",
                      f"{score.candidate['v_rand']:.3f}", f"{score.current['f1']:.3f}",
                      f"{score.current['v_rand']:.3f}", f"{score.change:+.3f}")
    console.print(table)
    worse = ", ".join(f"{score.name} ({score.change:+.3f})" for score in check.worse)
    if worse and not force:
        raise PromotionRefused(f"{check.candidate} is worse than {check.current} beyond the tolerance of "
                               f"{tolerance} on {worse}; --force promotes it anyway (recorded)")
    entry = promotion_entry(check, forced=bool(worse), reason=f"--force although worse on {worse}" if worse else "")
    record_promotion(candidate, entry)
    return entry


@model_app.command("download")
def download_command(
    model: str = typer.Argument(..., help="NAME:VERSION (or NAME for the latest) of a registered model."),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder to download into."),
    sdk: str = typer.Option("v1", "--sdk", help=SDK_HELP),
    dry_run: Optional[Path] = typer.Option(None, "--dry-run", help=DRY_RUN_HELP),
    workspace_config: Optional[Path] = WorkspaceConfig,
    subscription_id: str = Subscription,
    resource_group: str = ResourceGroup,
    workspace: str = WorkspaceName,
) -> None:
    """Download a registered model; prints the path of its .keras file (use it with --model)."""
    from cellpipe.azure.ml import open_backend, parse_model_ref

    try:
        ref = _workspace(workspace_config, subscription_id, resource_group, workspace)
        chosen = parse_model_ref(model)
        if dry_run is not None:
            return _request_dry_run(dry_run, sdk, ref, "download_model", model=str(chosen), out=str(out))
        path = open_backend(sdk, ref).download_model(chosen, out)
    except _errors() as error:
        raise _fail(error) from error
    typer.echo(str(path))
