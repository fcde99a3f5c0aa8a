"""Small value helpers shared by the write modules: canonical JSON values, hashes, time."""

from __future__ import annotations

import datetime as dt
import math
import os
from typing import Any, Mapping

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite


def dialect_insert(connection: Connection, entity: Any) -> Any:
    """Return an INSERT of ``entity`` that knows ON CONFLICT on the connection's dialect."""
    # ON CONFLICT is spelled the same on both, but lives in each dialect's insert().
    if connection.dialect.name == "postgresql":
        return postgresql.insert(entity)
    return sqlite.insert(entity)


def utc_now() -> dt.datetime:
    """Return the current time in UTC (timezone-aware)."""
    return dt.datetime.now(dt.timezone.utc)


def sha256_hex(value: str, name: str) -> str:
    """Return ``value`` as 64 lowercase hex digits; raise ValueError naming ``name`` otherwise."""
    text = str(value).lower()
    if len(text) != 64 or any(character not in "0123456789abcdef" for character in text):
        raise ValueError(f"{name} must be a sha256 digest of 64 hex digits, got {value!r}")
    return text


def canonical(value: Any) -> Any:
    """Return ``value`` as plain JSON values: numpy scalars, paths, dates, integral floats normalised."""
    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value
