"""Bulk insertion of cells: a dict of per-cell columns → rows of the ``cells`` table.

The columns are validated once and packed into one numpy record array; from there each
backend gets its fast path, inside the caller's transaction:

- SQLite: one ``executemany`` of a prepared INSERT over ``records.tolist()`` (rows are
  built and bound in C; SQLite itself stores NaN as NULL);
- PostgreSQL: ``COPY cells (...) FROM STDIN (FORMAT BINARY)`` through psycopg 3's
  ``cursor.copy()`` on the raw connection of the same transaction. Without NaN, the
  whole COPY stream is built by numpy as one big-endian record array; columns with NaN
  go row by row through ``copy.write_row`` so that NaN becomes NULL there too.

Statistics that are absent (e.g. intensity without an intensity image) are left out of
the column list and so stored as NULL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from sqlalchemy import Connection

from cellpipe.db.models import CELL_COLUMNS, CELL_STATISTICS, OPTIONAL_CELL_STATISTICS

_INTEGER_COLUMNS = frozenset({"label", "area", "bbox_0", "bbox_1", "bbox_2", "bbox_3"})
_BOOLEAN_COLUMNS = frozenset({"touches_border"})
_NOT_NULL_COLUMNS = frozenset(
    {"label", "area", "centroid_0", "centroid_1", "bbox_0", "bbox_1", "bbox_2", "bbox_3"}
)
_INT32 = np.iinfo(np.int32)
# PostgreSQL binary COPY: type name, big-endian numpy type of the value.
_PG_BINARY = {"int": ("int4", ">i4"), "float": ("float8", ">f8"), "bool": ("bool", "u1")}
_NUMPY_TYPES = {"int": np.int64, "float": np.float64, "bool": np.bool_}
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_COPY_TRAILER = struct.pack(">h", -1)


def _kind(name: str) -> str:
    if name in _INTEGER_COLUMNS or name == "segmentation_id":
        return "int"
    return "bool" if name in _BOOLEAN_COLUMNS else "float"


@dataclass(frozen=True)
class CellColumns:
    """Validated cell statistics, packed for insertion.

    Attributes
    ----------
    names : tuple of str
        SQL columns present, in table order, starting with ``segmentation_id``.
    records : numpy.ndarray
        Structured array with one field per name (``segmentation_id`` is filled in by
        :meth:`rows`).
    nan_columns : frozenset of str
        Float columns holding NaN (to be stored as NULL).
    """

    names: tuple[str, ...]
    records: np.ndarray
    nan_columns: frozenset[str]

    @property
    def n_cells(self) -> int:
        """Return the number of cells."""
        return len(self.records)

    def rows(self, segmentation_id: int) -> list[tuple[Any, ...]]:
        """Return the rows as tuples of Python values in :attr:`names` order (NaN kept)."""
        self.records["segmentation_id"] = segmentation_id
        return self.records.tolist()


def cell_columns(cells: Mapping[str, Any]) -> CellColumns:
    """Return the statistics of ``cells`` validated and packed for insertion.

    Parameters
    ----------
    cells : mapping of str to array_like
        Per-cell columns named as ``cellpipe.measure.regionprops_table`` names them
        (``label``, ``area``, ``centroid-0``, ``bbox-0``, ...), all 1-D and of one length.
        ``intensity_*`` and ``touches_border`` may be absent (stored as NULL).

    Raises
    ------
    ValueError
        For unknown or missing columns, columns of different lengths, non-integral or
        out-of-range values in integer columns, NaN where a value is required, or
        labels that are not unique positive integers.
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
    shapes = {name: array.shape for name, array in arrays.items()}
    n_cells = len(arrays["label"]) if arrays["label"].ndim == 1 else -1
    if any(shape != (n_cells,) for shape in shapes.values()):
        raise ValueError(f"cell statistics must be 1-D arrays of one length, got shapes {shapes}")

    names = tuple(name for name in CELL_COLUMNS if name in arrays or name == "segmentation_id")
    records = np.zeros(n_cells, dtype=[(name, _NUMPY_TYPES[_kind(name)]) for name in names])
    nan_columns = set()
    for name in names[1:]:
        records[name] = _checked(name, arrays[name])
        if _kind(name) == "float" and np.isnan(records[name]).any():
            nan_columns.add(name)

    labels = np.sort(records["label"])  # not np.unique: its first call imports numpy.ma (15 ms)
    if n_cells and (labels[0] < 1 or (labels[1:] == labels[:-1]).any()):
        raise ValueError("cell labels must be unique positive integers")
    return CellColumns(names=names, records=records, nan_columns=frozenset(nan_columns))


def insert_cells(connection: Connection, segmentation_id: int, cells: CellColumns) -> None:
    """Insert the rows of ``cells`` for ``segmentation_id`` in the connection's transaction."""
    if cells.n_cells == 0:
        return
    if connection.dialect.name == "postgresql":
        _copy_cells(connection, segmentation_id, cells)
    else:
        placeholders = ", ".join("?" for _ in cells.names)
        connection.exec_driver_sql(
            f"INSERT INTO cells ({', '.join(cells.names)}) VALUES ({placeholders})",
            cells.rows(segmentation_id),
        )


def _copy_cells(connection: Connection, segmentation_id: int, cells: CellColumns) -> None:
    # The raw psycopg connection is the one SQLAlchemy's transaction runs on.
    driver_connection = connection.connection.driver_connection
    statement = f"COPY cells ({', '.join(cells.names)}) FROM STDIN (FORMAT BINARY)"
    with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        if not cells.nan_columns:
            copy.write(_pg_binary_stream(segmentation_id, cells))
            return
        copy.set_types([_PG_BINARY[_kind(name)][0] for name in cells.names])
        nan_indices = [cells.names.index(name) for name in cells.nan_columns]
        for row in cells.rows(segmentation_id):
            values = list(row)
            for index in nan_indices:
                if values[index] != values[index]:  # NaN → NULL
                    values[index] = None
            copy.write_row(values)


def _pg_binary_stream(segmentation_id: int, cells: CellColumns) -> bytes:
    # Each tuple: int16 field count, then per field an int32 byte length and the value.
    fields: list[tuple[str, str]] = [("field_count", ">i2")]
    for index, name in enumerate(cells.names):
        fields += [(f"length_{index}", ">i4"), (f"value_{index}", _PG_BINARY[_kind(name)][1])]
    tuples = np.empty(cells.n_cells, dtype=fields)
    tuples["field_count"] = len(cells.names)
    for index, name in enumerate(cells.names):
        value_type = np.dtype(_PG_BINARY[_kind(name)][1])
        tuples[f"length_{index}"] = value_type.itemsize
        tuples[f"value_{index}"] = segmentation_id if name == "segmentation_id" else cells.records[name]
    return _PG_COPY_HEADER + tuples.tobytes() + _PG_COPY_TRAILER


def _checked(name: str, array: np.ndarray) -> np.ndarray:
    kind = _kind(name)
    if kind == "int":
        if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
            array = array.astype(np.int64)
        if array.dtype.kind not in "iub":
            raise ValueError(f"cell statistic {name} must hold integers, got dtype {array.dtype}")
        if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
            raise ValueError(f"cell statistic {name} does not fit a 32-bit integer column")
        return array
    if kind == "bool":
        if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
            raise ValueError(f"cell statistic {name} must be boolean")
        return array.astype(bool)
    try:
        floats = array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cell statistic {name} must be numeric, got dtype {array.dtype}") from error
    if name in _NOT_NULL_COLUMNS and np.isnan(floats).any():
        raise ValueError(f"cell statistic {name} has NaN values; it is required for every cell")
    return floats
