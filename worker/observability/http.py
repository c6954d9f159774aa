"""The worker's HTTP endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``.

Served by ``asyncio.start_server`` on the worker's own event loop, not by a thread: an answer
from ``/healthz`` then proves the loop that consumes and applies batches is alive, and the
readiness checks can use the worker's async pool and consumer directly. The HTTP handled is
the tiny subset probes and Prometheus use (GET/HEAD, no body, ``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("modelreg.http")

#: How long a client may take to send its request line and headers.
REQUEST_TIMEOUT_S: Final = 5.0
#: Upper bound of a readiness check or a metrics refresh: probes must get an answer quickly.
CHECK_TIMEOUT_S: Final = 3.0
MAX_HEADER_LINES: Final = 100

_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Readiness = Callable[[], Awaitable[list[str]]]
"""Returns the reasons the worker is not ready; empty when it is."""
Metrics = Callable[[], Awaitable[tuple[bytes, str]]]
"""Returns the exposition text and its content type."""


class HealthServer:
    """Serves the three endpoints on ``host:port``; port 0 binds a free port (see ``port``)."""

    def __init__(
        self, port: int, *, readiness: Readiness, metrics: Metrics, host: str = "0.0.0.0"
    ) -> None:
        self.host = host
        self.requested_port = port
        self.readiness = readiness
        self.metrics = metrics
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int | None:
        """The bound port once started (the real one when 0 was asked for)."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.requested_port)
        log.info("HTTP endpoints on %s:%s (/healthz, /readyz, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def route(self, method: str, path: str) -> Response:
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n")
        if path == "/healthz":
            return Response(200, b"ok\n")
        if path == "/readyz":
            try:
                problems = await asyncio.wait_for(self.readiness(), CHECK_TIMEOUT_S)
            except TimeoutError:
                problems = ["readiness checks timed out"]
            if problems:
                return Response(503, ("not ready: " + "; ".join(problems) + "\n").encode())
            return Response(200, b"ready\n")
        if path == "/metrics":
            body, content_type = await self.metrics()
            return Response(200, body, content_type)
        return Response(404, b"not found: try /healthz, /readyz or /metrics\n")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path = await asyncio.wait_for(_read_request(reader), REQUEST_TIMEOUT_S)
            response = await self.route(method, path)
            head = (
                f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(head if method == "HEAD" else head + response.body)
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a broken or slow client; nothing to answer
        except Exception:
            log.exception("HTTP endpoint failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """``(method, path)`` of the request line; headers are read and ignored."""
    parts = (await reader.readline()).decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request")
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
    return parts[0].upper(), parts[1]
