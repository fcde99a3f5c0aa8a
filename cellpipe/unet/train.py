"""Train a U-Net edge model on image/label pairs, with validation, checkpoints and early stopping.

Run it as ``cellpipe model train DATA_DIR --out MODEL.keras`` or, the same command for
a cloud training job, ``python -m cellpipe.unet.train DATA_DIR --out MODEL.keras``.

The library entry point is :func:`train`; it reports progress through a callback so
that callers choose how to show it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from cellpipe.unet.data import (
    Augmentation,
    TrainingPair,
    list_pairs,
    load_pair,
    parse_ids,
    random_batches,
    split_names,
)
from cellpipe.unet.infer import EdgePredictor
from cellpipe.unet.model import ModelCard, UNetConfig, build_unet, card_path, load_model, save_model


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; recorded in the model card.

    Attributes
    ----------
    data_dir : Path
        Training data (``train/image`` + ``train/label``, or ``image`` + ``label``).
    out : Path
        Where the best model goes (``.keras``; its card is written next to it).
    val_dir : Path, optional
        Separate validation data in the same layout.
    val_ids : str, optional
        Hold these images of ``data_dir`` out for validation (``"20-24"``, ``"3,7"``).
    val_fraction : float
        Without ``val_dir``/``val_ids``: hold out this fraction of the images (the last
        ones in natural order, at least one when there are two or more).
    train_ids : str, optional
        Train only on these images of ``data_dir``.
    architecture : UNetConfig
        Network to build (ignored with ``init_from``: the initial model's is used).
    init_from : Path, optional
        Start from this model's weights and normalisation (transfer learning).
    freeze_encoder : bool
        With ``init_from``: keep the encoder and bottleneck weights fixed.
    epochs, steps : int
        ``epochs`` rounds of ``steps`` optimiser steps; validation after each round.
    batch_size, crop : int
        Random crops per step and their side in pixels (a multiple of ``2 ** depth``).
    learning_rate : float
        Initial Adam learning rate; it follows a cosine decay to 5 % over all steps.
    dice_weight : float
        Loss = binary cross-entropy + ``dice_weight`` * (1 - soft Dice of the edge class).
    patience : int
        Stop after this many epochs without a better validation loss.
    max_minutes : float, optional
        Stop after this much wall time (the best checkpoint so far is kept).
    seed : int
        Seeds weights, crops and augmentation; runs with the same seed repeat.
    deterministic : bool
        Ask TensorFlow for deterministic kernels (same seed, bit-identical weights).
        This switch is process-wide and cannot be undone, so it is off by default in the
        library and on by default in the command line.
    invert : bool
        Invert the contrast gray images (for bright cell walls): models see dark walls.
    augmentation : Augmentation
        Random transformations of the crops.
    command : str
        The command line that started the run, for the card.
    """

    data_dir: Path
    out: Path
    val_dir: Path | None = None
    val_ids: str | None = None
    val_fraction: float = 0.2
    train_ids: str | None = None
    architecture: UNetConfig = field(default_factory=UNetConfig)
    init_from: Path | None = None
    freeze_encoder: bool = False
    epochs: int = 50
    steps: int = 100
    batch_size: int = 8
    crop: int = 256
    learning_rate: float = 1e-3
    dice_weight: float = 1.0
    patience: int = 10
    max_minutes: float | None = None
    seed: int = 0
    deterministic: bool = False
    invert: bool = False
    augmentation: Augmentation = field(default_factory=Augmentation)
    command: str = ""

    def __post_init__(self) -> None:
        for name in ("epochs", "steps", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.val_dir is not None and self.val_ids is not None:
            raise ValueError("give either a validation folder or validation ids, not both")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.freeze_encoder and self.init_from is None:
            raise ValueError("freeze_encoder needs init_from: a fresh encoder cannot stay frozen")
        if Path(self.out).suffix != ".keras":
            raise ValueError(f"output model path {self.out} must end in .keras")


@dataclass(frozen=True)
class Progress:
    """One report from :func:`train`: after every step, and with ``validation`` after every epoch."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    validation: dict[str, float] | None = None
    improved: bool = False


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced: the best model's path, its card, and why training stopped."""

    model_path: Path
    card: ModelCard
    stopped: str


def train(config: TrainConfig, *, on_progress: Callable[[Progress], None] | None = None) -> TrainResult:
    """Train a U-Net as ``config`` says; return where the best model was saved.

    The model with the lowest validation loss (training loss when there is no
    validation data) is saved to ``config.out`` whenever it improves, so an interrupted
    run still leaves its best model.
    """
    started = time.monotonic()
    report = on_progress or (lambda progress: None)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    model, base_card = _initial_model(config)
    contrast = base_card.contrast_params() if base_card else _default_contrast()
    train_pairs, val_pairs = _load_data(config, contrast)
    multiple = UNetConfig.of_model(model).size_multiple
    if config.crop % multiple:
        raise ValueError(f"crop {config.crop} must be a multiple of {multiple} for this U-Net")
    if config.freeze_encoder:
        for layer in model.layers:
            if layer.name.startswith(("enc", "bottom")):
                layer.trainable = False

    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, config.epochs * config.steps, alpha=0.05
    )
    step_fn = _train_step(model, keras.optimizers.Adam(schedule), config)
    card = ModelCard(
        normalisation=contrast.as_dict(),
        dark_walls=True,
        training=_training_record(config, train_pairs, val_pairs, base_card),
        description=f"U-Net edge model trained on {Path(config.data_dir).name}",
    )
    batches = _Prefetched(
        random_batches(
            train_pairs, crop=config.crop, batch_size=config.batch_size, seed=config.seed, augmentation=config.augmentation
        )
    )
    try:
        stopped, step, epoch = _fit(model, step_fn, batches, card, val_pairs, config, report, started)
    finally:
        batches.close()
    card.training.update(
        steps_run=step, epochs_run=epoch, stopped=stopped, wall_seconds=round(time.monotonic() - started, 1)
    )
    _rewrite_card(config.out, card.training)
    _, saved_card = load_model(config.out)
    return TrainResult(Path(config.out), saved_card, stopped)


def _fit(model, step_fn, batches, card, val_pairs, config, report, started) -> tuple[str, int, int]:
    # The loop proper: train `steps` steps, validate, checkpoint the best, maybe stop.
    predictor = EdgePredictor(model, fold_batch_norm=False)
    total_steps = config.epochs * config.steps
    best, best_epoch, step = math.inf, 0, 0
    for epoch in range(1, config.epochs + 1):
        losses = []
        for _ in range(config.steps):
            images, edges = next(batches)
            losses.append(float(step_fn(tf.constant(images), tf.constant(edges))))
            step += 1
            report(Progress(step, total_steps, epoch, losses[-1]))
        train_loss = float(np.mean(losses))
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss became {train_loss} in epoch {epoch}; try a lower learning rate")
        validation = evaluate(predictor, val_pairs, config.dice_weight) if val_pairs else None
        score = validation["loss"] if validation else train_loss
        improved = score < best
        if improved:
            best, best_epoch = score, epoch
            card.metrics = {"train_loss": round(train_loss, 5), **(_prefixed(validation, "val_") if validation else {})}
            card.training.update(best_epoch=epoch, best_step=step)
            save_model(model, card, config.out)
        report(Progress(step, total_steps, epoch, train_loss, validation, improved))
        if epoch - best_epoch >= config.patience:
            return f"early stopping: no better validation loss for {config.patience} epochs", step, epoch
        if config.max_minutes is not None and time.monotonic() - started > 60 * config.max_minutes:
            return f"time limit of {config.max_minutes} minutes reached", step, epoch
    return "completed all epochs", step, config.epochs


def edge_loss(edges: tf.Tensor, probability: tf.Tensor, dice_weight: float = 1.0) -> tf.Tensor:
    """Return binary cross-entropy plus ``dice_weight`` times the soft-Dice loss of the edge class.

    Dice counts the thin wall class as much as the large interiors, which plain
    cross-entropy would let the network neglect.
    """
    probability = tf.clip_by_value(tf.cast(probability, tf.float32), 1e-7, 1.0 - 1e-7)
    bce = -tf.reduce_mean(edges * tf.math.log(probability) + (1.0 - edges) * tf.math.log(1.0 - probability))
    intersection = tf.reduce_sum(edges * probability)
    dice = (2.0 * intersection + 1.0) / (tf.reduce_sum(edges) + tf.reduce_sum(probability) + 1.0)
    return bce + dice_weight * (1.0 - dice)


def evaluate(
    predictor: EdgePredictor, pairs: Sequence[TrainingPair], dice_weight: float = 1.0
) -> dict[str, float]:
    """Return the mean loss, cross-entropy, Dice and pixel accuracy over whole ``pairs`` images."""
    totals: dict[str, list[float]] = {"loss": [], "bce": [], "dice": [], "accuracy": []}
    for pair in pairs:
        probability = predictor(pair.image)
        edges, p = pair.edges, np.clip(probability, 1e-7, 1 - 1e-7)
        bce = float(-np.mean(edges * np.log(p) + (1 - edges) * np.log(1 - p)))
        dice = float((2 * np.sum(edges * p) + 1) / (edges.sum() + p.sum() + 1))
        totals["bce"].append(bce)
        totals["dice"].append(dice)
        totals["loss"].append(bce + dice_weight * (1 - dice))
        totals["accuracy"].append(float(np.mean((p > 0.5) == (edges > 0.5))))
    return {name: round(float(np.mean(values)), 5) for name, values in totals.items()}


def _train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, config: TrainConfig):
    spec = tf.TensorSpec([config.batch_size, config.crop, config.crop, 1], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def step(images, edges):
        with tf.GradientTape() as tape:
            probability = model(images, training=True)
            loss = edge_loss(edges, probability, config.dice_weight)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step


def _initial_model(config: TrainConfig) -> tuple[keras.Model, ModelCard | None]:
    if config.init_from is None:
        return build_unet(config.architecture), None
    model, card = load_model(config.init_from)
    if UNetConfig.of_model(model).classes != 1:
        raise ValueError(
            f"{config.init_from} is a three-class model (interior, wall, background); fine-tune it with "
            "`python -m cellpipe.unet.train_mix --init-from` instead of the edge-model trainer"
        )
    return model, card


def _default_contrast():
    from cellpipe.preprocess import ContrastParams

    return ContrastParams()


def _load_data(config: TrainConfig, contrast) -> tuple[list[TrainingPair], list[TrainingPair]]:
    listed = {name: (name, image, label) for name, image, label in list_pairs(config.data_dir)}
    try:
        if config.val_dir is None:
            train_names, val_names = split_names(list(listed), val_ids=config.val_ids, val_fraction=config.val_fraction)
            val_items = [listed[name] for name in val_names]
        else:
            train_names, val_items = list(listed), list_pairs(config.val_dir)
        if config.train_ids:
            wanted = parse_ids(config.train_ids)
            if missing := [name for name in wanted if name not in listed]:
                raise ValueError(f"training ids {missing} name no image/label pair")
            if held_out := [name for name in wanted if name not in train_names]:
                raise ValueError(f"training ids {held_out} are held out for validation")
            train_names = [name for name in train_names if name in set(wanted)]
    except ValueError as error:
        raise ValueError(f"{error} in {config.data_dir}") from error

    def load(items):
        return [load_pair(*item, contrast, invert=config.invert) for item in items]

    return load([listed[name] for name in train_names]), load(val_items)


def _training_record(
    config: TrainConfig, train_pairs: Sequence[TrainingPair], val_pairs: Sequence[TrainingPair], base: ModelCard | None
) -> dict[str, Any]:
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in dataclasses.asdict(config).items()
        if k not in ("architecture", "augmentation", "command")
    }
    return {
        "command": config.command,
        "data": str(Path(config.data_dir).resolve()),
        "train_images": [p.name for p in train_pairs],
        "validation_data": str(Path(config.val_dir).resolve()) if config.val_dir else "held out of data",
        "validation_images": [p.name for p in val_pairs],
        "initial_model": {"path": str(config.init_from), "description": base.description} if base else None,
        "settings": settings,
        "augmentation": dataclasses.asdict(config.augmentation),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
    }


def _prefixed(values: dict[str, float], prefix: str) -> dict[str, float]:
    return {prefix + k: v for k, v in values.items()}


def _rewrite_card(model_path: Path, training: dict[str, Any]) -> None:
    path = card_path(model_path)
    values = json.loads(path.read_text())
    values["training"] = {**values.get("training", {}), **training}
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps(values, indent=2) + "\n")
    os.replace(scratch, path)


class _Prefetched:
    """Augment the next batches on a second thread while TensorFlow trains on this one.

    One producer keeps the sequence of batches identical from run to run.
    """

    def __init__(self, batches: Iterator, depth: int = 2) -> None:
        self._buffer: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(batches,), daemon=True, name="augmentation")
        self._thread.start()

    def _produce(self, batches: Iterator) -> None:
        for batch in batches:
            while not self._stop.is_set():
                try:
                    self._buffer.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set():
                return

    def __next__(self):
        return self._buffer.get()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


if __name__ == "__main__":  # the entry point of cloud training jobs: same options as `cellpipe model train`
    from cellpipe.cli.commands_model import train_main

    train_main()
