"""What the batch writes: images, runs, and one segmentation (with its cells) per image.

Every function takes a *bind*: an Engine (the function opens, commits or rolls back its
own transaction) or a Connection / Session (the function joins the caller's
transaction and the caller commits).

Writes are idempotent and safe to run from several processes at once:

- :func:`register_image` keys images by content hash (``INSERT … ON CONFLICT DO
  NOTHING``), so the same bytes found twice are one row;
- :func:`store_segmentation` keys results by (image, model, parameter hash) with an
  ``INSERT … ON CONFLICT DO UPDATE`` that locks the segmentation row until commit (the
  SQLite write lock does the same), then replaces that segmentation's cells, all in
  one transaction: a concurrent writer of the same key waits and then replaces, so
  each key ends up stored exactly once.

A run records its host and process id, so that a run whose process was killed
(SIGKILL, a reboot) before :func:`finish_run` does not stay "running" forever: the
next :func:`start_run` on that host marks it "interrupted"
(:func:`mark_interrupted_runs`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
from typing import Any, Mapping

from sqlalchemy import Connection, DateTime, bindparam, exists, func, select, text, update
from sqlalchemy.exc import IntegrityError

from cellpipe import __version__
from cellpipe.db.bulk import cell_columns, insert_cells
from cellpipe.db.engine import Bind, read_connection, write_transaction
from cellpipe.db.models import (
    PIXEL_SIZE_SOURCES,
    RUN_STATUSES,
    Image,
    JSONDocument,
    Run,
    Segmentation,
    SegmentationQuality,
)
from cellpipe.db.values import canonical, dialect_insert, sha256_hex, utc_now

MAX_ERROR_LENGTH = 10_000

# The statements of store_segmentation, built once: they run once per image, and
# building SQLAlchemy constructs costs more than running them. ON CONFLICT and
# RETURNING are spelled the same on SQLite and PostgreSQL.
_UPSERT_SEGMENTATION = text(
    """
    INSERT INTO segmentations
        (image_id, model_id, param_hash, parameters, run_id, n_cells, label_uri, timings, stored_at)
    VALUES
        (:image_id, :model_id, :param_hash, :parameters, :run_id, :n_cells, :label_uri, :timings, :stored_at)
    ON CONFLICT (image_id, model_id, param_hash) DO UPDATE SET
        parameters = excluded.parameters, run_id = excluded.run_id, n_cells = excluded.n_cells,
        label_uri = excluded.label_uri, timings = excluded.timings, stored_at = excluded.stored_at
    RETURNING id
    """
).bindparams(
    bindparam("parameters", type_=JSONDocument),
    bindparam("timings", type_=JSONDocument),
    bindparam("stored_at", type_=DateTime(timezone=True)),
)
_DELETE_CELLS = text("DELETE FROM cells WHERE segmentation_id = :segmentation_id")
_DELETE_QUALITY = text("DELETE FROM segmentation_quality WHERE segmentation_id = :segmentation_id")
#: Columns of ``segmentation_quality`` that :func:`store_segmentation` fills from ``quality``.
QUALITY_COLUMNS: tuple[str, ...] = tuple(
    column.name for column in SegmentationQuality.__table__.columns if column.name != "segmentation_id"
)
_INSERT_QUALITY = text(
    f"INSERT INTO segmentation_quality (segmentation_id, {', '.join(QUALITY_COLUMNS)}) "
    f"VALUES (:segmentation_id, {', '.join(':' + name for name in QUALITY_COLUMNS)})"
)
_MARK_SEGMENTED = text("UPDATE images SET status = 'segmented', last_error = NULL WHERE id = :image_id")


def parameter_hash(parameters: Mapping[str, Any]) -> str:
    """Return the sha256 (hex) of the canonical JSON of ``parameters``.

    Key order does not matter, numpy scalars count as their Python values, tuples as
    lists, paths as strings, and integral floats as integers (``1.0`` and ``1`` hash
    the same), so the hash only changes when a parameter's value does.

    Examples
    --------
    >>> parameter_hash({"min_area": 16, "edge_threshold": 0.5}) == parameter_hash(
    ...     {"edge_threshold": 0.5, "min_area": 16.0})
    True
    """
    document = json.dumps(
        canonical(dict(parameters)), sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def register_image(
    bind: Bind,
    content_hash: str,
    source_uri: str,
    *,
    size_bytes: int,
    batch_date: dt.date,
    bit_depth: int | None = None,
    width: int | None = None,
    height: int | None = None,
    acquired_at: dt.datetime | None = None,
) -> int:
    """Return the id of the image with ``content_hash``, registering it if it is new.

    The first registration wins: registering the same bytes again (another path,
    another night) returns the existing row unchanged.

    Parameters
    ----------
    content_hash : str
        sha256 of the image file's bytes, 64 hex digits.
    source_uri : str
        Where the image was found: a path or ``az://container/blob``.
    size_bytes : int
        Size of the file.
    batch_date : datetime.date
        Date of the batch that found it (what ``--since``/``--until`` filter on).
    bit_depth, width, height : int, optional
        Pixel format and size, when known.
    acquired_at : datetime.datetime, optional
        Acquisition time from the file's metadata, when known.
    """
    content_hash = sha256_hex(content_hash, "content_hash")
    if not isinstance(batch_date, dt.date) or isinstance(batch_date, dt.datetime):
        raise TypeError(f"batch_date must be a datetime.date, got {batch_date!r}")
    if int(size_bytes) < 0:
        raise ValueError(f"size_bytes must be >= 0, got {size_bytes}")
    values = dict(
        content_hash=content_hash,
        source_uri=str(source_uri),
        size_bytes=int(size_bytes),
        batch_date=batch_date,
        bit_depth=bit_depth,
        width=width,
        height=height,
        acquired_at=acquired_at,
        first_seen=utc_now(),
        status="registered",
    )
    with write_transaction(bind) as connection:
        statement = dialect_insert(connection, Image).values(**values)
        connection.execute(statement.on_conflict_do_nothing(index_elements=["content_hash"]))
        return connection.execute(
            select(Image.id).where(Image.content_hash == content_hash)
        ).scalar_one()


def record_pixel_size(bind: Bind, image_id: int, pixel_size_um: float | None, source: str | None) -> None:
    """Record the pixel size ``image_id`` is measured with (None, None: unknown).

    The latest one recorded wins: the batch records it each time it segments the image,
    so a ``pixel_size`` setting given on a later run replaces what the file said.

    Raises
    ------
    ValueError
        For a size that is not > 0, a source not in ``PIXEL_SIZE_SOURCES``, or a size
        without a source (or the reverse).
    LookupError
        When there is no image ``image_id``.
    """
    if (pixel_size_um is None) != (source is None):
        raise ValueError(f"a pixel size needs its source and a source its size, got {pixel_size_um!r}, {source!r}")
    if pixel_size_um is not None and not float(pixel_size_um) > 0:
        raise ValueError(f"pixel size must be > 0 µm, got {pixel_size_um}")
    if source is not None and source not in PIXEL_SIZE_SOURCES:
        raise ValueError(f"pixel size source must be one of {PIXEL_SIZE_SOURCES}, got {source!r}")
    with write_transaction(bind) as connection:
        result = connection.execute(
            update(Image).where(Image.id == image_id).values(
                pixel_size_um=None if pixel_size_um is None else float(pixel_size_um), pixel_size_source=source)
        )
        if result.rowcount == 0:
            raise LookupError(f"no image with id {image_id}")


def mark_image_failed(bind: Bind, image_id: int, error: str) -> None:
    """Record that segmenting ``image_id`` failed with ``error`` (kept to 10,000 characters)."""
    with write_transaction(bind) as connection:
        result = connection.execute(
            update(Image)
            .where(Image.id == image_id)
            .values(status="failed", last_error=str(error)[:MAX_ERROR_LENGTH])
        )
        if result.rowcount == 0:
            raise LookupError(f"no image with id {image_id}")


def start_run(
    bind: Bind,
    *,
    batch_date: dt.date | None = None,
    parameters: Mapping[str, Any] | None = None,
    code_version: str | None = None,
    host: str | None = None,
) -> int:
    """Return the id of a new run of this process, started now.

    The code version and host default to this one's; the run records this process's
    id. Runs of this host whose process is gone are first marked "interrupted" (see
    :func:`mark_interrupted_runs`), in the same transaction.
    """
    with write_transaction(bind) as connection:
        _mark_interrupted_runs(connection)
        return connection.execute(
            dialect_insert(connection, Run)
            .values(
                started_at=utc_now(),
                batch_date=batch_date,
                parameters=canonical(dict(parameters or {})),
                code_version=code_version or __version__,
                host=host or socket.gethostname(),
                pid=os.getpid(),
                status="running",
            )
            .returning(Run.id)
        ).scalar_one()


def mark_interrupted_runs(bind: Bind) -> int:
    """Return how many "running" runs of this host were marked "interrupted", finished now.

    A run is interrupted when its process no longer exists: it was killed, or the host
    rebooted, before :func:`finish_run`. A run that started before the host's last boot
    is interrupted even if a process now has its pid (pids are reused after a reboot).
    Only runs of this host (``socket.gethostname()``) with a recorded process id are
    checked: another host's processes cannot be seen from here, and runs stored before
    schema revision 0003 have no process id. A process of another user counts as
    alive. :func:`start_run` calls this first.
    """
    with write_transaction(bind) as connection:
        return _mark_interrupted_runs(connection)


def _mark_interrupted_runs(connection: Connection) -> int:
    candidates = connection.execute(
        select(Run.id, Run.pid, Run.started_at).where(
            Run.status == "running", Run.host == socket.gethostname(), Run.pid.is_not(None)
        )
    ).all()
    booted = boot_time()
    gone = [
        run_id
        for run_id, pid, started_at in candidates
        if (booted is not None and as_utc(started_at) < booted) or not process_exists(pid)
    ]
    if not gone:
        return 0
    # status is checked again: a concurrent start_run may have marked some already.
    return connection.execute(
        update(Run)
        .where(Run.id.in_(gone), Run.status == "running")
        .values(status="interrupted", finished_at=utc_now())
    ).rowcount


def boot_time() -> dt.datetime | None:
    """Return when this host last booted (UTC), or None where it cannot be told (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return dt.datetime.fromtimestamp(int(line.split()[1]), dt.timezone.utc)
    except (OSError, ValueError):
        pass
    return None


def as_utc(moment: dt.datetime) -> dt.datetime:
    """Return ``moment`` as an aware UTC datetime (SQLite gives back naive ones; cellpipe writes UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def process_exists(pid: int) -> bool:
    """Return whether process ``pid`` exists on this host (True where it cannot be told)."""
    # Signal 0 checks for the process without signalling it. Elsewhere than POSIX,
    # os.kill(pid, 0) would send Ctrl-C, and pids <= 0 name process groups: there the
    # answer is "cannot tell", which leaves the run alone.
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def finish_run(
    bind: Bind,
    run_id: int,
    *,
    status: str = "succeeded",
    images_seen: int | None = None,
    images_failed: int | None = None,
    summary: Mapping[str, Any] | None = None,
) -> None:
    """Mark ``run_id`` finished now with ``status`` and its counts.

    ``images_segmented`` and ``cells_stored`` are counted from the segmentations the run
    stored; ``images_seen``, ``images_failed`` and ``summary`` (what the counts do not
    say: duplicate files, outages ridden out) are what the caller says.
    """
    if status not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {RUN_STATUSES}, got {status!r}")
    with write_transaction(bind) as connection:
        segmented, cells = connection.execute(
            select(func.count(), func.coalesce(func.sum(Segmentation.n_cells), 0)).where(
                Segmentation.run_id == run_id
            )
        ).one()
        result = connection.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(
                finished_at=utc_now(),
                status=status,
                images_seen=images_seen,
                images_failed=images_failed,
                summary=canonical(dict(summary or {})),
                images_segmented=segmented,
                cells_stored=cells,
            )
        )
        if result.rowcount == 0:
            raise LookupError(f"no run with id {run_id}")


def store_segmentation(
    bind: Bind,
    image_id: int,
    model_id: int,
    parameters: Mapping[str, Any],
    cells: Mapping[str, Any],
    *,
    run_id: int | None = None,
    label_uri: str | None = None,
    timings: Mapping[str, float] | None = None,
    chosen: Mapping[str, Any] | None = None,
    quality: Mapping[str, Any] | None = None,
) -> int:
    """Store the cells found in one image, replacing any earlier result for the same key.

    Parameters
    ----------
    bind : Engine, Connection or Session
        An Engine gets one transaction for this image, committed here.
    image_id, model_id : int
        Ids from :func:`register_image` and :func:`cellpipe.db.register_model`.
    parameters : mapping
        The segmentation parameters; their :func:`parameter_hash` is part of the key.
    cells : mapping of str to array_like
        Per-cell statistics as ``cellpipe.measure.regionprops_table`` returns them
        (see :func:`cellpipe.db.bulk.cell_columns`).
    run_id : int, optional
        The run that produced the result.
    label_uri : str, optional
        Where the label image was written.
    timings : mapping of str to float, optional
        Seconds spent per stage.
    chosen : mapping, optional
        What the pipeline chose for this image itself (``{"scale": {...}}``: the cell
        diameter and resampling factor). Stored in the ``parameters`` document next to
        the requested ``parameters`` but not hashed, so that the key stays that of the
        request and a rerun with the same request finds the result.
    quality : mapping, optional
        The image's quality figures in pixels (:func:`cellpipe.quality.image_quality`;
        keys beyond :data:`QUALITY_COLUMNS` are ignored), stored in
        ``segmentation_quality``; without it the segmentation has none.

    Returns
    -------
    int
        The segmentation id (the same one when the key was stored before).

    Raises
    ------
    ValueError
        For invalid cell statistics (nothing is written).
    LookupError
        When ``image_id``, ``model_id`` or ``run_id`` does not exist.
    """
    columns = cell_columns(cells)
    values = dict(
        image_id=image_id,
        model_id=model_id,
        param_hash=parameter_hash(parameters),
        parameters=canonical({**parameters, **(chosen or {})}),
        run_id=run_id,
        n_cells=columns.n_cells,
        label_uri=label_uri,
        timings=canonical(dict(timings or {})),
        stored_at=utc_now(),
    )
    try:
        with write_transaction(bind) as connection:
            segmentation_id = connection.execute(_UPSERT_SEGMENTATION, values).scalar_one()
            connection.execute(_DELETE_CELLS, {"segmentation_id": segmentation_id})
            insert_cells(connection, segmentation_id, columns)
            connection.execute(_DELETE_QUALITY, {"segmentation_id": segmentation_id})
            if quality is not None:
                connection.execute(_INSERT_QUALITY, {"segmentation_id": segmentation_id,
                                                     **_quality_values(quality)})
            connection.execute(_MARK_SEGMENTED, {"image_id": image_id})
    except IntegrityError as error:
        if "foreign key" in str(error.orig).lower():
            raise LookupError(
                f"cannot store segmentation: image {image_id}, model {model_id} or run {run_id} "
                "does not exist"
            ) from error
        raise
    return segmentation_id


def _quality_values(quality: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for name in QUALITY_COLUMNS:
        value = quality.get(name)
        values[name] = None if value is None or value != value else value  # NaN: unknown
    missing = [name for name in ("n_border_cells", "image_area_px", "crossings_x", "crossings_y")
               if values[name] is None]
    if missing:
        raise ValueError(f"quality figures {missing} are missing")
    return canonical(values)


def is_segmented(bind: Bind, image_id: int, model_id: int, param_hash: str) -> bool:
    """Return whether (image, model, parameter hash) has a stored segmentation."""
    with read_connection(bind) as connection:
        return connection.execute(
            select(
                exists().where(
                    Segmentation.image_id == image_id,
                    Segmentation.model_id == model_id,
                    Segmentation.param_hash == param_hash,
                )
            )
        ).scalar_one()

