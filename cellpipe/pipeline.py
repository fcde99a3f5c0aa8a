"""One image end to end: raw pixels → edge probability → labels → per-cell statistics.

This is the function that ``cellpipe segment``, the Luigi batch and the Azure ML
scoring script share, so the three can never disagree on what "segment an image" means.

>>> from cellpipe.io import read_image
>>> from cellpipe.pipeline import CellSegmenter
>>> segmenter = CellSegmenter()               # the shipped default model  # doctest: +SKIP
>>> result = segmenter(read_image("foam.png"))                             # doctest: +SKIP
>>> result.n_cells, result.cells["area"].mean()                            # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cellpipe.measure import regionprops_table
from cellpipe.segment import SegmentParams, segment_edges
from cellpipe.views import check_views

#: Accepted values of :attr:`PipelineParams.invert`.
INVERT_CHOICES = ("auto", "true", "false")


@dataclass(frozen=True)
class PipelineParams:
    """Parameters of :class:`CellSegmenter` that are not part of the model.

    Attributes
    ----------
    invert : {"auto", "true", "false"}
        Whether to invert the contrast gray image before prediction, so that its cell
        walls are as dark or bright as the model expects (EM-trained models expect dark
        walls; foam SEM has bright ones). ``"auto"`` decides per image with
        :func:`cellpipe.preprocess.guess_invert`. Default ``"auto"``.
    segment : SegmentParams
        Binarisation, markers, minimum cell area (see :func:`cellpipe.segment.segment_edges`).
    views : {1, 2, 4, 8}
        Test-time augmentation: edge maps of this many mirrored/rotated views of the
        image are averaged (see :func:`cellpipe.unet.predict_edges`). Each view costs
        one prediction. Default 1.
    tile, overlap, batch_size : int
        Tiled inference (see :func:`cellpipe.unet.predict_edges`). They change speed and
        memory, not results beyond float rounding, so they are not part of
        :meth:`as_dict`.
    """

    invert: str = "auto"
    segment: SegmentParams = field(default_factory=SegmentParams)
    views: int = 1
    tile: int = 512
    overlap: int = 32
    batch_size: int = 2

    def __post_init__(self) -> None:
        invert = str(self.invert).lower()
        if invert not in INVERT_CHOICES:
            raise ValueError(f"invert must be one of {INVERT_CHOICES}, got {self.invert!r}")
        object.__setattr__(self, "invert", invert)
        check_views(self.views)

    def as_dict(self) -> dict[str, Any]:
        """Return the parameters that decide the result (JSON-serialisable)."""
        return {"invert": self.invert, "segment": self.segment.as_dict(), "views": self.views}

    @classmethod
    def from_dict(cls, parameters: Mapping[str, Any]) -> "PipelineParams":
        """Return the parameters whose :meth:`as_dict` is ``parameters``.

        Dicts stored before views or merging existed lack those keys: they were made
        with one view and without merging.
        """
        return cls(
            invert=parameters["invert"],
            segment=SegmentParams(**{"merge_threshold": 0.0, **parameters["segment"]}),
            views=parameters.get("views", 1),
        )


@dataclass
class CellResult:
    """What :class:`CellSegmenter` found in one image.

    Attributes
    ----------
    labels : ndarray of int32
        0 on walls and background, 1..N one label per cell.
    cells : dict of str to ndarray
        Per-cell statistics, :func:`cellpipe.measure.regionprops_table` columns.
    edge_probability : ndarray of float32
        The U-Net output, 1 on cell walls.
    inverted : bool
        Whether the image was inverted before prediction.
    timings : dict of str to float
        Seconds spent in each stage: ``contrast``, ``predict``, ``segment``, ``measure``.
    """

    labels: np.ndarray
    cells: dict[str, np.ndarray]
    edge_probability: np.ndarray
    inverted: bool
    timings: dict[str, float]

    @property
    def n_cells(self) -> int:
        """Return the number of cells found."""
        return int(self.cells["label"].size)


class CellSegmenter:
    """Segments images with one U-Net; loads the model once and reuses it.

    Parameters
    ----------
    model_path : path, optional
        ``.keras`` model with its JSON card next to it; ``None`` is the shipped default.
    params : PipelineParams, optional
        Default ``PipelineParams()``.

    Attributes
    ----------
    model_path : Path
        Resolved location of the model file.
    card : cellpipe.unet.ModelCard
        How the model was built and how to feed it.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, params: PipelineParams | None = None) -> None:
        # TensorFlow is imported here, not at module import, so that code which only
        # measures or stores cells does not pay for it.
        from cellpipe.unet import DEFAULT_MODEL_PATH, EdgePredictor, load_model

        self.params = params or PipelineParams()
        path = Path(model_path) if model_path else DEFAULT_MODEL_PATH
        self.model_path = path / "model.keras" if path.is_dir() else path
        model, self.card = load_model(self.model_path)
        self._predictor = EdgePredictor(model)

    @property
    def model_sha256(self) -> str:
        """Return the sha256 of the model file: the model's identity in the database."""
        return file_sha256(self.model_path)

    def with_params(self, params: PipelineParams) -> "CellSegmenter":
        """Return a segmenter sharing this one's model but using ``params``."""
        clone = object.__new__(CellSegmenter)
        clone.__dict__.update(self.__dict__)
        clone.params = params
        return clone

    def __call__(self, image: np.ndarray) -> CellResult:
        """Return the cells of ``image`` (2-D, as read by :func:`cellpipe.io.read_image`)."""
        from cellpipe.preprocess import guess_invert
        from cellpipe.unet import model_input

        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D gray image, got shape {image.shape}")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if self.params.invert == "auto":
            inverted = guess_invert(image) == self.card.dark_walls
        else:
            inverted = self.params.invert == "true"
        network_input = model_input(image, self.card, invert=inverted)
        timings["contrast"] = _lap(started)

        started = time.perf_counter()
        edge_probability = self._predictor(
            network_input,
            tile=self.params.tile,
            overlap=self.params.overlap,
            batch_size=self.params.batch_size,
            views=self.params.views,
        )
        np.clip(edge_probability, 0.0, 1.0, out=edge_probability)
        timings["predict"] = _lap(started)

        started = time.perf_counter()
        labels = segment_edges(edge_probability, self.params.segment)
        timings["segment"] = _lap(started)

        started = time.perf_counter()
        cells = regionprops_table(labels, intensity_image=image)
        timings["measure"] = _lap(started)
        return CellResult(labels, cells, edge_probability, bool(inverted), timings)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lap(started: float) -> float:
    return time.perf_counter() - started


__all__ = [
    "CellResult",
    "CellSegmenter",
    "PipelineParams",
    "file_sha256",
]
