"""Which errors the consumer treats as transient (retry, never dead-letter) and which as bugs."""

from __future__ import annotations

import psycopg
import psycopg.errors
import pytest
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
)
from psycopg_pool import PoolTimeout

from worker.persistence.db import DatabaseUnavailable
from worker.persistence.errors import is_transient


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.LockNotAvailable("could not obtain lock"),
        psycopg.errors.TooManyConnections("too many clients"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        PoolTimeout("couldn't get a connection after 30 sec"),
        psycopg.InterfaceError("the connection is closed"),
        psycopg.InterfaceError("the connection is lost"),
        DatabaseUnavailable("cannot connect to PostgreSQL at db:5432/registry: refused"),
        OSError("network is unreachable"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        KafkaConnectionError("Unable to bootstrap from [('kafka', 9092)]"),
        NodeNotReadyError("node 1 not ready"),
        RequestTimedOutError(),
        KafkaTimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_retryable_errors_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.DataError("invalid input syntax for type json"),
        psycopg.errors.InvalidTextRepresentation("invalid input syntax for type uuid"),
        psycopg.IntegrityError("duplicate key value violates unique constraint"),
        psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
        psycopg.errors.NotNullViolation("null value in column"),
        psycopg.ProgrammingError("syntax error at or near"),
        psycopg.errors.UndefinedTable('relation "outbox" does not exist'),
        psycopg.errors.InFailedSqlTransaction("current transaction is aborted"),
        psycopg.InterfaceError("you cannot use a cursor of another connection"),
        ValueError("bug"),
        KeyError("bug"),
        TypeError("bug"),
        NotImplementedError(),
        UnknownTopicOrPartitionError(),
        CommitFailedError("rebalanced"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bugs_and_bad_data_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


def test_a_transient_cause_makes_a_wrapping_error_transient() -> None:
    try:
        try:
            raise psycopg.OperationalError("connection reset")
        except psycopg.OperationalError as inner:
            raise RuntimeError("apply failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_an_error_merely_raised_while_handling_a_transient_one_is_not_transient() -> None:
    try:
        try:
            raise psycopg.OperationalError("connection reset")
        except psycopg.OperationalError:
            raise ValueError("bug in the except block") from None
    except ValueError as outer:
        assert not is_transient(outer)
