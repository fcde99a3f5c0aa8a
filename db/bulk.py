"""Bulk insertion of cells: a dict of per-cell columns → rows of the ``cells`` table.

Two fast paths, one per backend, both inside the caller's transaction:

- SQLite: one ``executemany`` of a prepared INSERT (the C loop of Python's sqlite3
  module binds each row; no per-row SQLAlchemy work);
- PostgreSQL: ``COPY cells (...) FROM STDIN (FORMAT BINARY)`` through psycopg 3's
  ``cursor.copy()`` on the raw connection of the same transaction.

NaN statistics are stored as NULL on both backends (SQLite would store NULL anyway).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from sqlalchemy import Connection

from cellpipe.db.models import CELL_COLUMNS, CELL_STATISTICS, OPTIONAL_CELL_STATISTICS

_INTEGER_COLUMNS = frozenset({"label", "area", "bbox_0", "bbox_1", "bbox_2", "bbox_3"})
_BOOLEAN_COLUMNS = frozenset({"touches_border"})
_NOT_NULL_COLUMNS = frozenset(
    {"label", "area", "centroid_0", "centroid_1", "x", "y", "bbox_0", "bbox_1", "bbox_2", "bbox_3"}
)
_PG_TYPES = {
    name: "int4" if name in _INTEGER_COLUMNS or name == "segmentation_id"
    else "bool" if name in _BOOLEAN_COLUMNS
    else "float8"
    for name in CELL_COLUMNS
}


@dataclass(frozen=True)
class CellColumns:
    """Validated cell statistics, one Python list per SQL column of ``cells``.

    Attributes
    ----------
    values : dict of str to list
        SQL column name → values (Python ints, floats, bools or None), without
        ``segmentation_id``.
    n_cells : int
        Number of cells (length of every list).
    """

    values: dict[str, list[Any]]
    n_cells: int

    def rows(self, segmentation_id: int) -> list[tuple[Any, ...]]:
        """Return the rows of ``cells`` in :data:`~cellpipe.db.models.CELL_COLUMNS` order."""
        columns = [self.values[name] for name in CELL_COLUMNS[1:]]
        return list(zip(itertools.repeat(segmentation_id, self.n_cells), *columns))


def cell_columns(cells: Mapping[str, Any]) -> CellColumns:
    """Return the statistics of ``cells`` validated and converted for insertion.

    Parameters
    ----------
    cells : mapping of str to array_like
        Per-cell columns named as ``cellpipe.measure.regionprops_table`` names them
        (``label``, ``area``, ``centroid-0``, ``bbox-0``, ...), all 1-D and of one length.
        ``intensity_*`` and ``touches_border`` may be absent (stored as NULL).

    Raises
    ------
    ValueError
        For unknown or missing columns, columns of different lengths, non-integral
        values in integer columns, NaN where a value is required, or labels that are
        not unique positive integers.
    """
    if not isinstance(cells, Mapping):
        raise TypeError(f"cells must be a mapping of column name to array, got {type(cells).__name__}")
    unknown = sorted(set(cells) - set(CELL_STATISTICS))
    if unknown:
        raise ValueError(
            f"unknown cell statistics {unknown}; the cells table has {sorted(CELL_STATISTICS)} "
            "(a new statistic needs a migration)"
        )
    missing = sorted(set(CELL_STATISTICS) - OPTIONAL_CELL_STATISTICS - set(cells))
    if missing:
        raise ValueError(f"cell statistics {missing} are missing")

    arrays = {CELL_STATISTICS[name]: np.asarray(values) for name, values in cells.items()}
    lengths = {name: array.shape for name, array in arrays.items()}
    n_cells = len(arrays["label"]) if arrays["label"].ndim == 1 else -1
    if any(shape != (n_cells,) for shape in lengths.values()):
        raise ValueError(f"cell statistics must be 1-D arrays of one length, got shapes {lengths}")

    values: dict[str, list[Any]] = {}
    for name, array in arrays.items():
        values[name] = _column_values(name, array)
    arrays["x"], arrays["y"] = arrays["centroid_1"], arrays["centroid_0"]
    values["x"], values["y"] = values["centroid_1"], values["centroid_0"]
    for name in CELL_COLUMNS[1:]:
        values.setdefault(name, [None] * n_cells)

    labels = arrays["label"]
    if n_cells and (labels.min() < 1 or len(np.unique(labels)) != n_cells):
        raise ValueError("cell labels must be unique positive integers")
    return CellColumns(values=values, n_cells=n_cells)


def insert_cells(connection: Connection, segmentation_id: int, cells: CellColumns) -> None:
    """Insert the rows of ``cells`` for ``segmentation_id`` in the connection's transaction."""
    if cells.n_cells == 0:
        return
    if connection.dialect.name == "postgresql":
        _copy_cells(connection, segmentation_id, cells)
    else:
        placeholders = ", ".join("?" for _ in CELL_COLUMNS)
        connection.exec_driver_sql(
            f"INSERT INTO cells ({', '.join(CELL_COLUMNS)}) VALUES ({placeholders})",
            cells.rows(segmentation_id),
        )


def _copy_cells(connection: Connection, segmentation_id: int, cells: CellColumns) -> None:
    # The raw psycopg connection is the one SQLAlchemy's transaction runs on.
    driver_connection = connection.connection.driver_connection
    with driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY cells ({', '.join(CELL_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([_PG_TYPES[name] for name in CELL_COLUMNS])
            for row in cells.rows(segmentation_id):
                copy.write_row(row)


def _column_values(name: str, array: np.ndarray) -> list[Any]:
    if name in _INTEGER_COLUMNS:
        return _integers(name, array)
    if name in _BOOLEAN_COLUMNS:
        if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
            raise ValueError(f"cell statistic {name} must be boolean")
        return array.astype(bool).tolist()
    try:
        floats = array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cell statistic {name} must be numeric, got dtype {array.dtype}") from error
    nan = np.isnan(floats)
    if not nan.any():
        return floats.tolist()
    if name in _NOT_NULL_COLUMNS:
        raise ValueError(f"cell statistic {name} has NaN values; it is required for every cell")
    return [None if missing else value for value, missing in zip(floats.tolist(), nan.tolist())]


def _integers(name: str, array: np.ndarray) -> list[int]:
    if array.dtype.kind in "iub":
        return array.astype(np.int64).tolist()
    if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
        return array.astype(np.int64).tolist()
    raise ValueError(f"cell statistic {name} must hold integers, got dtype {array.dtype}")
