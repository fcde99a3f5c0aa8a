"""What a worker process holds for the whole batch: settings, database, model, listings.

Luigi tasks are rebuilt from their parameters in every process, but an engine, a
loaded U-Net and a batch listing should exist once per process. :class:`BatchContext`
holds them; :func:`current` returns the context of this process (``cellpipe run``
activates one per worker with :func:`activated`; a bare ``luigi --module
cellpipe.tasks ...`` gets one built from :meth:`Settings.load`).

Secrets stay here: the database URL never becomes a task parameter (parameters are
sent to ``luigid`` and shown in its web page). Tasks carry :class:`BatchIdentity`
instead, the password-free description of what they compute.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from cellpipe.pipeline import CellSegmenter, PipelineParams, file_sha256
from cellpipe.results import write_results
from cellpipe.settings import Settings, default_data_dir
from cellpipe.shipped import model_file
from cellpipe.tasks.read_ahead import ReadAhead
from cellpipe.tasks.sources import Listing, SourceError, is_blob_uri, list_batch, storage_errors


class ModelNotFoundError(FileNotFoundError):
    """The model named by the settings (or the shipped default) is not there."""


def shipped_model_path() -> Path:
    """Return where the model shipped with cellpipe lives (``cellpipe.unet.DEFAULT_MODEL_PATH``).

    :mod:`cellpipe.shipped` says so without TensorFlow, which the coordinating process
    need not import.
    """
    return model_file(None)


@dataclass(frozen=True)
class ModelInfo:
    """A model file and how the database names it.

    Attributes
    ----------
    path : Path
        The ``.keras`` file.
    sha256 : str
        Hash of the file: the model's identity in task ids and in the database.
    name, version : str
        Registry name (the folder for ``.../NAME/model.keras``, else the file stem;
        ``cellpipe-default`` for the shipped model) and version (hash prefix), used
        when the file is not registered yet.
    card : dict
        The model card (``NAME.json`` next to the file).
    """

    path: Path
    sha256: str
    name: str
    version: str
    card: dict[str, Any]


def resolve_model(model: str) -> ModelInfo:
    """Return the model named by the ``model`` setting (empty: the shipped default).

    Raises
    ------
    ModelNotFoundError
        When the file or its card is missing; the message says what to do.
    """
    shipped = shipped_model_path()
    path = model_file(model)
    if not path.is_file():
        hint = ("the shipped model is not in this checkout yet; train one with `cellpipe model train` "
                "or give --model PATH" if path == shipped else "check --model / [cellpipe] model")
        raise ModelNotFoundError(f"no U-Net model at {path}: {hint}")
    card_file = path.with_suffix(".json")
    if not card_file.is_file():
        raise ModelNotFoundError(f"model {path} has no card {card_file.name} next to it")
    sha256 = file_sha256(path)
    name = "cellpipe-default" if path.resolve() == shipped else (path.parent.name if path.stem == "model" else path.stem)
    return ModelInfo(path=path.resolve(), sha256=sha256, name=name, version=sha256[:12],
                     card=json.loads(card_file.read_text()))


def batch_model(settings: Settings, engine) -> ModelInfo:
    """Return the model the batch uses.

    ``[cellpipe] model`` (or ``--model``) when set; else the database's default model
    (made so by ``cellpipe model retrain --make-default`` or ``cellpipe.db.set_default_model``);
    else the model shipped with cellpipe.
    """
    if not settings.model:
        from cellpipe.db import get_default_model

        default = get_default_model(engine)
        if default is not None:
            return resolve_model(default.location)
    return resolve_model(settings.model)


def batch_params(settings: Settings, model: ModelInfo) -> PipelineParams:
    """Return the pipeline parameters of the batch: the settings over ``model``'s tuned post-processing.

    The coordinating process and every worker resolve them here, so that they name the
    same parameters (and parameter hash) for the same settings and model.
    """
    return settings.pipeline_params(model.card.get("postprocessing"))


def database_identity(url: str) -> str:
    """Return ``url`` without its password: how tasks name their database."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def output_location(settings: Settings) -> str:
    """Return where results go: the ``output`` setting, else ``results/`` next to a SQLite file."""
    if settings.output:
        return settings.output
    from cellpipe.db.engine import is_sqlite, sqlite_path

    base = sqlite_path(settings.db_url).parent if is_sqlite(settings.db_url) else default_data_dir()
    return str(base / "results")


def prepare_storage(settings: Settings) -> None:
    """Make this process use the storage options of ``settings``; raise when an ``az://`` output is unusable.

    The output container is listed once (with few retries) so that a missing
    container or refused credentials stop the run before any image is segmented.
    Local folders are created when results are written and need no check.

    Raises
    ------
    cellpipe.tasks.sources.SourceError
        The URL is invalid, the container does not exist, the credentials are refused,
        or the output lies inside an ``az://`` input (its results would be listed as images).
    cellpipe.tasks.sources.SourceUnreachableError
        The storage account does not answer.
    """
    output = output_location(settings)
    if not (is_blob_uri(settings.input) or is_blob_uri(output)):
        return
    from cellpipe.tasks.blob_target import start_options, use_settings

    use_settings(settings)
    if not is_blob_uri(output):
        return
    from cellpipe.azure import open_store, parse_blob_url
    from cellpipe.settings import azure_environ

    with storage_errors(f"cannot write results to {output}"):
        location = parse_blob_url(output)
        if is_blob_uri(settings.input):
            source = parse_blob_url(settings.input)
            if source.container == location.container and location.prefix.startswith(source.prefix):
                raise SourceError(f"output {output} lies inside the input {settings.input}: its results would "
                                  "be listed as images; choose another container or prefix")
        with open_store(location, azure_environ(), options=start_options()) as store:
            next(iter(store.list_images()), None)


@dataclass(frozen=True)
class BatchIdentity:
    """What the per-image results depend on, as task parameters (no secrets).

    Attributes
    ----------
    database : str
        Database URL without password.
    model_sha256 : str
        Hash of the model file.
    parameters : dict
        ``PipelineParams.as_dict()``; its hash is part of the database key.
    """

    database: str
    model_sha256: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class BatchEvent:
    """Something a worker reports to the process that shows progress.

    ``kind`` is one of ``planned`` (first, from the coordinating process),
    ``model_loaded``, ``stored``, ``already_stored``, ``failed`` (the image is recorded
    as failed), ``changed`` (the file changed since it was listed: left for the next
    run), ``claimed`` (another process is segmenting it: left to that one) and
    ``task_error`` (a Luigi task raised: not recorded, retried later; ``data["transient"]``
    when the database or storage did not answer).
    """

    kind: str
    worker: int = 0
    name: str = ""
    content_hash: str = ""
    n_cells: int | None = None
    seconds: float = 0.0
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


# Loaded U-Nets of this process, by model path, and how many loads happened: the
# batch reports the count so that "once per worker process" is checked, not assumed.
_SEGMENTERS: dict[str, CellSegmenter] = {}
_MODEL_LOADS = 0


def model_loads() -> int:
    """Return how many times this process has loaded a U-Net for the batch."""
    return _MODEL_LOADS


class BatchContext:
    """The settings and per-process resources of one batch in one worker process.

    Parameters
    ----------
    settings : Settings
        Resolved settings (database URL, model, input, output, thresholds).
    run_id : int, optional
        The ``runs`` row results are attributed to.
    retry_failed : bool
        Process images recorded as failed again (default: they count as done).
    listings : mapping, optional
        Batch listings already made by the coordinating process, keyed by
        ``(input, date, dated)``, so that workers need not hash every file again.
    emit : callable, optional
        Receives every :class:`BatchEvent`.
    worker : int
        Number of this worker, for events.
    read_ahead : bool
        Segment the next image of the listing in the background while a task stores
        its own (:mod:`cellpipe.tasks.read_ahead`); only for a worker that has the
        scheduler to itself.
    """

    def __init__(self, settings: Settings, *, run_id: int | None = None, retry_failed: bool = False,
                 listings: Mapping[tuple[str, dt.date, bool], Listing] | None = None,
                 emit: Callable[[BatchEvent], None] | None = None, worker: int = 0,
                 read_ahead: bool = False) -> None:
        self.settings = settings
        self.run_id = run_id
        self.retry_failed = retry_failed
        self.worker = worker
        self.pid = os.getpid()
        self._emit = emit
        self._listings = dict(listings or {})
        self._engine = None
        self._model: ModelInfo | None = None
        self._model_ids: dict[str, int] = {}
        self._params: PipelineParams | None = None
        self.output = output_location(settings)
        self.read_ahead = ReadAhead(self._segment, self._stored, max_pixels=settings.max_pixels, enabled=read_ahead)
        if is_blob_uri(settings.input) or is_blob_uri(self.output):
            from cellpipe.tasks.blob_target import use_settings

            use_settings(settings)  # retries of this process's blob stores

    @property
    def engine(self):
        """Return this process's engine on the settings' database (schema checked once)."""
        if self._engine is None:
            from cellpipe.db import open_database
            from cellpipe.tasks.retry import retrying

            self._engine = retrying(open_database)(self.settings.db_url)
        return self._engine

    @property
    def model(self) -> ModelInfo:
        """Return the model file of the settings (hashed once)."""
        if self._model is None:
            self._model = batch_model(self.settings, self.engine)
        return self._model

    @property
    def params(self) -> PipelineParams:
        """Return the pipeline parameters of this batch (:func:`batch_params`), resolved once the model is known."""
        if self._params is None:
            self._params = batch_params(self.settings, self.model)
        return self._params

    @property
    def identity(self) -> BatchIdentity:
        """Return the identity of what this context computes."""
        return BatchIdentity(database_identity(self.settings.db_url), self.model.sha256, self.params.as_dict())

    def model_id(self, model_sha256: str) -> int:
        """Return the database id of the model file ``model_sha256`` (registering this context's model)."""
        from cellpipe.tasks.retry import retrying
        from cellpipe.tasks.state import ensure_model, find_model_by_hash

        if model_sha256 not in self._model_ids:
            if model_sha256 == self.model.sha256:
                model = self.model
                model_id = retrying(ensure_model)(self.engine, name=model.name, version=model.version,
                                                  file_hash=model.sha256, location=str(model.path), card=model.card)
            else:
                model_id = retrying(find_model_by_hash)(self.engine, model_sha256)
                if model_id is None:
                    raise LookupError(f"model {model_sha256[:12]} is not registered in {self.identity.database}")
            self._model_ids[model_sha256] = model_id
        return self._model_ids[model_sha256]

    def check_identity(self, database: str, model_sha256: str) -> None:
        """Raise ValueError when a task asks for another database or model than this process has."""
        mine = self.identity
        if database != mine.database or model_sha256 != mine.model_sha256:
            raise ValueError(
                f"this worker writes to {mine.database} with model {mine.model_sha256[:12]}, but the task "
                f"asks for {database} with model {model_sha256[:12]}: workers sharing a scheduler need the "
                "same [cellpipe] db_url and model"
            )

    def segmenter(self, parameters: Mapping[str, Any]) -> CellSegmenter:
        """Return the segmenter of this context's model with ``parameters`` (model loaded once per process)."""
        global _MODEL_LOADS
        key = str(self.model.path)
        if key not in _SEGMENTERS:
            started = time.perf_counter()
            _SEGMENTERS[key] = CellSegmenter(self.model.path)
            _MODEL_LOADS += 1
            self.emit(BatchEvent("model_loaded", self.worker, seconds=time.perf_counter() - started,
                                 data={"pid": os.getpid(), "model": key}))
        return _SEGMENTERS[key].with_params(PipelineParams.from_dict(parameters))

    def _segment(self, parameters: Mapping[str, Any], image) -> Any:
        return self.segmenter(parameters)(image)

    def _stored(self, content_hashes, parameters: Mapping[str, Any]) -> set[str]:
        # The images among ``content_hashes`` whose task is complete (ProcessImage.complete).
        from cellpipe.db import parameter_hash
        from cellpipe.tasks.state import image_states

        states = image_states(self.engine, content_hashes, self.model_id(self.model.sha256),
                              parameter_hash(parameters))
        return {content_hash for content_hash, state in states.items()
                if state.segmented or (state.status == "failed" and not self.retry_failed)}

    def task_resources(self) -> dict[str, int]:
        """Return the Luigi resources a segmentation takes here: one ``gpu`` when on a GPU."""
        if "tensorflow" not in sys.modules or not _SEGMENTERS:
            return {}
        import tensorflow as tf

        return {"gpu": 1} if tf.config.list_logical_devices("GPU") else {}

    def listing(self, input: str, batch_date: dt.date, dated: bool) -> Listing:
        """Return the images of a batch, listed once per context."""
        key = (input, batch_date, dated)
        if key not in self._listings:
            self._listings[key] = list_batch(input, batch_date, dated=dated, cache_dir=self.settings.cache_dir)
        return self._listings[key]

    def write_results(self, batch_date: dt.date, files: Mapping[str, bytes]) -> str:
        """Write result files of one image under ``OUTPUT/YYYY-MM-DD/`` atomically; return the first's URI.

        An ``az://`` output gets one blob per file, each committed whole
        (:class:`~cellpipe.tasks.blob_target.BlobTarget`); a rerun replaces them, and so
        does a retry after the storage was briefly unreachable.
        """
        if is_blob_uri(self.output):
            from cellpipe.azure import parse_blob_url
            from cellpipe.tasks.blob_target import BlobTarget
            from cellpipe.tasks.retry import retrying

            folder = parse_blob_url(self.output).dated(batch_date)
            targets = [(BlobTarget(folder.blob_url(folder.blob_name(name))), data) for name, data in files.items()]
            return [retrying(target.write, service="storage")(data) for target, data in targets][0].url
        written = write_results(Path(self.output) / batch_date.isoformat(), files)
        return str(written[0])

    def emit(self, event: BatchEvent) -> None:
        """Pass ``event`` on to whoever shows progress."""
        if self._emit is not None:
            self._emit(event)

    def close(self) -> None:
        """Release the database connections and the blob stores of this context."""
        self.read_ahead.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if is_blob_uri(self.settings.input) or is_blob_uri(self.output):
            from cellpipe.tasks.blob_target import close_stores

            close_stores()


_CURRENT: BatchContext | None = None


def current() -> BatchContext:
    """Return this process's batch context (one from ``Settings.load()`` when none is active)."""
    global _CURRENT
    if _CURRENT is None or _CURRENT.pid != os.getpid():
        # A forked process must not reuse its parent's connections.
        _CURRENT = BatchContext(Settings.load())
    return _CURRENT


@contextlib.contextmanager
def activated(context: BatchContext) -> Iterator[BatchContext]:
    """Make ``context`` this process's current context for the duration of the block."""
    global _CURRENT
    previous, _CURRENT = _CURRENT, context
    try:
        yield context
    finally:
        _CURRENT = previous
        context.close()
