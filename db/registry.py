"""The model registry: model versions, their cards and metrics, and the default model.

A model is keyed by (name, version). Registering the same name and version with the
same file again updates what was given (location, card, metrics, cloud ids); with a
different file it is an error, because results already stored point to that version.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.orm import Session

from cellpipe.db.engine import Bind, write_transaction
from cellpipe.db.models import Model
from cellpipe.db.values import canonical, dialect_insert, sha256_hex, utc_now


def register_model(
    bind: Bind,
    name: str,
    version: str,
    *,
    file_hash: str,
    location: str,
    card: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    cloud_ids: Mapping[str, Any] | None = None,
    make_default: bool = False,
) -> int:
    """Return the id of model ``name`` ``version``, registering it if it is new.

    Parameters
    ----------
    name, version : str
        What users call the model, e.g. ``"unet-foam"``, ``"2024.06.1"``.
    file_hash : str
        sha256 of the model file, 64 hex digits.
    location : str
        Path or URI of the model file.
    card : mapping, optional
        The model's config and training record (saved next to its weights).
    metrics : mapping, optional
        Evaluation metrics, e.g. ``{"ap50": 0.91}``.
    cloud_ids : mapping, optional
        Identifiers in cloud registries, e.g. ``{"azureml": "unet-foam:3"}``.
    make_default : bool
        Also make it the default model.

    Raises
    ------
    ValueError
        When ``name`` ``version`` is registered with another file hash.
    """
    if not name or not version:
        raise ValueError("a model needs a non-empty name and version")
    file_hash = sha256_hex(file_hash, "file_hash")
    given = {
        key: canonical(dict(value))
        for key, value in (("card", card), ("metrics", metrics), ("cloud_ids", cloud_ids))
        if value is not None
    }
    with write_transaction(bind) as connection:
        connection.execute(
            dialect_insert(connection, Model)
            .values(
                name=name,
                version=version,
                file_hash=file_hash,
                location=str(location),
                created_at=utc_now(),
                is_default=False,
                **{"card": {}, "metrics": {}, "cloud_ids": {}, **given},
            )
            .on_conflict_do_nothing(index_elements=["name", "version"])
        )
        model_id, stored_hash = connection.execute(
            select(Model.id, Model.file_hash).where(Model.name == name, Model.version == version)
        ).one()
        if stored_hash != file_hash:
            raise ValueError(
                f"model {name} {version} is already registered with file hash {stored_hash}, "
                f"not {file_hash}; register the new file under a new version"
            )
        connection.execute(update(Model).where(Model.id == model_id).values(location=str(location), **given))
        if make_default:
            _set_default(connection, model_id)
    return model_id


def set_default_model(bind: Bind, model_id: int) -> None:
    """Make ``model_id`` the default model (the previous default stops being one)."""
    with write_transaction(bind) as connection:
        _set_default(connection, model_id)


def record_promotion(bind: Bind, model_id: int, entry: Mapping[str, Any]) -> None:
    """Append ``entry`` (when, forced or not, the comparison) to the model's ``metrics["promotions"]``."""
    with write_transaction(bind) as connection:
        metrics = connection.execute(select(Model.metrics).where(Model.id == model_id)).scalar_one()
        promotions = [*(metrics or {}).get("promotions", []), canonical(dict(entry))]
        connection.execute(update(Model).where(Model.id == model_id)
                           .values(metrics={**(metrics or {}), "promotions": promotions}))


def get_default_model(bind: Bind) -> Model | None:
    """Return the default model, or None when no model is the default."""
    with _session(bind) as session:
        return session.scalars(select(Model).where(Model.is_default)).one_or_none()


def get_model(bind: Bind, name: str, version: str | None = None) -> Model | None:
    """Return model ``name`` at ``version`` (the most recently registered one when None)."""
    statement = select(Model).where(Model.name == name)
    if version is not None:
        statement = statement.where(Model.version == version)
    with _session(bind) as session:
        return session.scalars(statement.order_by(Model.created_at.desc(), Model.id.desc()).limit(1)).first()


def list_models(bind: Bind) -> list[Model]:
    """Return every registered model, newest first."""
    with _session(bind) as session:
        return list(session.scalars(select(Model).order_by(Model.created_at.desc(), Model.id.desc())))


def _set_default(connection: Connection, model_id: int) -> None:
    # Lock the models first so that two concurrent promotions queue (PostgreSQL; the
    # SQLite write lock already serialises them) instead of both unsetting the old one.
    locked = connection.execute(select(Model.id).with_for_update()).scalars().all()
    if model_id not in locked:
        raise LookupError(f"no model with id {model_id}")
    connection.execute(update(Model).where(Model.is_default, Model.id != model_id).values(is_default=False))
    connection.execute(update(Model).where(Model.id == model_id).values(is_default=True))


@contextlib.contextmanager
def _session(bind: Bind) -> Iterator[Session]:
    # Objects stay readable after the session closes (expire_on_commit=False).
    if isinstance(bind, Session):
        yield bind
    elif isinstance(bind, (Engine, Connection)):
        with Session(bind, expire_on_commit=False) as session:
            yield session
    else:
        raise TypeError(f"expected an Engine, Connection or Session, got {type(bind).__name__}")
