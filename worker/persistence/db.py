"""Connection helpers shared by the migration runner, the worker and the tests.

They exist so that every "cannot reach the database" path produces the same one-line message,
naming host, port and database but never the password (connection strings end up in logs).
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from contracts import jsoncodec


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached; the message is safe to log and show to an operator."""


def describe_conninfo(conninfo: str) -> str:
    """Render a libpq conninfo or URL as ``host:port/dbname``, leaving out user and password.

    Falls back to a placeholder when the string cannot be parsed, rather than echoing it (it may
    hold a password).
    """
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "<unparsable connection string>"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "postgres")
    return f"{host}:{port}/{dbname}"


def safe_reason(exc: BaseException, *secrets: str | None) -> str:
    """The error on one line, with any of ``secrets`` (passwords) blanked out, for logs."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    for secret in secrets:
        if secret:
            reason = reason.replace(secret, "***")
    return reason


def conninfo_password(conninfo: str) -> str | None:
    """The password inside a conninfo, so it can be scrubbed from messages that echo it."""
    try:
        value = conninfo_to_dict(conninfo).get("password")
    except psycopg.Error:
        return None
    return str(value) if value else None


def unavailable(conninfo: str, error: BaseException) -> DatabaseUnavailable:
    """Build the standard DatabaseUnavailable for ``error`` raised while connecting."""
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {describe_conninfo(conninfo)}: "
        f"{safe_reason(error, conninfo_password(conninfo))}"
    )


def connect(conninfo: str, **kw: Any) -> psycopg.Connection[Any]:
    """``psycopg.connect`` that turns connection failures into DatabaseUnavailable.

    ``connect_timeout`` defaults to 10 s so an unreachable host fails fast instead of hanging.
    """
    kw.setdefault("connect_timeout", 10)
    try:
        return psycopg.connect(conninfo, **kw)
    except psycopg.OperationalError as error:
        raise unavailable(conninfo, error) from None


def make_pool(conninfo: str, min_size: int = 1, max_size: int = 4) -> AsyncConnectionPool:
    """An async pool, created closed: the caller opens it (``await pool.open()``) in its loop."""
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"connect_timeout": 10},
        configure=_configure,
    )


#: What a Unix-socket connection may have in flight to the server: a transaction's writes.
SEND_BUFFER_BYTES: Final = 4 * 1024 * 1024


def widen_send_buffer(fd: int) -> None:
    """Let a transaction's writes queue in the kernel instead of holding up the event loop.

    In pipeline mode the worker sends its writes while the server is still busy with earlier
    ones. A Unix socket's send buffer is fixed (``net.core.wmem_default``, 208 KB on Linux)
    while 1,000 events write about 1.2 MB, so the worker would wait for the server to read each
    statement instead of folding and decoding. TCP sizes its buffers itself, and setting one
    would switch that off, so only Unix sockets are touched; the kernel caps the size at
    ``net.core.wmem_max``.
    """
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        if sock.family == socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # Reading jsonb (every loaded model's meta) is a hot path: parse it with orjson.
    set_json_loads(jsoncodec.loads, conn)
    widen_send_buffer(conn.pgconn.socket)
