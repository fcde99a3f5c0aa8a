"""Outages of the database or the storage that a batch rode out, told once each, not once per task.

:func:`cellpipe.tasks.retry.retrying` tells the :class:`OutageLog` of its process about
every transient error and every success. The first error opens an outage and logs one
line; the errors that follow are counted, not logged; a task that gives up (its
retries spent; the scheduler runs it again after ``[scheduler] retry_delay``) logs one
"still unreachable" line per ``wave_s``, so that an outage of minutes over hundreds of
tasks logs a line per retry wave; the first success closes the outage with one line.
What was logged ends up in the run's summary (:attr:`BatchReport.outages`), so that a
night whose images all ended stored can say what it rode out and still exit 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, replace

from sqlalchemy import exc as sa_exc

from cellpipe.db.engine import error_cause

logger = logging.getLogger(__name__)

#: Seconds between two "still unreachable" lines of one outage (the scheduler's retry delay by default).
DEFAULT_WAVE_S = 60.0


@dataclass(frozen=True)
class Outage:
    """One stretch of time during which the database (or the storage) did not answer.

    Attributes
    ----------
    service : {"database", "storage"}
    cause : str
        The first error's message, in one line.
    started, ended : datetime.datetime
        UTC; ``ended`` is None while the outage lasts (or when the run ended during it).
    failures : int
        Calls that failed during it (retried attempts included).
    """

    service: str
    cause: str
    started: dt.datetime
    ended: dt.datetime | None
    failures: int

    @property
    def seconds(self) -> float | None:
        """Return how long it lasted, or None if it had not ended."""
        return None if self.ended is None else (self.ended - self.started).total_seconds()

    def describe(self) -> str:
        """Return one line, e.g. ``database unreachable 02:10:04-02:10:46 UTC (42 s), recovered: …``."""
        start = self.started.strftime("%H:%M:%S")
        if self.ended is None:
            return f"{self.service} unreachable since {start} UTC, not recovered: {self.cause}"
        return (f"{self.service} unreachable {start}-{self.ended.strftime('%H:%M:%S')} UTC "
                f"({self.seconds:.0f} s, {self.failures} failed calls), recovered: {self.cause}")

    def as_dict(self) -> dict:
        """Return JSON-ready values."""
        return {"service": self.service, "cause": self.cause, "started": self.started.isoformat(),
                "ended": self.ended.isoformat() if self.ended else None, "seconds": self.seconds,
                "failures": self.failures}


class OutageLog:
    """The outages of one process, with one log line per outage, retry wave and recovery.

    Parameters
    ----------
    quiet : bool
        Log nothing (the outages are still recorded): for a check whose failure the
        caller reports itself in one line.
    wave_s : float
        Seconds between two "still unreachable" lines of one outage.
    """

    def __init__(self, *, quiet: bool = False, wave_s: float = DEFAULT_WAVE_S) -> None:
        self.quiet = quiet
        self.wave_s = wave_s
        self._lock = threading.Lock()
        self._closed: list[Outage] = []
        self._open: dict[str, Outage] = {}
        self._last_wave: dict[str, float] = {}

    def failed(self, error: BaseException) -> None:
        """Record a transient ``error``; log it only when it opens an outage."""
        service = service_of(error)
        with self._lock:
            current = self._open.get(service)
            if current is not None:
                self._open[service] = replace(current, failures=current.failures + 1)
                return
            self._open[service] = Outage(service, error_cause(error), _now(), None, 1)
            self._last_wave[service] = time.monotonic()
        self._log("%s unreachable, retrying (one line per retry wave until it answers): %s",
                  service, error_cause(error))

    def gave_up(self, error: BaseException) -> None:
        """Record that a call's retries are spent; log at most one line per ``wave_s`` of the outage."""
        service = service_of(error)
        if service not in self._open:
            self.failed(error)
            return
        with self._lock:
            current = self._open.get(service)
            if current is None or time.monotonic() - self._last_wave.get(service, 0.0) < self.wave_s:
                return
            self._last_wave[service] = time.monotonic()
            waited = (_now() - current.started).total_seconds()
        self._log("%s still unreachable after %.0f s; its tasks are tried again later: %s",
                  service, waited, error_cause(error))

    def succeeded(self, service: str) -> None:
        """Close the open outage of ``service`` (``"database"`` or ``"storage"``): a call to it went through."""
        if service not in self._open:
            return
        with self._lock:
            outage = self._open.pop(service, None)
            if outage is None:
                return
            outage = replace(outage, ended=_now())
            self._closed.append(outage)
        self._log("%s answers again after %.0f s", outage.service, outage.seconds)

    def outages(self, since: dt.datetime | None = None) -> list[Outage]:
        """Return the outages that started at or after ``since`` (all by default), the open ones last."""
        with self._lock:
            every = [*self._closed, *self._open.values()]
        return [outage for outage in every if since is None or outage.started >= since]

    def _log(self, message: str, *args: object) -> None:
        if not self.quiet:
            logger.warning(message, *args)


#: The outage log of this process (every worker process has its own).
OUTAGES = OutageLog()


def service_of(error: BaseException) -> str:
    """Return ``"database"`` for SQLAlchemy's errors, else ``"storage"``."""
    return "database" if isinstance(error, sa_exc.SQLAlchemyError) else "storage"


def merged(*groups: list[Outage]) -> list[Outage]:
    """Return the outages of ``groups`` in time order, each once (a worker in this process reports the same ones)."""
    unique = {(outage.service, outage.started): outage for group in groups for outage in group}
    return sorted(unique.values(), key=lambda outage: outage.started)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
