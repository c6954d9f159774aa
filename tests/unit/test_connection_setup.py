"""Pooled connections are set up so that a transaction's writes do not wait for the server."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from worker.persistence.db import SEND_BUFFER_BYTES, widen_send_buffer

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux socket buffer semantics")


def send_buffer(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def test_a_unix_socket_gets_room_for_a_transactions_writes() -> None:
    ours, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, server:
        before = send_buffer(ours)
        widen_send_buffer(ours.fileno())
        ceiling = int(Path("/proc/sys/net/core/wmem_max").read_text())
        # Linux doubles what it is given (for its own bookkeeping), after capping it.
        assert send_buffer(ours) == 2 * min(SEND_BUFFER_BYTES, ceiling) > before
        ours.sendall(b"still open")
        assert server.recv(16) == b"still open", "the connection's own descriptor is untouched"


def test_a_tcp_socket_keeps_the_buffer_the_kernel_tunes_for_it() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as ours,
    ):
        before = send_buffer(ours)
        widen_send_buffer(ours.fileno())
        assert send_buffer(ours) == before


def test_a_descriptor_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    with (tmp_path / "file").open("wb") as file:
        widen_send_buffer(file.fileno())
        file.write(b"still open")
