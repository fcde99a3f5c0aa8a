"""The U-Net that predicts cell walls: build, train, save/load with a card, and tiled inference.

>>> from cellpipe.unet import load_model, model_input, predict_edges
>>> model, card = load_model()                                        # the shipped default
>>> edge_probability = predict_edges(model, model_input(image, card))  # doctest: +SKIP

Training lives in :mod:`cellpipe.unet.train` (``python -m cellpipe.unet.train DATA_DIR
--out MODEL.keras``, the same as ``cellpipe model train``).
"""

import importlib

# Names and the submodule that defines each. They are loaded on first use (PEP 562), so
# that the TensorFlow-free parts of this package (targets, data, mix) can be imported by
# code that must not pay for TensorFlow: the tuning, the dataset check, the pipeline's
# module import.
_EXPORTS = {
    "EdgePredictor": "infer",
    "model_input": "infer",
    "predict_edges": "infer",
    "DEFAULT_MODEL_PATH": "model",
    "ModelCard": "model",
    "UNetConfig": "model",
    "build_unet": "model",
    "card_path": "model",
    "fold_batch_norm": "model",
    "forward_flops": "model",
    "load_model": "model",
    "save_model": "model",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "DEFAULT_MODEL_PATH",
    "EdgePredictor",
    "ModelCard",
    "UNetConfig",
    "build_unet",
    "card_path",
    "fold_batch_norm",
    "forward_flops",
    "load_model",
    "model_input",
    "predict_edges",
    "save_model",
]
