"""Train the generalist: a three-class U-Net on the whole training mix, to a time budget.

``python -m cellpipe.unet.train_mix --shared ../shared/data --out MODEL.keras`` (also
``cellpipe model train-generalist``) trains on the ``train`` split of every source of
:func:`cellpipe.unet.mix.default_sources`, validates on the ``val`` splits (each source
counts equally), keeps the checkpoint with the lowest validation loss, and never reads a
``test`` item. The learning rate follows a cosine decay over the wall-time budget, so a
run cut short by its budget still ends annealed, on a slow or a fast machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from cellpipe.pipeline import file_sha256
from cellpipe.preprocess import ContrastParams
from cellpipe.unet.infer import EdgePredictor
from cellpipe.unet.mix import ClassPair, MixAugmentation, Source, default_sources, load_item, mix_batches, normalised_view
from cellpipe.unet.model import ModelCard, UNetConfig, build_unet, card_path, load_model, save_model
from cellpipe.unet.targets import TRAINING_DIAMETER, WALL
from cellpipe.unet.train import _Prefetched, _rewrite_card


@dataclass(frozen=True)
class MixConfig:
    """A generalist training run; recorded in the card.

    Attributes
    ----------
    shared_data : Path
        Folder holding ``isbi2012/`` and ``nuclei/`` (``../shared/data``).
    out : Path
        Best checkpoint (``.keras`` + card).
    architecture : UNetConfig
        Network (``classes`` is forced to 3).
    max_steps : int
        Upper bound on optimiser steps.
    max_minutes : float
        Wall-time budget; the learning-rate schedule spans it.
    batch_size, crop : int
        Crops per step and their side.
    learning_rate : float
        Peak Adam learning rate (cosine decay to 5 %).
    dice_weight : float
        Loss = cross-entropy + ``dice_weight`` * (1 - soft Dice of the wall class).
    validate_every : int
        Steps between validations.
    seed : int
        Seeds weights and crops.
    init_from : Path, optional
        Start from this model's weights (fine-tuning).
    source_weights : dict, optional
        Sampling weight per source name, replacing that source's default weight
        (:func:`cellpipe.unet.mix.default_sources`); unnamed sources keep theirs.
    augmentation : MixAugmentation
        Crop augmentation.
    command : str
        Command line of the run.
    """

    shared_data: Path
    out: Path
    architecture: UNetConfig = field(default_factory=lambda: UNetConfig(depth=5, base_filters=16, max_filters=128, classes=3))
    max_steps: int = 100_000
    max_minutes: float = 60.0
    batch_size: int = 4
    crop: int = 256
    learning_rate: float = 2e-3
    dice_weight: float = 1.0
    validate_every: int = 200
    seed: int = 0
    init_from: Path | None = None
    source_weights: dict[str, float] = field(default_factory=dict)
    augmentation: MixAugmentation = field(default_factory=MixAugmentation)
    command: str = ""


def class_loss(one_hot: tf.Tensor, probability: tf.Tensor, dice_weight: float = 1.0) -> tf.Tensor:
    """Return mean cross-entropy plus ``dice_weight`` times the soft-Dice loss of the wall class."""
    probability = tf.clip_by_value(tf.cast(probability, tf.float32), 1e-7, 1.0)
    cross_entropy = -tf.reduce_mean(tf.reduce_sum(one_hot * tf.math.log(probability), axis=-1))
    wall, p_wall = one_hot[..., WALL], probability[..., WALL]
    dice = (2.0 * tf.reduce_sum(wall * p_wall) + 1.0) / (tf.reduce_sum(wall) + tf.reduce_sum(p_wall) + 1.0)
    return cross_entropy + dice_weight * (1.0 - dice)


def validation_loss(predictor: EdgePredictor, views: list[tuple[str, np.ndarray, np.ndarray]], dice_weight: float) -> dict[str, float]:
    """Return the mean loss per source of ``views`` (source, gray, one_hot), and their mean as ``"loss"``."""
    per_source: dict[str, list[float]] = {}
    for source, gray, one_hot in views:
        p = np.clip(predictor.maps(gray), 1e-7, 1.0)
        cross_entropy = float(-np.mean(np.sum(one_hot * np.log(p), axis=-1)))
        wall, p_wall = one_hot[..., WALL], p[..., WALL]
        dice = float((2 * np.sum(wall * p_wall) + 1) / (wall.sum() + p_wall.sum() + 1))
        per_source.setdefault(source, []).append(cross_entropy + dice_weight * (1 - dice))
    scores = {source: round(float(np.mean(values)), 5) for source, values in per_source.items()}
    scores["loss"] = round(float(np.mean(list(scores.values()))), 5)
    return scores


def train_generalist(config: MixConfig, *, on_progress: Callable[[str], None] = print) -> Path:
    """Train as ``config`` says; return the path of the best checkpoint."""
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    sources = with_weights(default_sources(config.shared_data), config.source_weights)
    train_pairs = [load_item(source, item) for source in sources for item in source.items("train")]
    val_pairs = [load_item(source, item) for source in sources for item in source.items("val")]
    val_views = [(pair.source, *normalised_view(pair)) for pair in val_pairs]
    on_progress(f"loaded {len(train_pairs)} training and {len(val_pairs)} validation images in {time.monotonic() - started:.0f} s")

    if config.init_from is not None:
        model, _ = load_model(config.init_from)
    else:
        model = build_unet(dataclasses.replace(config.architecture, classes=3))
    optimizer = keras.optimizers.Adam(config.learning_rate)
    learning_rate = optimizer.learning_rate  # a variable: the schedule below sets it every step
    image_spec = tf.TensorSpec([config.batch_size, config.crop, config.crop, 1], tf.float32)
    target_spec = tf.TensorSpec([config.batch_size, config.crop, config.crop, 3], tf.float32)

    @tf.function(input_signature=[image_spec, target_spec])
    def step(images, targets):
        with tf.GradientTape() as tape:
            loss = class_loss(targets, model(images, training=True), config.dice_weight)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    card = ModelCard(
        normalisation=_contrast_dict(),
        dark_walls=True,
        any_polarity=True,
        scale={
            "cell_diameter_px": TRAINING_DIAMETER,
            "augmentation": list(config.augmentation.scale_range),
            "sources": _diameters(train_pairs),
        },
        training=_record(config, sources),
        description="cellpipe generalist: three-class U-Net (interior, wall, background) on EM, nuclei, foam and tissue",
    )
    weights = {source.name: source.weight for source in sources}
    batches = _Prefetched(
        mix_batches(train_pairs, weights, crop=config.crop, batch_size=config.batch_size, seed=config.seed,
                    augmentation=config.augmentation)
    )
    predictor = EdgePredictor(model, fold_batch_norm=False)
    budget = 60.0 * config.max_minutes
    best, losses, stopped = math.inf, [], "step limit reached"
    try:
        for index in range(1, config.max_steps + 1):
            progress = min(1.0, (time.monotonic() - started) / budget)
            learning_rate.assign(config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))))
            images, targets = next(batches)
            losses.append(float(step(tf.constant(images), tf.constant(targets))))
            out_of_time = time.monotonic() - started >= budget
            if index % config.validate_every == 0 or out_of_time:
                scores = validation_loss(predictor, val_views, config.dice_weight)
                improved = scores["loss"] < best
                if improved:
                    best = scores["loss"]
                    card.metrics = {"train_loss": round(float(np.mean(losses[-config.validate_every:])), 5),
                                    "validation_loss": scores}
                    card.training.update(best_step=index)
                    save_model(model, card, config.out)
                on_progress(
                    f"step {index} lr {float(learning_rate.numpy()):.2e} train {np.mean(losses[-config.validate_every:]):.4f} "
                    f"val {scores} {'*' if improved else ''} {time.monotonic() - started:.0f} s"
                )
            if out_of_time:
                stopped = f"time budget of {config.max_minutes} minutes reached"
                break
    finally:
        batches.close()
    _rewrite_card(config.out, {"steps_run": index, "stopped": stopped,
                               "wall_seconds": round(time.monotonic() - started, 1),
                               "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU"})
    return Path(config.out)


def with_weights(sources: list[Source], weights: dict[str, float]) -> list[Source]:
    """Return ``sources`` with the sampling weights named in ``weights`` replaced."""
    unknown = set(weights) - {source.name for source in sources}
    if unknown:
        raise ValueError(f"no source named {', '.join(sorted(unknown))}; sources are {', '.join(s.name for s in sources)}")
    return [dataclasses.replace(source, weight=weights.get(source.name, source.weight)) for source in sources]


def parse_weight(text: str) -> tuple[str, float]:
    """Parse ``SOURCE=WEIGHT`` (the ``--weight`` option)."""
    name, sep, value = text.partition("=")
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if not sep or not name or weight < 0:
        raise argparse.ArgumentTypeError(f"expected SOURCE=WEIGHT with a weight >= 0, got {text!r}")
    return name, weight


def _contrast_dict() -> dict:
    return ContrastParams().as_dict()


def _diameters(pairs: list[ClassPair]) -> dict[str, dict[str, float]]:
    by_source: dict[str, list[float]] = {}
    for pair in pairs:
        by_source.setdefault(pair.source, []).append(pair.diameter)
    return {name: {"median_px": round(float(np.median(d)), 1), "min_px": round(min(d), 1), "max_px": round(max(d), 1)}
            for name, d in by_source.items()}


def _record(config: MixConfig, sources) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()
                if k not in ("architecture", "augmentation", "command")}
    parent = None
    if config.init_from is not None:
        parent_card = json.loads(card_path(config.init_from).read_text())
        parent = {"path": str(config.init_from), "sha256": file_sha256(config.init_from),
                  "command": parent_card.get("training", {}).get("command"),
                  "steps_run": parent_card.get("training", {}).get("steps_run"),
                  "best_step": parent_card.get("training", {}).get("best_step"),
                  "initial_model": parent_card.get("training", {}).get("initial_model")}
    return {
        "command": config.command,
        "initial_model": parent,
        "recipe": "cellpipe.unet.train_mix",
        "sources": {s.name: {"layout": s.layout, "root": str(s.root) if s.root else None, "weight": s.weight,
                             **{split: list(s.items(split)) for split in ("train", "val", "test")}} for s in sources},
        "test_items_read": False,
        "settings": settings,
        "augmentation": dataclasses.asdict(config.augmentation),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`train_generalist`."""
    parser = argparse.ArgumentParser(prog="python -m cellpipe.unet.train_mix", description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"), help="folder with isbi2012/ and nuclei/")
    parser.add_argument("--out", type=Path, required=True, help="best checkpoint (.keras)")
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--validate-every", type=int, default=200)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--max-filters", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-from", type=Path, default=None)
    parser.add_argument("--weight", type=parse_weight, action="append", default=[], metavar="SOURCE=WEIGHT",
                        help="sampling weight of one source (repeatable), e.g. isbi=0.5")
    args = parser.parse_args(argv)
    command = "python -m cellpipe.unet.train_mix " + shlex.join(sys.argv[1:] if argv is None else argv)
    config = MixConfig(
        shared_data=args.shared, out=args.out, max_minutes=args.max_minutes, max_steps=args.max_steps,
        batch_size=args.batch_size, crop=args.crop, learning_rate=args.learning_rate,
        validate_every=args.validate_every, seed=args.seed, init_from=args.init_from,
        source_weights=dict(args.weight),
        architecture=UNetConfig(depth=args.depth, base_filters=args.base_filters, max_filters=args.max_filters, classes=3),
        command=command,
    )
    try:
        train_generalist(config, on_progress=lambda line: print(line, flush=True))
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")


if __name__ == "__main__":
    main()
