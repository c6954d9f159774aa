"""End-to-end fixtures: a real worker (the FastStream app) in-process, on the real broker and DB.

Each test gets its own database (``clean_db``), its own four topics and its own consumer group, so
tests never see each other's messages or offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.support.waiting import wait_until
from worker.settings import Settings, load_settings
from worker.transport.app import Worker, create_worker
from worker.transport.topics import ensure_topics

log = logging.getLogger("modelreg.tests.e2e")


@dataclass
class RunningWorker:
    """A worker whose FastStream app runs in a background task of the test's event loop."""

    worker: Worker
    task: asyncio.Task[None]

    @property
    def settings(self) -> Settings:
        return self.worker.settings

    async def stop(self, timeout: float = 30.0) -> None:
        """What SIGTERM does: ``app.exit()``, then wait for the graceful shutdown to finish."""
        self.worker.app.exit()
        await asyncio.wait_for(self.task, timeout)


@dataclass
class Env:
    """The settings every worker of one test shares, and helpers to start workers with them."""

    settings: Settings
    bootstrap: str
    _running: list[RunningWorker]

    async def start_worker(self, **overrides: Any) -> RunningWorker:
        settings = self.settings.model_copy(update=overrides)
        worker = create_worker(settings)
        task = asyncio.create_task(worker.app.run(), name=f"worker-{len(self._running)}")
        running = RunningWorker(worker, task)
        self._running.append(running)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not getattr(worker.app, "running", False):
            if task.done():
                task.result()  # raises the startup error
                raise AssertionError("worker exited during startup")
            if loop.time() > deadline:
                raise AssertionError("worker did not start within 30 s")
            await asyncio.sleep(0.05)
        return running

    async def stop_all(self) -> None:
        for running in self._running:
            if not running.task.done():
                with contextlib.suppress(Exception):
                    await running.stop()
            if not running.task.done():
                running.task.cancel()
                with contextlib.suppress(BaseException):
                    await running.task

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.settings.database_url) as conn:
            cur = await conn.execute(sql, params or None)
            return list(await cur.fetchall())

    async def wait_for(
        self, predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = ""
    ) -> None:
        await wait_until(predicate, timeout, what or str(predicate))

    async def processed_count(self) -> int:
        rows = await self.query("SELECT count(*) FROM processed_events")
        return int(rows[0][0])

    async def wait_processed(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` distinct event ids were processed and the outbox is fully published."""

        async def done() -> bool:
            if await self.processed_count() < count:
                return False
            rows = await self.query("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            return int(rows[0][0]) == 0

        await self.wait_for(done, timeout, f"{count} processed events and an empty outbox")


@pytest.fixture
async def e2e(
    clean_db: str, kafka_bootstrap: str, kafka_supports_idempotence: bool
) -> AsyncIterator[Env]:
    """A test's own database, topics (6 partitions each) and consumer group; workers stopped
    at the end."""
    tag = secrets.token_hex(4)
    settings = load_settings(
        database_url=clean_db,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_idempotent_producer=kafka_supports_idempotence,
        kafka_group_id=f"e2e-{tag}",
        provider_sync_topic=f"e2e-{tag}.provider-sync",
        admin_topic=f"e2e-{tag}.admin",
        lifecycle_topic=f"e2e-{tag}.lifecycle",
        dead_letter_topic=f"e2e-{tag}.dead-letter",
        batch_max_records=100,
        batch_timeout_ms=20,
        retry_max_backoff_s=0.5,
        outbox_poll_interval_s=0.2,
        shutdown_timeout_s=10,
        migrate_on_start=False,
    )
    await ensure_topics(kafka_bootstrap, settings, partitions=6)
    env = Env(settings, kafka_bootstrap, [])
    try:
        yield env
    finally:
        await env.stop_all()
