"""Fine-tune a model on a lab's corrected Labelme files, and say whether it got better.

The correction loop: ``cellpipe review`` writes the images the model was least sure of
as Labelme files; someone corrects the cells; :func:`finetune` converts the corrected
files (:func:`cellpipe.labels.convert_labelme`), holds a part of them out, fine-tunes
the parent model (the shipped default unless told otherwise) on the rest within a time
budget, and writes a card that names the parent, the corrections, and the held-out
scores before and after (F1 at IoU 0.5 and V_rand of the whole pipeline, and the
network's validation loss). :func:`score_corrections` is that score, used again by
``cellpipe model promote`` to compare a candidate with the current default.

Only edge models (one output channel, like the shipped default) are fine-tuned here,
through :func:`cellpipe.unet.train.train`; a three-class model is refused with a message.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cellpipe.io import _write_atomically
from cellpipe.labelme import read_labelme
from cellpipe.labels import LabelConversionError, TrainingSet, convert_labelme
from cellpipe.metrics import evaluate_pair
from cellpipe.pipeline import CellSegmenter, file_sha256
from cellpipe.preprocess import guess_invert
from cellpipe.shipped import model_file
from cellpipe.unet import EdgePredictor, UNetConfig, fold_batch_norm, load_model, save_model
from cellpipe.unet.data import list_pairs, load_pair, natural_key
from cellpipe.unet.train import Progress, TrainConfig, evaluate, train

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "score_corrections", "split_corrections"]

#: Default share of the corrections held out to score the models (at least one file when there are two).
DEFAULT_HELD_OUT = 0.25


@dataclass(frozen=True)
class FinetuneConfig:
    """A fine-tuning run; recorded in the new model's card (``finetune``).

    Attributes
    ----------
    corrections : Path
        Folder of corrected Labelme files (``*.json``, images embedded or beside them).
    out : Path
        The fine-tuned model (``.keras``; its card next to it).
    parent : str or Path, optional
        The model to start from: a file, folder or shipped name; None: the shipped default.
    held_out : float
        Share of the corrections (the last ones in natural order) held out of training:
        they choose the checkpoint and give the before/after scores. At least one file
        when there are two or more. Default :data:`DEFAULT_HELD_OUT`.
    max_minutes : float
        Wall-time budget of the training; the best checkpoint so far is kept. Default 15.
    steps : int
        Optimiser steps between validations on the held-out corrections.
    batch_size, crop : int
        Random crops per step and their side (a multiple of ``2 ** depth`` of the parent).
    learning_rate : float
        Initial Adam learning rate (cosine decay over the run), lower than training from
        scratch so that the parent's knowledge is kept.
    max_steps : int
        Upper bound on optimiser steps (a run stops at whichever limit comes first).
    seed : int
    command : str
        The command line, for the card.
    """

    corrections: Path
    out: Path
    parent: str | Path | None = None
    held_out: float = DEFAULT_HELD_OUT
    max_minutes: float = 15.0
    steps: int = 50
    batch_size: int = 4
    crop: int = 256
    learning_rate: float = 3e-4
    max_steps: int = 100_000
    seed: int = 0
    command: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.held_out < 1.0:
            raise ValueError(f"held_out must be a share in [0, 1), got {self.held_out}")
        if not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if Path(self.out).suffix != ".keras":
            raise ValueError(f"output model path {self.out} must end in .keras")


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` produced: the model, and its held-out scores against its parent's."""

    model_path: Path
    before: dict[str, Any]
    after: dict[str, Any]
    stopped: str


def split_corrections(files: Sequence[Path], held_out: float) -> tuple[list[Path], list[Path]]:
    """Return ``(training files, held-out files)``: the last ``ceil(held_out * n)`` in natural order are held out.

    At least one is held out when ``held_out > 0`` and there are two or more files; at
    least one is always left to train on.
    """
    files = sorted(files, key=lambda path: natural_key(path.name))
    if held_out <= 0 or len(files) < 2:
        return files, []
    n_held = min(max(1, math.ceil(held_out * len(files))), len(files) - 1)
    return files[:-n_held], files[-n_held:]


def score_corrections(model: str | Path | None, corrections: Sequence[Path]) -> dict[str, Any]:
    """Return the pipeline's mean F1 at IoU 0.5 and V_rand on corrected Labelme files, and per file.

    The model segments each file's image with its card's parameters, as ``cellpipe
    segment`` would; the corrected cells are the truth.
    """
    segmenter = CellSegmenter(model)
    per_file = {}
    for path in corrections:
        annotation = read_labelme(path)
        scores = evaluate_pair(segmenter(annotation.image).labels, annotation.cells)
        per_file[Path(path).name] = {"f1": round(scores["f1"], 4), "v_rand": round(scores["v_rand"], 4)}
    return {
        "f1": round(float(np.mean([s["f1"] for s in per_file.values()])), 4) if per_file else None,
        "v_rand": round(float(np.mean([s["v_rand"] for s in per_file.values()])), 4) if per_file else None,
        "files": per_file,
    }


def finetune(config: FinetuneConfig, *, on_progress: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune ``config.parent`` on ``config.corrections``; return the new model and its scores.

    Raises
    ------
    ValueError
        When the folder holds no usable Labelme file (the message names the file and
        what was wrong), or the parent is a three-class model.
    """
    report = on_progress or (lambda message: None)
    parent = model_file(config.parent)
    parent_model, parent_card = load_model(parent)
    architecture = UNetConfig.of_model(parent_model)
    if architecture.classes != 1:
        raise ValueError(f"{parent} is a three-class model; `cellpipe model finetune` fine-tunes edge models "
                         "(like the shipped default) only")
    files = sorted(Path(config.corrections).glob("*.json"))
    if not files:
        raise ValueError(f"no Labelme files (*.json) in {config.corrections}")
    train_files, held_files = split_corrections(files, config.held_out)
    report(f"{len(train_files)} corrections to train on, {len(held_files)} held out: "
           + ", ".join(path.name for path in held_files))

    with tempfile.TemporaryDirectory(prefix="cellpipe-finetune-") as scratch:
        train_dir, val_dir = _converted(train_files, Path(scratch) / "train"), _converted(held_files, Path(scratch) / "val")
        invert = _needs_inversion(train_dir, parent_card.dark_walls)
        contrast = parent_card.contrast_params()
        val_pairs = [load_pair(*item, contrast, invert=invert) for item in list_pairs(val_dir)] if held_files else []
        loss_before = evaluate(EdgePredictor(parent_model, fold_batch_norm=False), val_pairs) if val_pairs else None
        before = score_corrections(parent, held_files) if held_files else {}
        report(f"parent {parent.name}: held-out F1 {before.get('f1')}, V_rand {before.get('v_rand')}, "
               f"loss {loss_before and loss_before['loss']}")
        # Batch norm is folded into the convolutions first: a few crops of a few images per
        # step would otherwise drag the statistics the parent learned on all its data to
        # theirs (the held-out loss rises as the training loss falls). Same predictions.
        start = save_model(fold_batch_norm(parent_model), parent_card, Path(scratch) / "parent.keras")
        epochs = max(1, config.max_steps // config.steps)
        result = train(
            TrainConfig(data_dir=train_dir, out=Path(config.out), val_dir=val_dir if held_files else None,
                        val_fraction=0.0, init_from=start, epochs=epochs, steps=config.steps,
                        batch_size=config.batch_size, crop=config.crop, learning_rate=config.learning_rate,
                        patience=epochs, max_minutes=config.max_minutes, seed=config.seed, invert=invert,
                        command=config.command),
            on_progress=_epoch_reporter(report),
        )
    # The child segments as its parent did: same post-processing, same confidence calibration until refitted.
    _write_card_fields(result.model_path, postprocessing=parent_card.postprocessing,
                       postprocessing_tuned_on={"inherited_from": str(parent.resolve()),
                                                **parent_card.postprocessing_tuned_on} if parent_card.postprocessing else {},
                       confidence=parent_card.confidence,
                       description=f"{parent_card.description or parent.name}, fine-tuned on "
                                   f"{len(train_files)} corrections from {Path(config.corrections).name}")
    after = score_corrections(result.model_path, held_files) if held_files else {}
    report(f"fine-tuned: held-out F1 {after.get('f1')}, V_rand {after.get('v_rand')} ({result.stopped})")
    record = {
        "parent": {"path": str(parent.resolve()), "sha256": file_sha256(parent),
                   "description": parent_card.description},
        "corrections": {"folder": str(Path(config.corrections).resolve()),
                        "train": [path.name for path in train_files], "held_out": [path.name for path in held_files]},
        "held_out_scores": {"before": before, "after": after},
        "validation_loss": {"before": loss_before and loss_before["loss"],
                            "after": result.card.metrics.get("val_loss", result.card.metrics.get("train_loss"))},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
        "stopped": result.stopped,
        "command": config.command,
    }
    _write_card_fields(result.model_path, finetune=record)
    return FinetuneResult(result.model_path, before, after, result.stopped)


def _converted(files: Sequence[Path], data_dir: Path) -> Path:
    training_set = TrainingSet(data_dir)
    for path in files:
        try:
            convert_labelme(path, training_set)
        except LabelConversionError as error:
            raise ValueError(f"correction {path} cannot be used: {error}") from None
    return data_dir


def _needs_inversion(data_dir: Path, dark_walls: bool) -> bool:
    # The lab's images share one polarity; the majority decides, as the pipeline does per image.
    votes = [guess_invert(load_pair(*item).image) for item in list_pairs(data_dir)]
    return (sum(votes) * 2 > len(votes)) == dark_walls


def _epoch_reporter(report: Callable[[str], None]) -> Callable[[Progress], None]:
    def on_progress(progress: Progress) -> None:
        if progress.validation is not None or progress.improved:
            validation = f", held-out loss {progress.validation['loss']:.4f}" if progress.validation else ""
            report(f"step {progress.step}: loss {progress.loss:.4f}{validation}{' *' if progress.improved else ''}")
    return on_progress


def _write_card_fields(model_path: Path, **fields: Any) -> Path:
    card_file = Path(model_path).with_suffix(".json")
    card = {**json.loads(card_file.read_text()), **fields}
    text = json.dumps(card, indent=2) + "\n"
    return _write_atomically(card_file, lambda temporary: temporary.write_text(text))
