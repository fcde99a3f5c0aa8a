"""``cellpipe model finetune``: fine-tune a model on corrected Labelme files (the correction loop)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from cellpipe.cli import model_app


@model_app.command("finetune")
def finetune_command(
    corrections: Path = typer.Argument(..., exists=True, file_okay=False,
                                       help="Folder of corrected Labelme files (from cellpipe review)."),
    out: Path = typer.Option(..., "--out", "-o", help="The fine-tuned model (.keras; its card next to it)."),
    parent: Optional[str] = typer.Option(None, "--from", help="Model to start from. Default: the shipped default."),
    max_minutes: float = typer.Option(15.0, "--max-minutes", min=0.01, help="Training time budget (2-core CPU: 15)."),
    held_out: float = typer.Option(0.25, "--held-out", min=0.0, max=0.99,
                                   help="Share of the corrections held out to choose the checkpoint and score."),
    steps: int = typer.Option(50, "--steps", min=1, help="Steps between validations on the held-out corrections."),
    max_steps: int = typer.Option(100_000, "--max-steps", min=1, help="Upper bound on optimiser steps."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Random crops per step."),
    crop: int = typer.Option(256, "--crop", min=16, help="Side of the crops (a multiple of 2 ** depth)."),
    learning_rate: float = typer.Option(3e-4, "--learning-rate", min=0.0, help="Initial Adam learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seeds weights, crops and augmentation."),
) -> None:
    """Fine-tune a model on corrected Labelme files; the card names the parent and the before/after scores.

    Part of the corrections is held out: the checkpoint with the lowest loss on them is
    kept, and both models' F1@0.5 and V_rand on them are printed and recorded.
    Then `cellpipe model promote` compares it with the default.
    """
    # Imported here, as in the other commands: TensorFlow is slow to import.
    from cellpipe.finetune import FinetuneConfig, finetune

    try:
        config = FinetuneConfig(corrections, out, parent=parent, held_out=held_out, max_minutes=max_minutes,
                                steps=steps, max_steps=max_steps, batch_size=batch_size, crop=crop,
                                learning_rate=learning_rate, seed=seed,
                                command="cellpipe " + shlex.join(sys.argv[1:]))
        result = finetune(config, on_progress=typer.echo)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    before, after = result.before, result.after
    if before:
        typer.echo(f"held-out corrections: F1@0.5 {before['f1']:.3f} → {after['f1']:.3f}, "
                   f"V_rand {before['v_rand']:.3f} → {after['v_rand']:.3f}")
    typer.echo(f"{result.model_path} ({result.stopped})")
