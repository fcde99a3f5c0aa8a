"""The U-Net edge model: its architecture, its card, and saving and loading both.

A model lives in two files side by side: ``NAME.keras`` (Keras 3 weights and graph) and
``NAME.json``, the model card that says how the model was built, how its input must be
prepared, and how it was trained (in the spirit of CSBDeep's ``config.json``). The
card is what lets ``cellpipe segment`` feed an image to a model it did not train.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
from keras import layers

from cellpipe import __version__
from cellpipe.shipped import model_file

#: The model shipped with cellpipe as its default (``model.keras`` + ``model.json``).
DEFAULT_MODEL_PATH = model_file(None)

CARD_FORMAT = 1
#: Name of the output layer of a three-class U-Net (a one-class U-Net's is ``edge_probability``).
CLASS_OUTPUT = "class_probability"


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a cellpipe U-Net.

    Attributes
    ----------
    depth : int
        Number of 2x2 max-pooling steps. Inputs must have sides that are multiples of
        ``2 ** depth`` (tiled inference pads for you).
    base_filters : int
        Filters of the first level; each level down doubles them.
    batch_norm : bool
        Batch normalisation after every 3x3 convolution.
    dropout : float
        Dropout rate after the bottleneck block (0 disables it).
    max_filters : int or None
        Cap on the filters of any level (``None``: no cap). A cap lets a deeper U-Net,
        which sees more context, keep the parameter count of a shallower one.
    classes : {1, 3}
        1: one sigmoid map, the probability of a cell wall (the edge model). 3: a
        softmax over cell interior, wall and background (channels in the order of
        :mod:`cellpipe.unet.targets`), for images where some pixels belong to no cell.
    """

    depth: int = 4
    base_filters: int = 16
    batch_norm: bool = True
    dropout: float = 0.0
    max_filters: int | None = None
    classes: int = 1

    def __post_init__(self) -> None:
        if self.classes not in (1, 3):
            raise ValueError(f"U-Net classes must be 1 (edges) or 3 (interior, wall, background), got {self.classes}")
        if not 1 <= self.depth <= 8:
            raise ValueError(f"U-Net depth must be between 1 and 8, got {self.depth}")
        if self.base_filters < 1:
            raise ValueError(f"U-Net base_filters must be positive, got {self.base_filters}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"U-Net dropout must be in [0, 1), got {self.dropout}")
        if self.max_filters is not None and self.max_filters < self.base_filters:
            raise ValueError(
                f"U-Net max_filters ({self.max_filters}) must be at least base_filters ({self.base_filters})"
            )
        if self.max_filters is not None and self.max_filters >= self.base_filters * 2**self.depth:
            # A cap no level reaches is no cap: one architecture, one description.
            object.__setattr__(self, "max_filters", None)

    @property
    def size_multiple(self) -> int:
        """Return the number that input heights and widths must be multiples of."""
        return 2**self.depth

    def filters_at(self, level: int) -> int:
        """Return the number of filters at ``level`` (0 = full resolution)."""
        filters = self.base_filters * 2**level
        return filters if self.max_filters is None else min(filters, self.max_filters)

    def as_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "UNetConfig":
        """Return the configuration stored by :meth:`as_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown U-Net architecture keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def of_model(cls, model: keras.Model) -> "UNetConfig":
        """Return the configuration of a model made by :func:`build_unet`.

        Raises
        ------
        ValueError
            When ``model`` was not built by :func:`build_unet`.
        """
        names = {layer.name: layer for layer in model.layers}
        if "enc0_conv1" not in names:
            raise ValueError(f"model {model.name!r} was not built by cellpipe.unet.build_unet")
        depth = sum(1 for name in names if name.startswith("enc") and name.endswith("_pool"))
        dropout = names["bottom_dropout"].rate if "bottom_dropout" in names else 0.0
        base = names["enc0_conv1"].filters
        bottom = names["bottom_conv1"].filters
        classes = names[CLASS_OUTPUT].filters if CLASS_OUTPUT in names else 1
        return cls(
            depth=depth,
            base_filters=base,
            batch_norm="enc0_conv1_bn" in names,
            dropout=float(dropout),
            max_filters=None if bottom == base * 2**depth else bottom,
            classes=classes,
        )


def build_unet(
    config: UNetConfig | None = None,
    *,
    input_size: tuple[int, int] | None = None,
    name: str = "cellpipe_unet",
) -> keras.Model:
    """Return a U-Net that maps a contrast gray image to an edge-probability or class map.

    Input: ``(batch, height, width, 1)`` float32 in [0, 1] with dark cell walls.
    Output: ``(batch, height, width, 1)`` sigmoid probability that a pixel is a cell wall,
    or with ``config.classes == 3`` ``(batch, height, width, 3)`` softmax probabilities of
    cell interior, wall and background.

    Parameters
    ----------
    config : UNetConfig, optional
        Architecture; the default is a depth-4, 16-filter U-Net with batch norm.
    input_size : (int, int), optional
        Fix the spatial input size (useful to count FLOPs); ``None`` accepts any size
        that is a multiple of ``config.size_multiple``.
    name : str
        Keras model name.

    Examples
    --------
    >>> model = build_unet(UNetConfig(depth=2, base_filters=4))
    >>> model.output_shape
    (None, None, None, 1)
    """
    config = config or UNetConfig()
    height, width = input_size if input_size is not None else (None, None)
    inputs = keras.Input((height, width, 1), name="contrast_gray")
    x = inputs
    skips = []
    for level in range(config.depth):
        x = _conv_block(x, config.filters_at(level), config.batch_norm, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = _conv_block(x, config.filters_at(config.depth), config.batch_norm, "bottom")
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="bottom_dropout")(x)
    for level in reversed(range(config.depth)):
        x = layers.Conv2DTranspose(config.filters_at(level), 2, strides=2, name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([skips[level], x])
        x = _conv_block(x, config.filters_at(level), config.batch_norm, f"dec{level}")
    if config.classes == 1:
        outputs = layers.Conv2D(1, 1, activation="sigmoid", name="edge_probability")(x)
    else:
        outputs = layers.Conv2D(config.classes, 1, activation="softmax", name=CLASS_OUTPUT)(x)
    return keras.Model(inputs, outputs, name=name)


def _conv_block(x, filters: int, batch_norm: bool, block: str):
    # Layer names are part of the contract: of_model() and fold_batch_norm() rely on them.
    for i in (1, 2):
        conv = f"{block}_conv{i}"
        if batch_norm:
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=conv)(x)
            # momentum 0.9: moving statistics settle within the few hundred steps of a short run.
            x = layers.BatchNormalization(momentum=0.9, name=f"{conv}_bn")(x)
            x = layers.Activation("relu", name=f"{conv}_relu")(x)
        else:
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=conv)(x)
    return x


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """Return an inference copy of ``model`` with every batch norm folded into its convolution.

    The copy has no BatchNormalization layers and no dropout; each 3x3 convolution
    carries a bias and a fused ReLU, which TensorFlow runs as one oneDNN/cuDNN kernel.
    Its predictions equal ``model(x, training=False)`` up to float rounding. The copy
    does not follow later changes to ``model``'s weights.
    """
    config = UNetConfig.of_model(model)
    if not config.batch_norm and config.dropout == 0:
        return model
    folded = build_unet(dataclasses.replace(config, batch_norm=False, dropout=0.0), name=f"{model.name}_folded")
    source = {layer.name: layer for layer in model.layers}
    for layer in folded.layers:
        if not layer.weights:
            continue
        weights = source[layer.name].get_weights()
        norm = source.get(f"{layer.name}_bn")
        if norm is not None:
            weights = _folded_weights(weights, norm)
        layer.set_weights(weights)
    return folded


def _folded_weights(conv_weights: list[np.ndarray], norm: layers.BatchNormalization) -> list[np.ndarray]:
    kernel = conv_weights[0].astype(np.float64)
    bias = conv_weights[1].astype(np.float64) if len(conv_weights) > 1 else np.zeros(kernel.shape[-1])
    def value(variable, default):
        return default if variable is None else np.asarray(keras.ops.convert_to_numpy(variable), np.float64)

    gamma = value(norm.gamma, np.ones_like(bias))
    beta = value(norm.beta, np.zeros_like(bias))
    mean = value(norm.moving_mean, None)
    scale = gamma / np.sqrt(value(norm.moving_variance, None) + norm.epsilon)
    return [(kernel * scale).astype(np.float32), (beta + (bias - mean) * scale).astype(np.float32)]


def forward_flops(config: UNetConfig, height: int, width: int) -> int:
    """Return the floating-point operations of one forward pass on a ``height x width`` input.

    Counts 2 FLOPs per multiply-accumulate of every convolution and transposed
    convolution (biases, batch norm, activations and pooling are under 1 % and ignored).
    """
    model = build_unet(config, input_size=(height, width))
    flops = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2DTranspose):
            _, h, w, c_in = layer.input.shape
            flops += 2 * h * w * c_in * int(np.prod(layer.kernel_size)) * layer.filters
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            flops += 2 * h * w * c_out * int(np.prod(layer.kernel_size)) * c_in
    return int(flops)


@dataclass
class ModelCard:
    """What a model is and how to feed it: saved as JSON next to the ``.keras`` file.

    Attributes
    ----------
    architecture : UNetConfig
        How the network was built.
    normalisation : dict
        ``cellpipe.preprocess.ContrastParams`` fields used to make the contrast gray
        input, at training and therefore at inference.
    dark_walls : bool
        The model expects cell walls darker than cell interiors (as in EM); images
        with bright walls must be inverted before prediction.
    any_polarity : bool
        The model was trained on both polarities (random inversion): it is fed every
        image as it is, and ``dark_walls`` does not apply.
    scale : dict
        Cell size the model was trained at: ``cell_diameter_px`` (median equivalent
        diameter every training image was rescaled to), ``augmentation`` (the range of
        relative zoom around it) and ``sources`` (each source's native median diameter).
        Empty for models trained at native resolution: inference then never resamples.
    postprocessing : dict
        Tuned :class:`cellpipe.segment.SegmentParams` fields for this model (written by
        ``cellpipe model tune``); a flag, environment variable or ``luigi.cfg`` entry
        overrides each. Empty: the library's defaults.
    postprocessing_tuned_on : dict
        What ``postprocessing`` was chosen on: folders, images, scores, grid, command.
    confidence : dict
        Calibration of the per-cell confidence (:class:`cellpipe.confidence.Calibration`:
        ``features``, ``coefficients``, ``intercept``) with the ROC AUC it reached per
        held-out source (``roc_auc``) and what it was fitted on, written by
        ``benchmarks/bench_confidence.py --write``. Empty: an uncalibrated score.
    training : dict
        Training data, held-out ids, exact command, steps, epochs, wall time, seed, ...
    finetune : dict
        For a model made by ``cellpipe model finetune``: the corrections it was tuned on
        and the before/after scores on the held-out ones (:mod:`cellpipe.finetune`).
    promotions : list of dict
        Each ``cellpipe model promote`` of this model: when, forced or not, the comparison
        (:mod:`cellpipe.promotion`).
    metrics : dict
        Held-out metrics measured at the end of training (BCE, Dice, pixel accuracy, ...).
    description : str
        Free text for humans.
    created : str
        ISO 8601 time the card was written.
    versions : dict
        cellpipe, Keras and TensorFlow versions that wrote the model.
    """

    architecture: UNetConfig = field(default_factory=UNetConfig)
    normalisation: dict[str, Any] = field(default_factory=dict)
    dark_walls: bool = True
    any_polarity: bool = False
    scale: dict[str, Any] = field(default_factory=dict)
    postprocessing: dict[str, Any] = field(default_factory=dict)
    postprocessing_tuned_on: dict[str, Any] = field(default_factory=dict)
    confidence: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def contrast_params(self):
        """Return the :class:`cellpipe.preprocess.ContrastParams` the model was trained with."""
        from cellpipe.preprocess import ContrastParams

        return ContrastParams.from_dict(self.normalisation)

    @property
    def cell_diameter(self) -> float | None:
        """Return the median cell diameter (pixels) the model was trained at, or None."""
        value = self.scale.get("cell_diameter_px")
        return float(value) if value else None

    def as_dict(self) -> dict[str, Any]:
        """Return the card as a JSON-ready dict."""
        values = dataclasses.asdict(self)
        values["architecture"] = self.architecture.as_dict()
        return {"format": CARD_FORMAT, **values}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelCard":
        """Return the card stored by :meth:`as_dict`."""
        values = dict(values)
        values.pop("format", None)
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: values.pop(k) for k in list(values) if k not in known}
        card = cls(**{**values, "architecture": UNetConfig.from_dict(values.get("architecture", {}))})
        if extra:
            card.training = {**card.training, "unknown_card_fields": extra}
        return card


def card_path(model_path: str | os.PathLike[str]) -> Path:
    """Return the path of the card that belongs to ``model_path`` (same name, ``.json``)."""
    return Path(model_path).with_suffix(".json")


def save_model(model: keras.Model, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (``.keras``) and ``card`` next to it; return ``path``.

    Both files are written to temporary names first and then renamed, so a checkpoint
    interrupted half-way never leaves a truncated model behind.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path {path} must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    card = dataclasses.replace(
        card,
        architecture=UNetConfig.of_model(model),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions={"cellpipe": __version__, "keras": keras.__version__, "tensorflow": _tf_version()},
    )
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".saving-") as scratch:
        model_tmp = Path(scratch) / path.name
        card_tmp = Path(scratch) / card_path(path).name
        model.save(model_tmp)
        card_tmp.write_text(json.dumps(card.as_dict(), indent=2, sort_keys=False) + "\n")
        os.replace(model_tmp, path)
        os.replace(card_tmp, card_path(path))
    return path


def load_model(path: str | os.PathLike[str] | None = None) -> tuple[keras.Model, ModelCard]:
    """Return the model saved at ``path`` and its card; ``None`` loads the shipped default.

    ``path`` may also be a folder holding ``model.keras`` or the name of a shipped model
    (:func:`cellpipe.shipped.model_file`).

    Raises
    ------
    FileNotFoundError
        When the ``.keras`` file or its ``.json`` card is missing.
    ValueError
        When the card cannot be read.
    """
    path = model_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"no U-Net model at {path}; train one with `cellpipe model train`")
    card_file = card_path(path)
    if not card_file.is_file():
        raise FileNotFoundError(
            f"model {path} has no card {card_file.name} next to it; the card says how to "
            "normalise inputs, so cellpipe cannot use the model without it"
        )
    try:
        card = ModelCard.from_dict(json.loads(card_file.read_text()))
    except (ValueError, TypeError) as error:
        raise ValueError(f"model card {card_file} is not a valid cellpipe card: {error}") from error
    model = keras.saving.load_model(path, compile=False)
    return model, card


def _tf_version() -> str:
    try:
        import tensorflow as tf

        return tf.__version__
    except ImportError:  # a non-TensorFlow Keras backend
        return ""
