"""The U-Net that predicts cell walls: build, train, save/load with a card, and tiled inference.

>>> from cellpipe.unet import load_model, model_input, predict_edges
>>> model, card = load_model()                                        # the shipped default
>>> edge_probability = predict_edges(model, model_input(image, card))  # doctest: +SKIP

Training lives in :mod:`cellpipe.unet.train` (``python -m cellpipe.unet.train DATA_DIR
--out MODEL.keras``, the same as ``cellpipe model train``).
"""

from cellpipe.unet.infer import EdgePredictor, model_input, predict_edges
from cellpipe.unet.model import (
    DEFAULT_MODEL_PATH,
    ModelCard,
    UNetConfig,
    build_unet,
    card_path,
    fold_batch_norm,
    forward_flops,
    load_model,
    save_model,
)

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
