"""Claims: which run is segmenting an image × model × parameters right now.

Two ``cellpipe run`` processes that share no scheduler list the same images and would
both segment each of them. Before segmenting, a worker takes the claim of its key
(:func:`claim_segmentation`); a key claimed by another live process is left to it, and
the claim is dropped once the result is stored (:func:`release_claim`). A claim whose
holder is gone is taken over:

- its run is no longer ``running`` (finished, failed, or marked ``interrupted`` by the
  next :func:`cellpipe.db.start_run` on its host);
- its process no longer exists on this host;
- it is older than ``stale_after_s`` (a holder on another host that died silently).

Claims are taken in a write transaction (``BEGIN IMMEDIATE`` on SQLite, the row locked
with ``FOR UPDATE`` on PostgreSQL), so two workers asking at once get one answer each.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from cellpipe.db.engine import Bind, read_connection, write_transaction
from cellpipe.db.models import Claim, Run
from cellpipe.db.values import dialect_insert, utc_now
from cellpipe.db.writes import as_utc, process_exists

#: Seconds after which a claim counts as abandoned whoever holds it: far longer than
#: segmenting one image takes.
DEFAULT_STALE_AFTER_S = 3600.0
_CHUNK = 500  # image ids per IN (...) list, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class ClaimHolder:
    """Who holds a claim: a run (None for a bare ``luigi`` run), on a host, in a process."""

    run_id: int | None
    host: str
    pid: int

    def describe(self) -> str:
        """Return e.g. ``run 12 (pid 4242 on node-3)``."""
        run = f"run {self.run_id}" if self.run_id is not None else "a run"
        return f"{run} (pid {self.pid} on {self.host})"


def claim_segmentation(bind: Bind, image_id: int, model_id: int, param_hash: str, *, run_id: int | None,
                       stale_after_s: float = DEFAULT_STALE_AFTER_S) -> ClaimHolder | None:
    """Take the claim of (image, model, parameter hash) for this process; return None, or who holds it.

    Parameters
    ----------
    bind : Engine, Connection or Session
    image_id, model_id : int
    param_hash : str
        :func:`cellpipe.db.parameter_hash` of the segmentation parameters.
    run_id : int or None
        The run of this process.
    stale_after_s : float
        Age after which another holder's claim is taken over anyway.

    Returns
    -------
    ClaimHolder or None
        None when this process holds the claim now (also when it held it already);
        else the live holder, whose work this process should leave alone.
    """
    me = ClaimHolder(run_id, socket.gethostname(), os.getpid())
    key = (Claim.image_id == image_id, Claim.model_id == model_id, Claim.param_hash == param_hash)
    mine = dict(run_id=me.run_id, host=me.host, pid=me.pid, claimed_at=utc_now())
    with write_transaction(bind) as connection:
        taken = connection.execute(
            dialect_insert(connection, Claim)
            .values(image_id=image_id, model_id=model_id, param_hash=param_hash, **mine)
            .on_conflict_do_nothing()
            .returning(Claim.image_id)
        ).first()
        if taken is not None:
            return None
        row = connection.execute(
            select(Claim.run_id, Claim.host, Claim.pid, Claim.claimed_at, Run.status)
            .outerjoin(Run, Run.id == Claim.run_id)
            .where(*key)
            .with_for_update(of=Claim)
        ).one()
        holder = ClaimHolder(row.run_id, row.host, row.pid)
        if (holder.host, holder.pid) != (me.host, me.pid) and not _abandoned(holder, row.status, as_utc(row.claimed_at), stale_after_s):
            return holder
        connection.execute(update(Claim).where(*key).values(**mine))
        return None


def release_claim(bind: Bind, image_id: int, model_id: int, param_hash: str) -> None:
    """Drop this process's claim of (image, model, parameter hash), if it holds it."""
    with write_transaction(bind) as connection:
        connection.execute(
            delete(Claim).where(Claim.image_id == image_id, Claim.model_id == model_id,
                                Claim.param_hash == param_hash, Claim.host == socket.gethostname(),
                                Claim.pid == os.getpid())
        )


def claim_holders(bind: Bind, image_ids: list[int], model_id: int, param_hash: str,
                  stale_after_s: float = DEFAULT_STALE_AFTER_S) -> dict[int, ClaimHolder]:
    """Return ``{image id: holder}`` of the live claims of other processes among ``image_ids``."""
    me = (socket.gethostname(), os.getpid())
    rows = []
    with read_connection(bind) as connection:
        for start in range(0, len(image_ids), _CHUNK):
            rows += connection.execute(
                select(Claim.image_id, Claim.run_id, Claim.host, Claim.pid, Claim.claimed_at, Run.status)
                .outerjoin(Run, Run.id == Claim.run_id)
                .where(Claim.image_id.in_(image_ids[start:start + _CHUNK]), Claim.model_id == model_id,
                       Claim.param_hash == param_hash)
            ).all()
    return {row.image_id: ClaimHolder(row.run_id, row.host, row.pid) for row in rows
            if (row.host, row.pid) != me
            and not _abandoned(ClaimHolder(row.run_id, row.host, row.pid), row.status, as_utc(row.claimed_at),
                               stale_after_s)}


def _abandoned(holder: ClaimHolder, run_status: str | None, claimed_at: dt.datetime, stale_after_s: float) -> bool:
    if holder.run_id is not None and run_status != "running":
        return True
    if holder.host == socket.gethostname() and not process_exists(holder.pid):
        return True
    return (utc_now() - claimed_at).total_seconds() > stale_after_s
