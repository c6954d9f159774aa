"""Which failures are the infrastructure's fault (retry the batch) and which are a bug or bad data.

The consumer never dead-letters or skips a batch because of a transient error: the database or
the broker being away for a while must delay processing, not lose events. Everything else is
also retried by the consumer, but logged as an alert-worthy bug.
"""

from __future__ import annotations

import logging
import random
import time

import psycopg
import psycopg.errors
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from psycopg_pool import PoolTimeout

from worker.persistence.db import DatabaseUnavailable, conninfo_password, safe_reason

__all__ = ["Backoff", "OutageLog", "conninfo_password", "is_transient", "safe_reason"]

#: Conditions a retry of the same work can clear: the server went away, a concurrent
#: transaction won, or a lock/connection could not be had in time.
_TRANSIENT: tuple[type[BaseException], ...] = (
    # Connection failures, resets, admin shutdown, too many connections, query canceled, and
    # the concurrency classes below are all OperationalError subclasses; named for clarity.
    psycopg.OperationalError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.LockNotAvailable,
    PoolTimeout,
    DatabaseUnavailable,
    OSError,  # includes ConnectionError and TimeoutError
    KafkaConnectionError,
    NodeNotReadyError,
    RequestTimedOutError,
    KafkaTimeoutError,
)

_MAX_CHAIN = 8


def _is_closed_connection(exc: BaseException) -> bool:
    """psycopg raises InterfaceError for some uses of a connection that was lost under it."""
    if not isinstance(exc, psycopg.InterfaceError):
        return False
    text = str(exc).lower()
    return "closed" in text or "lost" in text or "bad state" in text


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same work later can succeed; such errors are never dead-lettered.

    Follows ``__cause__`` a few levels, so a transient error wrapped by a helper
    (``raise X from error``) is still recognized.
    """
    current: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if current is None:
            return False
        if isinstance(current, _TRANSIENT) or _is_closed_connection(current):
            return True
        current = current.__cause__
    return False


class Backoff:
    """Exponential delays for retrying the same work: 0.1 s doubling up to ``cap``, +-10% jitter.

    The jitter keeps several workers from hammering a recovering database in lockstep.
    """

    def __init__(self, cap: float, initial: float = 0.1) -> None:
        self.cap = cap
        self.initial = min(initial, cap)
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.initial * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return float(delay * random.uniform(0.9, 1.1))

    def reset(self) -> None:
        self.attempt = 0


class OutageLog:
    """Logs an outage once when it starts and once when it ends, not on every retry."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.down_since: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, reason: str) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.logger.warning("%s unavailable, retrying: %s", self.what, reason)

    def recovered(self) -> None:
        if self.down_since is not None:
            seconds = time.monotonic() - self.down_since
            self.down_since = None
            self.logger.warning("%s available again after %.1f s", self.what, seconds)
