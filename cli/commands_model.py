"""``cellpipe model`` commands: ``train``.

``python -m cellpipe.unet.train`` (what cloud training jobs run) is the same command.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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
    architecture = UNetConfig(**{f.name: options.pop(f.name) for f in dataclasses.fields(UNetConfig)})
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
