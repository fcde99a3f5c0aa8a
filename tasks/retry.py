"""Retry of transient failures: the database or the storage briefly unavailable.

Only errors that a later attempt can cure are retried, with exponential backoff:
a lost or refused database connection, a locked SQLite file, a storage endpoint that
does not answer. Everything else (an unreadable image, a bug) fails at once, so that
the image is recorded as failed and the batch goes on.

When the attempts below are exhausted the error propagates: the Luigi task fails, is
not recorded in the database, and the Luigi retry policy of ``luigi.cfg``
(``[scheduler] retry_delay`` / ``retry_count`` with ``[worker] keep_alive``) or the
next night's run tries it again.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

import tenacity
from sqlalchemy import exc as sa_exc

logger = logging.getLogger(__name__)

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
             first_wait_s: float = FIRST_WAIT_S, max_wait_s: float = MAX_WAIT_S) -> Callable[..., T]:
    """Return ``function`` wrapped to retry transient errors with exponential backoff.

    Parameters
    ----------
    function : callable
        What to call; its result is returned, its last error re-raised.
    attempts : int
        Calls in all, the first one included.
    first_wait_s, max_wait_s : float
        The first pause, doubled after each failure up to ``max_wait_s``.

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
    return tenacity.retry(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=first_wait_s, max=max_wait_s),
        before_sleep=lambda state: _log_retry(state, attempts),
        reraise=True,
    )(function)


def _log_retry(state: tenacity.RetryCallState, attempts: int) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.warning("transient error in %s (attempt %d of %d), retrying: %s",
                   getattr(state.fn, "__name__", state.fn), state.attempt_number, attempts, error)
