"""The outbox relay: publishes what ``apply_batch`` queued in the outbox, in order, at least once.

It runs as an asyncio task beside the consumer, on a dedicated connection that ``LISTEN``s on the
outbox channel, so a row queued after a quiet spell is published within milliseconds; it also
polls, because a notification is lost while the connection is down. Broker or database trouble
only delays publishing: the rows stay pending until a publish is acknowledged.

Drains are at least ``outbox_min_drain_interval_s`` apart. Under steady traffic nearly every batch
queues a row, and a drain per batch costs a database transaction and a producer round trip per
batch (a tenth of the worker's CPU at 1,000 events/s, docs/performance.md); paced, one drain
takes the rows of every batch committed during the pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import make_conninfo

from worker.persistence.errors import Backoff, OutageLog, conninfo_password, safe_reason
from worker.persistence.outbox import OutboxRow, claim_and_publish, purge_sent
from worker.persistence.registry import OUTBOX_CHANNEL
from worker.settings import Settings

log = logging.getLogger("modelreg.relay")

SENT_RETENTION = timedelta(days=1)
PURGE_INTERVAL_S = 3600.0
BATCH_LIMIT = 500


class Producer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` the relay uses."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...


class PublishFailed(Exception):
    """The broker did not acknowledge every row; the rows stay pending."""


async def publish_rows(producer: Producer, rows: list[OutboxRow]) -> None:
    """Send every row and wait until the broker acknowledged all of them.

    Sends are pipelined (one future each); aiokafka keeps at most one request in flight per
    partition, so rows of one model (one key, one partition) keep their outbox order.
    """
    try:
        futures = [
            await producer.send(row.topic, value=row.value, key=row.key, headers=list(row.headers))
            for row in rows
        ]
    except Exception as error:
        raise PublishFailed(safe_reason(error)) from error
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise PublishFailed(safe_reason(result)) from result


class OutboxRelay:
    """Publishes pending outbox rows; ``run`` forever as a task, ``flush`` once at shutdown."""

    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        *,
        batch_limit: int = BATCH_LIMIT,
        purge_interval_s: float = PURGE_INTERVAL_S,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.batch_limit = batch_limit
        self.purge_interval_s = purge_interval_s
        #: Called with the row count of every transaction that published rows (the metrics).
        self.on_published = on_published
        self.conninfo = make_conninfo(settings.database_url, application_name="modelreg-relay")
        self._password = conninfo_password(settings.database_url)
        self.database = OutageLog(log, "outbox relay: database")
        self.broker = OutageLog(log, "outbox relay: Kafka")
        self._next_purge = 0.0
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """End ``run`` after the drain in progress: cancelling it mid-drain would publish rows
        that are then not marked sent, and so published twice."""
        self._stop.set()

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _publish(self, rows: list[OutboxRow]) -> None:
        await publish_rows(self.producer, rows)

    async def drain(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Publish until nothing is pending (or another relay holds the lock); return the count.

        Raises PublishFailed when the broker fails, psycopg errors when the database does.
        """
        total = 0
        while True:
            count = await claim_and_publish(conn, self._publish, limit=self.batch_limit)
            total += count
            if count:
                self.broker.recovered()
                if self.on_published is not None:
                    self.on_published(count)
            if count < self.batch_limit:
                break
        return total

    async def _maybe_purge(self, conn: psycopg.AsyncConnection[Any]) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self.purge_interval_s
        purged = await purge_sent(conn, SENT_RETENTION)
        if purged:
            log.info("purged %d outbox rows published more than %s ago", purged, SENT_RETENTION)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=10
        )

    async def run(self) -> None:
        """Publish forever: on every notification, and every ``outbox_poll_interval_s``, at most
        once per ``outbox_min_drain_interval_s``."""
        db_backoff = Backoff(self.settings.retry_max_backoff_s)
        broker_backoff = Backoff(self.settings.retry_max_backoff_s)
        poll = self.settings.outbox_poll_interval_s
        min_interval = self.settings.outbox_min_drain_interval_s
        while not self._stop.is_set():
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    self.database.recovered()
                    db_backoff.reset()
                    while not self._stop.is_set():
                        wait = poll
                        started = time.monotonic()
                        try:
                            await self.drain(conn)
                            broker_backoff.reset()
                            await self._maybe_purge(conn)
                        except PublishFailed as error:
                            self.broker.failed(str(error))
                            wait = broker_backoff.next()
                        # Rows committed during the pause are in the next drain.
                        await self._pause(min_interval - (time.monotonic() - started))
                        # Notifications that arrived meanwhile are in the backlog and end the
                        # wait at once; otherwise wake up after the poll interval.
                        async for _ in conn.notifies(timeout=wait, stop_after=1):
                            pass
            except (psycopg.Error, OSError) as error:
                self.database.failed(safe_reason(error, self._password))
                await self._pause(db_backoff.next())
            except Exception:
                # A bug must not silently end publishing: log it loudly and start over.
                log.exception("outbox relay failed unexpectedly; restarting it")
                await self._pause(db_backoff.next())

    async def flush(self, timeout: float) -> int:
        """One last drain on a fresh connection (shutdown): rows left over wait for the next run."""
        try:
            async with asyncio.timeout(timeout), await self._connect() as conn:
                return await self.drain(conn)
        except (psycopg.Error, PublishFailed, OSError, TimeoutError) as error:
            log.warning(
                "final outbox flush incomplete (%s); pending rows are published on the next start",
                safe_reason(error, self._password),
            )
            return 0


async def stop_task(task: asyncio.Task[Any] | None, grace: float = 0.0) -> None:
    """Give a background task ``grace`` seconds to end by itself, then cancel it."""
    if task is None or task.done():
        return
    if grace > 0:
        await asyncio.wait({task}, timeout=grace)
        if task.done():
            return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
