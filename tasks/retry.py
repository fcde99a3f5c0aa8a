"""Retry of transient failures: the database or the storage briefly unavailable.

Only errors that a later attempt can cure are retried, with exponential backoff:
a lost or refused database connection, a locked SQLite file, a storage endpoint that
does not answer. Everything else (an unreadable image, a bug) fails at once, so that
the image is recorded as failed and the batch goes on.

When the attempts below are exhausted the error propagates: the Luigi task fails, is
not recorded in the database, and the Luigi retry policy of ``luigi.cfg``
(``[scheduler] retry_delay`` / ``retry_count`` with ``[worker] keep_alive``) or the
next night's run tries it again.

Errors and successes are told to the process's :class:`~cellpipe.tasks.outages.OutageLog`,
which logs one line when an outage starts, one per retry wave while it lasts and one
when it ends, instead of a line per attempt of every task.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import tenacity
from sqlalchemy import exc as sa_exc

from cellpipe.tasks.outages import OUTAGES, OutageLog

T = TypeVar("T")

#: Attempts per call (the first one included) before the error propagates.
ATTEMPTS = 5
#: Backoff: 0.5 s, 1 s, 2 s, 4 s between attempts (at most MAX_WAIT_S each).
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 8.0

# Storage errors by class name, so that this module does not import the Azure SDK:
# cellpipe.azure.StorageUnreachableError and azure.core's connection errors.
_TRANSIENT_NAMES = frozenset({"StorageUnreachableError", "ServiceRequestError", "ServiceResponseError"})


def is_transient(error: BaseException) -> bool:
    """Return whether ``error`` is worth retrying (database or storage briefly unavailable)."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(error).__mro__)


def retrying(function: Callable[..., T], *, attempts: int = ATTEMPTS,
             first_wait_s: float = FIRST_WAIT_S, max_wait_s: float = MAX_WAIT_S,
             outages: OutageLog | None = None, service: str = "database") -> Callable[..., T]:
    """Return ``function`` wrapped to retry transient errors with exponential backoff.

    Parameters
    ----------
    function : callable
        What to call; its result is returned, its last error re-raised.
    attempts : int
        Calls in all, the first one included.
    first_wait_s, max_wait_s : float
        The first pause, doubled after each failure up to ``max_wait_s``.
    outages : OutageLog, optional
        Where errors and successes are told. Default: this process's
        :data:`~cellpipe.tasks.outages.OUTAGES`.
    service : {"database", "storage"}
        What ``function`` talks to: its success ends an outage of that service only.

    Examples
    --------
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("refused")
    ...     return "ok"
    >>> retrying(flaky, first_wait_s=0)()
    'ok'
    """
    log = OUTAGES if outages is None else outages
    retried = tenacity.retry(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=first_wait_s, max=max_wait_s),
        before_sleep=lambda state: log.failed(state.outcome.exception()),
        reraise=True,
    )(function)

    @functools.wraps(function)
    def call(*args, **kwargs) -> T:
        try:
            result = retried(*args, **kwargs)
        except Exception as error:
            if is_transient(error):
                log.gave_up(error)
            raise
        log.succeeded(service)
        return result

    return call
