"""Scoring script of the cellpipe web service, packaged with the model (Azure ML ``score.py``).

The Azure ML inference server (``azmlinfsrv``, also what ACI and managed online endpoints
run) imports this file, calls :func:`init` once and :func:`run` per ``POST /score``::

    azmlinfsrv --entry_script DIR/score.py --model_dir DIR/model --port 5001

Requests (JSON bodies)
----------------------
One image::

    {"image": "<base64 PNG, TIFF or JPEG>", "invert": "auto"}
    → {"n_cells": N, "cells": [{"label": 1, "centroid-0": ..., "centroid-1": ..., "area": ..., ...}, ...],
       "height": H, "width": W, "inverted": false, "seconds": 0.12}

A batch (the contract of the original service): every image under a container URL is
segmented and its label TIFF, per-cell CSV and overlay PNG are written to a result container::

    {"container_url": "az://images/plates" | "https://ACCOUNT.blob.core.windows.net/images?SAS",
     "prefix": "2024-05-01/", "count": 10, "result_url": "az://results/plates", "overlay": true}
    → {"result_url": "...", "n_images": 10, "n_failed": 0,
       "images": [{"name": "plates/2024-05-01/a.png", "n_cells": 312, "results": [...]}, ...]}

``prefix`` is added to the container URL's own prefix; ``count`` caps how many images (in
name order) are read; ``result_url`` defaults to container ``results`` of the same account,
under the input's prefix. Blobs are opened with the service's credentials
(``AZURE_STORAGE_CONNECTION_STRING``, account key or SAS variables, else its managed
identity: see :mod:`cellpipe.azure.auth`).

A bad request gets an error JSON ``{"error": "..."}`` with status 400 (malformed, not an
image, too many pixels), 413 (body too large) or 502 (storage failed); :func:`run` never
raises.

Limits (environment variables of the service, read by :func:`init`)
--------------------------------------------------------------------
``CELLPIPE_SCORE_MAX_REQUEST_BYTES`` (default 64 MiB) request body and each batch blob;
``CELLPIPE_SCORE_MAX_PIXELS`` (default 8192 x 8192) pixels of one image;
``CELLPIPE_SCORE_MAX_IMAGES`` (default 1000) images of one batch request.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, NamedTuple

try:  # inside the inference server: raw HTTP access, so the body size is checked before it is read
    from azureml_inference_server_http.api.aml_request import rawhttp
    from azureml_inference_server_http.api.aml_response import AMLResponse
except ImportError:  # plain Python (tests, notebooks): run() takes the body itself
    AMLResponse = None

    def rawhttp(func):
        return func


logger = logging.getLogger("cellpipe.score")

DEFAULT_RESULT_CONTAINER = "results"
_CONTENT_TYPES = {".tif": "image/tiff", ".csv": "text/csv", ".png": "image/png"}


class Limits(NamedTuple):
    """Largest request the service accepts.

    (Not a dataclass: the inference server imports this file without registering it in
    ``sys.modules``, which dataclasses need.)
    """

    max_request_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 8192 * 8192
    max_images: int = 1000

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "Limits":
        """Return the limits set by ``CELLPIPE_SCORE_MAX_*`` variables, defaults for the others."""
        values = {}
        for name in ("max_request_bytes", "max_pixels", "max_images"):
            text = environ.get(f"CELLPIPE_SCORE_{name.upper()}", "").strip()
            if text:
                values[name] = int(text)
                if values[name] < 1:
                    raise ValueError(f"CELLPIPE_SCORE_{name.upper()} must be >= 1, got {text}")
        return cls(**values)


class RequestError(Exception):
    """A request the service refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_service: dict[str, Any] = {}


def init() -> None:
    """Load the model under ``AZUREML_MODEL_DIR`` and read the limits (once per worker)."""
    from cellpipe.pipeline import CellSegmenter

    model_dir = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    _service["limits"] = Limits.from_environment(os.environ)
    _service["segmenter"] = CellSegmenter(find_model(model_dir))
    logger.info("cellpipe model %s loaded, limits %s", _service["segmenter"].model_path, _service["limits"])


def find_model(model_dir: Path) -> Path:
    """Return the ``.keras`` model in ``model_dir``.

    Locally (``azmlinfsrv --model_dir DIR/model``) it is ``model_dir/model.keras``; a
    registered model is one folder deeper (``AZUREML_MODEL_DIR/model/model.keras``).
    """
    direct = model_dir / "model.keras"
    if direct.is_file():
        return direct
    found = sorted(model_dir.glob("*/model.keras")) or sorted(model_dir.rglob("*.keras"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one model.keras under {model_dir}, found {len(found)}")
    return found[0]


@rawhttp
def run(request: Any) -> Any:
    """Answer one scoring request; see the module docstring for the contracts."""
    status, body = handle(request)
    if AMLResponse is None:
        return body if status == 200 else {**body, "status": status}
    return AMLResponse(body, status, json_str=True)


def handle(request: Any) -> tuple[int, dict[str, Any]]:
    """Return (HTTP status, JSON body) for a request (a Flask request, or its body)."""
    limits: Limits = _service.get("limits") or Limits()
    try:
        payload = _parse(_read_body(request, limits.max_request_bytes))
        if "image" in payload:
            return 200, score_image(payload, limits)
        if "container_url" in payload:
            return 200, score_batch(payload, limits)
        raise RequestError(400, 'the request needs "image" (base64 image) or "container_url" (batch)')
    except RequestError as error:
        return error.status, {"error": error.message}
    except Exception as error:  # the service must answer, whatever went wrong
        logger.exception("scoring failed")
        return 500, {"error": f"internal error ({type(error).__name__}); see the service logs"}


def _read_body(request: Any, max_bytes: int) -> bytes:
    if isinstance(request, (bytes, bytearray)):
        body = bytes(request)
    elif isinstance(request, str):
        body = request.encode("utf-8")
    else:  # a Flask request
        if request.method != "POST":
            raise RequestError(405, "POST a JSON body to /score")
        if request.content_length is not None and request.content_length > max_bytes:
            raise RequestError(413, f"request body of {request.content_length} bytes is over the limit of {max_bytes}")
        body = request.stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise RequestError(413, f"request body is over the limit of {max_bytes} bytes")
    return body


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise RequestError(400, "the request body must be a JSON object")
    return payload


def score_image(payload: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """Return the cells of the base64 image in ``payload["image"]``."""
    from cellpipe.io import ImageReadError, read_image

    segmenter = _segmenter(payload)
    encoded = payload["image"]
    if not isinstance(encoded, str) or not encoded:
        raise RequestError(400, '"image" must be a base64 string of a PNG, TIFF or JPEG file')
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, '"image" is not valid base64') from None
    try:
        image = read_image(content, name="the posted image", max_pixels=limits.max_pixels)
    except ImageReadError as error:
        raise RequestError(400, str(error)) from None
    started = time.perf_counter()
    result = segmenter(image)
    return {
        "n_cells": result.n_cells,
        "cells": cell_rows(result.cells),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "inverted": result.inverted,
        "seconds": round(time.perf_counter() - started, 4),
    }


def score_batch(payload: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """Segment the images under ``payload["container_url"]`` and write their results to blobs."""
    from cellpipe.azure import BlobStorageError, open_store, parse_blob_url
    from cellpipe.azure.url import BlobUrl

    segmenter = _segmenter(payload)
    count = payload.get("count", limits.max_images)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limits.max_images:
        raise RequestError(400, f'"count" must be an integer from 1 to {limits.max_images}')
    prefix = payload.get("prefix", "")
    if not isinstance(prefix, str):
        raise RequestError(400, '"prefix" must be a string')
    try:
        source = parse_blob_url(payload["container_url"])
        source = source.with_prefix(source.prefix + prefix.lstrip("/")) if prefix else source
        target = parse_blob_url(payload["result_url"]) if payload.get("result_url") else BlobUrl(
            DEFAULT_RESULT_CONTAINER, source.prefix, source.account_url, source.account_name, source.sas_token)
    except (BlobStorageError, ValueError) as error:
        raise RequestError(400, str(error)) from None
    overlay = bool(payload.get("overlay", True))
    images = []
    try:
        with open_store(source, os.environ) as inputs, open_store(target, os.environ) as outputs:
            for blob in inputs.list_images(exclude=target):
                if len(images) == count:
                    break
                images.append(_score_blob(inputs, outputs, blob, source.prefix, segmenter, overlay, limits))
    except BlobStorageError as error:
        raise RequestError(502, f"{type(error).__name__}: {error}") from None
    return {
        "result_url": str(target),
        "n_images": len(images),
        "n_failed": sum("error" in image for image in images),
        "images": images,
    }


def _score_blob(inputs, outputs, blob, input_prefix: str, segmenter, overlay: bool, limits: Limits) -> dict[str, Any]:
    from cellpipe.azure import BlobNotFoundError, BlobTooLargeError, ContentMismatchError
    from cellpipe.io import ImageReadError, read_image
    from cellpipe.results import result_files

    stem = str(PurePosixPath(blob.name[len(input_prefix):]).with_suffix(""))
    try:
        image = read_image(inputs.download(blob, max_bytes=limits.max_request_bytes), name=blob.url,
                           max_pixels=limits.max_pixels)
    except (ImageReadError, BlobTooLargeError, BlobNotFoundError, ContentMismatchError) as error:
        return {"name": blob.name, "error": str(error)}
    try:
        result = segmenter(image)
    except Exception as error:  # one bad image must not fail the batch
        logger.exception("segmenting %s failed", blob.name)
        return {"name": blob.name, "error": f"segmentation failed ({type(error).__name__}: {error})"}
    files = result_files(stem, image, result.labels, result.cells, with_overlay=overlay)
    written = [outputs.upload_atomic(name, data, content_type=_CONTENT_TYPES[PurePosixPath(name).suffix]).url
               for name, data in files.items()]
    return {"name": blob.name, "n_cells": result.n_cells, "results": written}


def _segmenter(payload: Mapping[str, Any]):
    if "segmenter" not in _service:
        raise RequestError(503, "the model is not loaded: init() has not run or failed")
    segmenter = _service["segmenter"]
    invert = payload.get("invert", "auto")
    try:
        # Only the inversion is per request: the post-processing stays the card's tuned values.
        params = dataclasses.replace(segmenter.params, invert=str(invert))
    except ValueError as error:
        raise RequestError(400, f'"invert": {error}') from None
    return segmenter.with_params(params)


def cell_rows(cells: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the per-cell table as one JSON-ready dict per cell (non-finite numbers as null)."""
    names = list(cells)
    columns = [cells[name].tolist() for name in names]
    return [
        {name: (None if isinstance(value, float) and not math.isfinite(value) else value)
         for name, value in zip(names, row)}
        for row in zip(*columns)
    ]
