"""One settings object for cellpipe, resolved from three layers.

Precedence, lowest to highest:

1. the ``[cellpipe]`` section of ``luigi.cfg`` (the file named by ``LUIGI_CONFIG_PATH``,
   else ``./luigi.cfg``),
2. environment variables ``CELLPIPE_<FIELD>`` (for example ``CELLPIPE_DB_URL``),
3. explicit overrides, usually CLI flags (``--db``, ``--model``, ...).

The post-processing settings (``edge_threshold``, ``min_area``, ``marker_h``,
``merge_threshold``) have one more layer below these: the values tuned for the model
(its card's ``postprocessing``), which :meth:`Settings.pipeline_params` is given once the
model is known; the library defaults apply only where neither sets a value.

Every field, its default and its meaning are listed in :class:`Settings`; nothing else
in cellpipe reads ``os.environ`` for its own configuration. Azure credentials are not
settings (they must never be printed or sent to a scheduler): :func:`azure_environ`
hands the ``AZURE_STORAGE_*`` variables to :mod:`cellpipe.azure`, which reads them.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import platformdirs

from cellpipe.io import DEFAULT_MAX_PIXELS
from cellpipe.pipeline import PipelineParams, card_segment_params

APP_NAME = "cellpipe"
#: Settings of the post-processing, by the :class:`~cellpipe.segment.SegmentParams` field each sets.
SEGMENT_SETTINGS = {"edge_threshold": "threshold", "min_area": "min_area", "marker_h": "marker_h",
                    "merge_threshold": "merge_threshold"}


def default_data_dir() -> Path:
    """Return the per-user data directory where the default SQLite database lives."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_db_url() -> str:
    """Return the SQLite URL of the default database in the user's data directory."""
    return f"sqlite:///{default_data_dir() / 'cellpipe.sqlite'}"


def default_cache_dir() -> Path:
    """Return the per-user cache directory (files that cellpipe can rebuild, e.g. blob content hashes)."""
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class Settings:
    """cellpipe's configuration.

    Attributes
    ----------
    db_url : str
        SQLAlchemy URL of the cell database. Default: a SQLite file in the user's data
        directory. PostgreSQL: ``postgresql+psycopg://user@host/dbname``.
    model : str
        Path of the U-Net model (``.keras``) used for edge prediction; empty means the
        model shipped with cellpipe.
    input : str
        Where the nightly batch finds images: a folder or ``az://container/prefix``.
    output : str
        Where label images, overlays and per-cell CSVs go; empty means next to the
        database in the data directory.
    invert : str
        ``"auto"``, ``"true"`` or ``"false"``: whether to invert the gray image so that
        cell walls are dark before prediction.
    edge_threshold : float, optional
        Edge probability at or above which a pixel is a cell wall when binarising.
        ``None`` (default), here and for the next three: the value tuned for the model
        (its card's ``postprocessing``, written by ``cellpipe model tune``), else
        :class:`cellpipe.segment.SegmentParams`' default (see :meth:`pipeline_params`).
    min_area : int, optional
        Cells smaller than this many pixels are dropped.
    marker_h : float, optional
        How far (pixels) a distance peak must rise above its saddle to seed a cell.
    merge_threshold : float, optional
        Neighbouring cells whose shared boundary has a lower mean edge probability are
        merged; 0 merges nothing (then use a large ``marker_h``, e.g. 32).
    cell_diameter : float, optional
        Median cell diameter of the images in pixels, for a model with a training scale
        (its card's ``scale``). ``None`` (default): estimated per image
        (:mod:`cellpipe.scale`).
    views : int
        1, 2, 4 or 8 mirrored/rotated views of each image whose edge maps are averaged
        (test-time augmentation; each view costs one prediction).
        Default: :class:`cellpipe.pipeline.PipelineParams`' ``views``.
    storage_retries : int
        Retries of one Azure Blob Storage request (azure-core's exponential retry
        policy: about 3, 5, 9, 17, 33 s apart) before the error reaches the batch.
    cache_dir : str
        Folder of files cellpipe can rebuild at any time: the content hashes of listed
        blobs (``blob-hashes.sqlite``), so that a blob is downloaded to hash it only once
        per version. Default: the user's cache directory. Deleting it only costs downloads.
    query_timeout : float
        Seconds after which ``cellpipe query`` and ``cellpipe export`` cancel their query
        (on the server too); 0 means no limit. Their ``--timeout`` flag overrides it.
    max_pixels : int
        Largest image (width × height, from its header) that ``cellpipe segment`` and
        ``cellpipe run`` decode; a larger one is refused before decoding, as a guard
        against decompression bombs (a run records it as failed). Default
        :data:`cellpipe.io.DEFAULT_MAX_PIXELS`; ``--max-pixels`` overrides it.
    pixel_size : float, optional
        Side of a pixel in µm, for every image, over what the image's metadata says
        (``--pixel-size``). ``None`` (default): read per image from its TIFF metadata
        (:func:`cellpipe.units.read_pixel_size`); unknown when it has none, and then
        every µm figure of that image is NULL.
    overlay : bool
        Whether ``cellpipe run`` also writes ``<stem>_overlay.png`` (outlines and
        centroids on the image) per image (``--overlay``). Default False: it cost about
        a fifth of a batch image, and ``cellpipe report`` draws overlays from the label
        images when asked.
    """

    db_url: str = ""
    model: str = ""
    input: str = ""
    output: str = ""
    invert: str = "auto"
    edge_threshold: float | None = None
    min_area: int | None = None
    marker_h: float | None = None
    merge_threshold: float | None = None
    cell_diameter: float | None = None
    views: int = PipelineParams.views
    storage_retries: int = 5
    cache_dir: str = ""
    query_timeout: float = 300.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    pixel_size: float | None = None
    overlay: bool = False

    def __post_init__(self) -> None:
        if self.pixel_size is not None and not self.pixel_size > 0:
            raise ValueError(f"cellpipe setting pixel_size={self.pixel_size!r} must be > 0 (µm per pixel)")
        if not self.db_url:
            object.__setattr__(self, "db_url", default_db_url())
        if not self.cache_dir:
            object.__setattr__(self, "cache_dir", str(default_cache_dir()))

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        config_path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> "Settings":
        """Return the settings resolved from luigi.cfg, the environment and ``overrides``.

        ``None`` values in ``overrides`` mean "not given" and do not override.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        values.update(_read_config_section(config_path, environ))
        for field in fields(cls):
            env_name = f"CELLPIPE_{field.name.upper()}"
            if env_name in environ:
                values[field.name] = environ[env_name]
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls(**_coerce(values))

    def pipeline_params(self, postprocessing: Mapping[str, Any] | None = None) -> PipelineParams:
        """Return the segmentation parameters these settings ask for.

        Parameters
        ----------
        postprocessing : mapping, optional
            The model card's tuned :class:`~cellpipe.segment.SegmentParams` fields
            (``card.postprocessing``). Each post-processing setting that is set replaces
            the card's value; the card's values replace the library defaults.

        Examples
        --------
        >>> settings = Settings(min_area=50)
        >>> settings.pipeline_params({"threshold": 0.4, "min_area": 16}).segment.min_area
        50
        >>> settings.pipeline_params({"threshold": 0.4, "min_area": 16}).segment.threshold
        0.4
        """
        tuned = card_segment_params(postprocessing)
        given = {name: getattr(self, setting) for setting, name in SEGMENT_SETTINGS.items()
                 if getattr(self, setting) is not None}
        return PipelineParams(invert=self.invert, views=self.views, cell_diameter=self.cell_diameter,
                              segment=dataclasses.replace(tuned, **given))

    def replace(self, **changes: Any) -> "Settings":
        """Return a copy with ``changes`` applied (``None`` values ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


#: Prefix of the environment variables that name an Azure Storage account and its secret.
AZURE_STORAGE_PREFIX = "AZURE_STORAGE_"


def azure_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the ``AZURE_STORAGE_*`` variables of ``environ`` (default: the process environment).

    This is what :func:`cellpipe.azure.open_store` is given: the connection string,
    account, key, SAS token and auth mode, as the Azure CLI reads them. Identity
    credentials (``AZURE_CLIENT_ID``, managed identity...) are read by azure-identity
    itself.
    """
    environ = os.environ if environ is None else environ
    return {name: value for name, value in environ.items() if name.startswith(AZURE_STORAGE_PREFIX)}


def _read_config_section(
    config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> dict[str, str]:
    path = Path(config_path or environ.get("LUIGI_CONFIG_PATH") or "luigi.cfg")
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    if not parser.has_section(APP_NAME):
        return {}
    known = {f.name for f in fields(Settings)}
    return {k: v for k, v in parser.items(APP_NAME) if k in known}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    # Annotations are strings (``from __future__ import annotations``): "float", "int | None", ...
    types = {f.name: f.type for f in fields(Settings)}
    coerced: dict[str, Any] = {}
    for name, value in values.items():
        if name not in types:
            raise ValueError(f"unknown cellpipe setting {name!r}; known: {sorted(types)}")
        kind, optional = _annotation(types[name])
        if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))):
            coerced[name] = None  # "edge_threshold =" in luigi.cfg: not set
            continue
        try:
            if kind == "float":
                coerced[name] = float(value)
            elif kind == "int":
                coerced[name] = int(value)
            elif kind == "bool":
                coerced[name] = _boolean(value)
            else:
                coerced[name] = str(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"cellpipe setting {name}={value!r} is not a valid {kind}") from error
    return coerced


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{value!r} is not true/false")


def _annotation(annotation: Any) -> tuple[str, bool]:
    """Return ``(base type name, optional)`` of a field annotation such as ``"float | None"``."""
    parts = [part.strip() for part in str(annotation).split("|")]
    optional = "None" in parts
    base = [part for part in parts if part != "None"]
    return (base[0] if base else "str"), optional
