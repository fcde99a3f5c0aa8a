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

import dataclasses
import functools
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cellpipe.confidence import Calibration, cell_confidence
from cellpipe.measure import regionprops_table
from cellpipe.unet.targets import BACKGROUND, boundary_probability
from cellpipe.scale import (
    MAX_FACTOR,
    MIN_FACTOR,
    SCALE_SEARCHES,
    Measured,
    ScaleChoice,
    best_pass,
    labels_to_shape,
    maps_to_shape,
    resample,
    scale_factor,
    search_scale,
)
from cellpipe.segment import SegmentParams, segment_edges
from cellpipe.views import check_views

#: Most network passes of the earlier ("probes") scale search.
MAX_SCALE_PASSES = 3
DEFAULT_SCALE_PROBES = (0.5,)

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
    cell_diameter : float, optional
        Median cell diameter in pixels of the images, for a model with a training scale
        (its card's ``scale``): images are resampled so their cells match the model's.
        ``None`` (default): estimated per image (:mod:`cellpipe.scale`).
    scale_search : {"ladder", "probes"}
        How the cells' scale is estimated when no ``cell_diameter`` is given
        (:func:`cellpipe.scale.search_scale`). Default ``"ladder"``: when the native pass
        finds cells off the model's size, copies at 1/2, 1/4, 1/8 of the size (and twice
        it when the native pass found too few cells to trust) are predicted too.
        ``"probes"``: the earlier search (native, the size it asks for, ``scale_probes``),
        kept so that ``benchmarks/bench_scale.py`` can compare the two.
    scale_probes : tuple of float
        Extra factors of the ``"probes"`` search. Default ``(0.5,)``.
    tile, overlap, batch_size : int
        Tiled inference (see :func:`cellpipe.unet.predict_edges`). They change speed and
        memory, not results beyond float rounding, so they are not part of
        :meth:`as_dict`.
    """

    invert: str = "auto"
    segment: SegmentParams = field(default_factory=SegmentParams)
    views: int = 1
    cell_diameter: float | None = None
    scale_search: str = "ladder"
    scale_probes: tuple[float, ...] = (0.5,)
    tile: int = 512
    overlap: int = 32
    batch_size: int = 2

    def __post_init__(self) -> None:
        invert = str(self.invert).lower()
        if invert not in INVERT_CHOICES:
            raise ValueError(f"invert must be one of {INVERT_CHOICES}, got {self.invert!r}")
        object.__setattr__(self, "invert", invert)
        check_views(self.views)
        if self.cell_diameter is not None:
            if not self.cell_diameter > 0:
                raise ValueError(f"cell_diameter must be a positive number of pixels, got {self.cell_diameter!r}")
            object.__setattr__(self, "cell_diameter", float(self.cell_diameter))
        if self.scale_search not in SCALE_SEARCHES:
            raise ValueError(f"scale_search must be one of {SCALE_SEARCHES}, got {self.scale_search!r}")
        probes = tuple(float(p) for p in self.scale_probes)
        if not all(MIN_FACTOR <= p <= MAX_FACTOR for p in probes):
            raise ValueError(f"scale_probes must be factors in [{MIN_FACTOR}, {MAX_FACTOR}], got {self.scale_probes!r}")
        object.__setattr__(self, "scale_probes", probes)

    def as_dict(self) -> dict[str, Any]:
        """Return the parameters that decide the result (JSON-serialisable).

        ``cell_diameter`` appears only when given, so that parameters stored before it
        existed keep their hash.
        """
        values = {"invert": self.invert, "segment": self.segment.as_dict(), "views": self.views}
        if self.cell_diameter is not None:
            values["cell_diameter"] = self.cell_diameter
        if self.scale_search != "ladder":
            values["scale_search"] = self.scale_search
        if self.scale_probes != DEFAULT_SCALE_PROBES:
            values["scale_probes"] = list(self.scale_probes)
        return values

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
            cell_diameter=parameters.get("cell_diameter"),
            scale_search=parameters.get("scale_search", "ladder"),
            scale_probes=tuple(parameters.get("scale_probes", DEFAULT_SCALE_PROBES)),
        )


@dataclass
class CellResult:
    """What :class:`CellSegmenter` found in one image.

    Attributes
    ----------
    labels : ndarray of int32
        0 on walls and background, 1..N one label per cell.
    cells : dict of str to ndarray
        Per-cell statistics, :func:`cellpipe.measure.regionprops_table` columns, and
        ``confidence`` (:func:`cellpipe.confidence.cell_confidence`, calibrated by the
        model card's ``confidence`` where it has one).
    edge_probability : ndarray of float32
        The U-Net output, 1 on cell walls.
    inverted : bool
        Whether the image was inverted before prediction.
    timings : dict of str to float
        Seconds spent in each stage: ``contrast``, ``predict`` (every network pass, the
        scale estimate's included), ``segment``, ``measure``, ``confidence``.
    scale : cellpipe.scale.ScaleChoice
        The cell diameter and resampling factor the image was segmented at.
    background : ndarray of bool or None
        Pixels the model took for background (no cell); None for an edge model.
    """

    labels: np.ndarray
    cells: dict[str, np.ndarray]
    edge_probability: np.ndarray
    inverted: bool
    timings: dict[str, float]
    scale: ScaleChoice = field(default_factory=lambda: ScaleChoice(None, 1.0, "native"))
    background: np.ndarray | None = None

    @property
    def n_cells(self) -> int:
        """Return the number of cells found."""
        return int(self.cells["label"].size)


@dataclass
class Prediction:
    """What :meth:`CellSegmenter.predict` computed for one image, before per-cell statistics.

    Attributes
    ----------
    maps : ndarray of float32, shape (h, w, C)
        Network output at the scale it was predicted at (``scale.factor`` times the image).
    shape : (int, int)
        The image's own shape.
    scale : cellpipe.scale.ScaleChoice
    inverted : bool
    labels, edge_probability, background : ndarray
        As in :class:`CellResult`, at the image's own pixels.
    timings : dict of str to float
    """

    maps: np.ndarray
    shape: tuple[int, int]
    scale: ScaleChoice
    inverted: bool
    labels: np.ndarray
    edge_probability: np.ndarray
    background: np.ndarray | None
    timings: dict[str, float]


class CellSegmenter:
    """Segments images with one U-Net; loads the model once and reuses it.

    Parameters
    ----------
    model_path : path, optional
        ``.keras`` model with its JSON card next to it, its folder, or the name of a
        shipped model (``"generalist"``); ``None`` is the shipped default.
    params : PipelineParams, optional
        Default: ``PipelineParams()`` with the post-processing parameters tuned for the
        model (its card's ``postprocessing``), where it has them.

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
        from cellpipe.shipped import model_file
        from cellpipe.unet import EdgePredictor, load_model

        self.model_path = model_file(model_path)
        model, self.card = load_model(self.model_path)
        self.params = params or PipelineParams(segment=self.tuned_segment_params())
        self._predictor = EdgePredictor(model)

    def tuned_segment_params(self) -> SegmentParams:
        """Return the model card's tuned post-processing parameters (library defaults where it has none)."""
        return card_segment_params(self.card.postprocessing)

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
        """Return the cells of ``image`` (2-D, as read by :func:`cellpipe.io.read_image`).

        A model with a training scale (``card.scale``) sees the image resampled so that
        its cells have the training diameter: the given ``params.cell_diameter``, or the
        median cell of a first pass at native scale (more passes follow only when that is
        off by more than :data:`cellpipe.scale.RESAMPLE_TOLERANCE`: see
        :func:`cellpipe.scale.search_scale`). Labels are always at the image's own pixels.
        """
        prediction = self.predict(image)
        started = time.perf_counter()
        cells = regionprops_table(prediction.labels, intensity_image=np.asarray(image))
        prediction.timings["measure"] = _lap(started)
        started = time.perf_counter()
        cells["confidence"] = cell_confidence(prediction.labels, prediction.edge_probability, cells["label"],
                                              background=prediction.background,
                                              calibration=Calibration.from_card(self.card.confidence))
        prediction.timings["confidence"] = _lap(started)
        return CellResult(prediction.labels, cells, prediction.edge_probability, prediction.inverted,
                          prediction.timings, prediction.scale, prediction.background)

    def predict(self, image: np.ndarray) -> "Prediction":
        """Return the network maps and labels of ``image``, without per-cell statistics.

        :meth:`relabel` segments the same maps again with other post-processing
        parameters, without another network pass (what ``cellpipe model tune`` does).
        """
        from cellpipe.preprocess import guess_invert
        from cellpipe.unet import model_input

        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D gray image, got shape {image.shape}")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if self.params.invert == "auto":
            # A model trained on both polarities takes every image as it is.
            inverted = False if self.card.any_polarity else guess_invert(image) == self.card.dark_walls
        else:
            inverted = self.params.invert == "true"
        network_input = model_input(image, self.card, invert=inverted)
        timings["contrast"] = _lap(started)

        timings["predict"] = timings["segment"] = 0.0
        training_diameter = self.card.cell_diameter
        given = self.params.cell_diameter
        if training_diameter is None or given is not None:
            factor = scale_factor(given, training_diameter)
            scale = ScaleChoice(given, factor, "native" if training_diameter is None else "given")
            maps = self._maps(network_input, factor, timings)
            labels, background, edges = self._labels(maps, factor, image.shape, timings)
        else:
            # Predict at native scale and measure the cells found; when they are off the
            # model's size, search for it (cellpipe.scale.search_scale) and keep the pass
            # where the model saw its cells closest to the training size.
            results = {}

            def measure(factor: float) -> Measured:
                maps = self._maps(network_input, factor, timings)
                labels, background, edges = self._labels(maps, factor, image.shape, timings)
                results[factor] = (maps, labels, background, edges)
                return Measured.of_labels(factor, labels, min_area=self.params.segment.min_area)

            passes = search_scale(measure, training_diameter, min(image.shape), strategy=self.params.scale_search,
                                  probes=self.params.scale_probes, max_passes=MAX_SCALE_PASSES)
            best = best_pass(passes, training_diameter)
            factor, diameter = best.factor, best.diameter
            maps, labels, background, edges = results[factor]
            scale = ScaleChoice(diameter, factor, "estimated", len(passes))
        started = time.perf_counter()
        edges = maps_to_shape(edges, image.shape)
        background = None if background is None else labels_to_shape(background, image.shape)
        timings["segment"] += _lap(started)
        return Prediction(maps, image.shape, scale, bool(inverted), labels, edges, background, timings)

    def relabel(self, prediction: "Prediction", segment: SegmentParams) -> np.ndarray:
        """Return the labels of ``prediction``'s maps segmented with ``segment`` parameters."""
        timings = {"segment": 0.0}
        labels, _, _ = self._labels(prediction.maps, prediction.scale.factor, prediction.shape, timings, segment)
        return labels

    def _maps(self, network_input: np.ndarray, factor: float, timings: dict[str, float]) -> np.ndarray:
        started = time.perf_counter()
        maps = self._predictor.maps(
            resample(network_input, factor),
            tile=self.params.tile,
            overlap=self.params.overlap,
            batch_size=self.params.batch_size,
            views=self.params.views,
        )
        np.clip(maps, 0.0, 1.0, out=maps)
        timings["predict"] += _lap(started)
        return maps

    def _labels(self, maps: np.ndarray, factor: float, shape, timings: dict[str, float], segment=None):
        # Cells smaller than the model's size (factor > 1) are segmented where the model
        # saw them and the labels brought back by nearest neighbour; larger cells on
        # maps brought back to native pixels, so their outlines stay smooth.
        started = time.perf_counter()
        params = self.params.segment if segment is None else segment
        if factor > 1.0:
            params = dataclasses.replace(params, min_area=int(round(params.min_area * factor**2)))
        else:
            maps = maps_to_shape(maps, shape)
        edge_probability = boundary_probability(maps)
        background = None if maps.shape[-1] == 1 else maps[..., BACKGROUND] >= 0.5
        labels = segment_edges(edge_probability, params, background=background)
        if factor > 1.0:
            labels = labels_to_shape(labels, shape)
        timings["segment"] += _lap(started)
        # The edge map and the background stay at the scale they were segmented at: only
        # the pass that is kept brings them back to native pixels (in predict).
        return labels, background, edge_probability


def card_segment_params(postprocessing: Mapping[str, Any] | None) -> SegmentParams:
    """Return :class:`SegmentParams` from a card's ``postprocessing`` (defaults for missing fields)."""
    known = {f.name for f in dataclasses.fields(SegmentParams)}
    return SegmentParams(**{k: v for k, v in (postprocessing or {}).items() if k in known})


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
    "Prediction",
    "card_segment_params",
    "file_sha256",
]
