"""The tiny U-Net of the batch tests, trained once per session (a pytest plugin).

Use it from a test module with ``pytest_plugins = ["tiny_model"]`` and ask for the
``tiny_model`` fixture: the path of a depth-2 U-Net trained for a few seconds on
synthetic foam and tissue, good enough to segment the synthetic samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Return a depth-2 U-Net trained for a few seconds on synthetic foam and tissue."""
    import keras

    from cellpipe.synthetic import synthetic_cells
    from cellpipe.unet import ModelCard, UNetConfig, build_unet, model_input, save_model

    keras.utils.set_random_seed(0)
    card = ModelCard(dark_walls=True)
    inputs, edges = [], []
    for i in range(8):
        kind = ("foam", "tissue")[i % 2]
        sample = synthetic_cells((128, 128), kind=kind, seed=100 + i, mean_cell_diameter=20)
        inputs.append(model_input(sample.image, card, invert=kind == "foam"))
        edges.append(sample.edges)
    model = build_unet(UNetConfig(depth=2, base_filters=8, batch_norm=False))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    model.fit(np.stack(inputs)[..., None], np.stack(edges)[..., None], batch_size=4, epochs=40, verbose=0)
    return save_model(model, card, tmp_path_factory.mktemp("model") / "tiny.keras")


def model_copy(model: Path, folder: Path, **card_fields) -> Path:
    """Return a copy of ``model`` in ``folder`` whose card has ``card_fields`` set (e.g. ``postprocessing``)."""
    import json
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    copy = Path(shutil.copy(model, folder / model.name))
    card = json.loads(model.with_suffix(".json").read_text())
    copy.with_suffix(".json").write_text(json.dumps({**card, **card_fields}, indent=2))
    return copy
