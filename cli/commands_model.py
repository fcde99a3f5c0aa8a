"""``cellpipe model`` commands: ``train`` and ``tune``.

``python -m cellpipe.unet.train`` (what cloud training jobs run) is the same command as
``train``. ``tune`` chooses a model's post-processing parameters (:mod:`cellpipe.tuning`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Mapping, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cellpipe.cli import app, model_app  # noqa: F401

if TYPE_CHECKING:
    from cellpipe.unet.train import TrainConfig

console = Console(stderr=True)


def train_command(
    context: typer.Context,
    data_dir: Path = typer.Argument(..., help="Training data: train/image + train/label (or image + label)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to save the best model (.keras; card written next to it)."),
    val: Optional[Path] = typer.Option(None, "--val", help="Separate validation data in the same layout."),
    val_ids: Optional[str] = typer.Option(None, "--val-ids", help="Hold these images out for validation, e.g. 20-24."),
    val_fraction: float = typer.Option(0.2, help="Without --val/--val-ids: fraction of images held out (the last ones)."),
    train_ids: Optional[str] = typer.Option(None, "--train-ids", help="Train only on these images, e.g. 0-19."),
    depth: int = typer.Option(4, help="U-Net depth (number of 2x2 poolings)."),
    base_filters: int = typer.Option(16, help="Filters at full resolution; doubled at each level."),
    batch_norm: bool = typer.Option(True, "--batch-norm/--no-batch-norm", help="Batch norm after each convolution."),
    dropout: float = typer.Option(0.0, help="Dropout rate after the bottleneck."),
    max_filters: Optional[int] = typer.Option(
        None, help="Cap the filters of every level (a deeper net, more context, same size)."
    ),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from this model (transfer learning)."),
    freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="With --init-from: train the decoder only."),
    epochs: int = typer.Option(50, help="Maximum number of epochs (validation after each)."),
    steps: int = typer.Option(100, help="Optimiser steps per epoch."),
    batch_size: int = typer.Option(8, help="Random crops per step."),
    crop: int = typer.Option(256, help="Side of the random crops, a multiple of 2**depth."),
    lr: float = typer.Option(1e-3, "--lr", help="Initial learning rate (cosine decay over all steps)."),
    dice_weight: float = typer.Option(1.0, help="Weight of the soft-Dice term added to cross-entropy."),
    patience: int = typer.Option(10, help="Early stopping: epochs without a better validation loss."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop after this much wall time."),
    seed: int = typer.Option(0, help="Random seed of weights, crops and augmentation."),
    deterministic: bool = typer.Option(
        True, "--deterministic/--no-deterministic", help="Deterministic TensorFlow kernels (bit-identical reruns)."
    ),
    invert: bool = typer.Option(False, "--invert", help="Images have bright cell walls: invert them for the model."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random flips, rotations, warps, intensity."),
) -> None:
    """Train a U-Net edge model on image/label pairs (label 0 = cell wall)."""
    from cellpipe.unet.train import train

    config = train_config(context.params, _command_line())
    columns = (
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("training", total=epochs * steps, epoch=1, loss=float("nan"))

        def show(report) -> None:
            progress.update(task, completed=report.step, epoch=report.epoch, loss=report.loss)
            if report.validation is not None:
                scores = "  ".join(f"{k} {v:.4f}" for k, v in report.validation.items())
                mark = "  [green]saved[/green]" if report.improved else ""
                progress.console.print(f"epoch {report.epoch}: train loss {report.loss:.4f}  val {scores}{mark}")

        try:
            result = train(config, on_progress=show)
        except (FileNotFoundError, ValueError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from error
    training = result.card.training
    console.print(
        f"{result.stopped}; best epoch {training.get('best_epoch')} of {training.get('epochs_run')}, "
        f"{training.get('wall_seconds')} s. Saved {result.model_path} and its card."
    )
    typer.echo(str(result.model_path))


model_app.command("train")(train_command)


@model_app.command("tune")
def tune_command(
    model: Path = typer.Argument(..., exists=True, metavar="MODEL",
                                 help="The model (.keras, card next to it, or its folder)."),
    data: List[str] = typer.Argument(
        ..., metavar="DATA", help="Validation folders: train/image + train/label, image + label, or images + "
        "masks; PATH:ID1,ID2 (or PATH:20-24) uses only those image stems."),
    write: bool = typer.Option(False, "--write/--dry-run", help="Write the best parameters into the model's card "
                               "(default: only print them)."),
    views: Optional[int] = typer.Option(None, help="Test-time views of the predictions. Default: 1."),
    jobs: int = typer.Option(min(4, os.cpu_count() or 1), "--jobs", "-j", min=1,
                             help="Processes scoring the parameter grid."),
) -> None:
    """Search the post-processing parameters for MODEL on validation data; --write puts them into its card."""
    import dataclasses

    from cellpipe.pipeline import CellSegmenter
    from cellpipe.tuning import TuningFolder, tune, write_tuned_card

    try:
        folders = [TuningFolder.parse(spec) for spec in data]
        segmenter = CellSegmenter(model)
        if views is not None:
            segmenter = segmenter.with_params(dataclasses.replace(segmenter.params, views=views))
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bars: dict[str, Any] = {}

        def show(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task("predicting" if stage == "predict" else "scoring", total=total)
            progress.update(bars[stage], completed=done)

        try:
            result = tune(segmenter, folders, jobs=jobs, on_progress=show)
        except (FileNotFoundError, ValueError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from None
    _print_tuning(result)
    if write:
        command = shlex.join(["cellpipe", "model", "tune", str(model), *data, "--views", str(result.views)])
        try:
            card = write_tuned_card(segmenter.model_path, result, command=command)
        except (OSError, ValueError) as error:
            console.print(f"[red]cannot write the card:[/red] {error}")
            raise typer.Exit(1) from None
        console.print(f"wrote the best parameters into {card} (postprocessing)")
    else:
        console.print("dry run: the card is unchanged (--write stores the best parameters in it)")


@model_app.command("train-generalist")
def train_generalist_command(
    out: Path = typer.Option(..., "--out", "-o", help="Best checkpoint (.keras; its card is written next to it)."),
    shared: Path = typer.Option(Path("../shared/data"), help="Folder holding isbi2012/ and nuclei/."),
    max_minutes: float = typer.Option(60.0, help="Wall-time budget; the learning rate decays over it."),
    max_steps: int = typer.Option(100_000, help="Upper bound on optimiser steps."),
    init_from: Optional[Path] = typer.Option(None, exists=True, help="Continue from this three-class model."),
    learning_rate: float = typer.Option(2e-3, help="Peak learning rate (cosine decay over the budget)."),
    weight: List[str] = typer.Option([], metavar="SOURCE=WEIGHT", help="Sampling weight of one source (repeatable), e.g. isbi=0.5."),
    seed: int = typer.Option(0, help="Seeds weights and crops."),
) -> None:
    """Train the three-class generalist on the train splits of every source (val splits pick the checkpoint)."""
    from cellpipe.unet.train_mix import MixConfig, parse_weight, train_generalist

    command = shlex.join(["cellpipe", *sys.argv[1:]])
    try:
        config = MixConfig(shared_data=shared, out=out, max_minutes=max_minutes, max_steps=max_steps,
                           init_from=init_from, learning_rate=learning_rate, seed=seed, command=command,
                           source_weights=dict(parse_weight(text) for text in weight))
        train_generalist(config, on_progress=console.print)
    except (FileNotFoundError, ValueError, argparse.ArgumentTypeError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    console.print(f"best checkpoint in {out}")


def _print_tuning(result) -> None:
    rows = [("best", result.best), ("defaults", result.defaults)]
    if result.card is not None:
        rows.insert(1, ("card before", result.card))
    table = Table(title=f"post-processing: {len(result.ranking)} parameter sets, {sum(map(len, result.images))} "
                        f"images, views={result.views}", caption="objective = (F1@0.5 + V_rand) / 2")
    for column in ("folder", "images", "parameters", "objective", "F1@0.5", "V_rand"):
        table.add_column(column, justify="left" if column in ("folder", "parameters") else "right")
    for i, (folder, images) in enumerate(zip(result.folders, result.images)):
        for j, (name, candidate) in enumerate(rows):
            score = candidate.folders[i]
            v_rand = "-" if score.v_rand != score.v_rand else f"{score.v_rand:.4f}"  # NaN: no true cell
            table.add_row(str(folder) if j == 0 else "", str(len(images)) if j == 0 else "", name,
                          f"{score.objective:.4f}", f"{score.f1:.4f}", v_rand, end_section=j == len(rows) - 1)
    for j, (name, candidate) in enumerate(rows):
        table.add_row("mean over folders" if j == 0 else "", "", name, f"{candidate.objective:.4f}", "", "")
    console.print(table)
    for name, candidate in rows:
        values = candidate.params
        console.print(f"{name}: threshold={values.threshold} marker_h={values.marker_h} "
                      f"merge_threshold={values.merge_threshold} min_area={values.min_area}")

_PROGRAM = "cellpipe model train"


def train_config(options: Mapping[str, Any], command: str) -> "TrainConfig":
    """Return the training configuration that parsed ``cellpipe model train`` options ask for.

    ``options`` maps each option's parameter name to its value (a Typer context's
    ``params``). The nightly ``RetrainModel`` task parses its stored options with the
    same command and builds its configuration here too, so the two cannot drift apart.
    """
    import dataclasses

    from cellpipe.unet import UNetConfig
    from cellpipe.unet.data import Augmentation
    from cellpipe.unet.train import TrainConfig

    options = dict(options)
    # `cellpipe model train` trains edge models: the architecture options it has are those
    # of UNetConfig but its number of classes (the generalist has its own command).
    architecture = UNetConfig(**{f.name: options.pop(f.name) for f in dataclasses.fields(UNetConfig)
                                 if f.name in options})
    augmentation = Augmentation() if options.pop("augment") else Augmentation.none()
    renamed = {"val": "val_dir", "lr": "learning_rate"}
    return TrainConfig(**{renamed.get(key, key): value for key, value in options.items()},
                       architecture=architecture, augmentation=augmentation, command=command)


def _command_line() -> str:
    # Recorded in the model card, so that the run can be repeated word for word.
    args = sys.argv[1:]
    if args[:2] == ["model", "train"]:
        args = args[2:]
    return f"{_PROGRAM} {shlex.join(args)}"


def train_main() -> None:
    """Run ``train`` as a stand-alone program (``python -m cellpipe.unet.train``)."""
    global _PROGRAM
    _PROGRAM = "python -m cellpipe.unet.train"
    typer.run(train_command)
