"""The FastStream application: one batch subscriber on both input topics, plus the outbox relay.

Run it with ``faststream run worker.transport.app:app`` or ``modelreg worker``.

Delivery guarantee: a batch's offsets are committed only after ``apply_batch`` committed its
effects, batches are applied and committed strictly in the order they were fetched, and nothing
after a batch that could not be applied is applied or committed, however long the database is
away (see ``pipeline.py``). So a later commit can never cover an earlier batch that failed (the
classic pitfall of consumers that log an exception and move on). Replays after a crash or a
rebalance are harmless: the registry deduplicates on ``eventId``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeGuard

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.message import FAKE_CONSUMER
from faststream.kafka.message import KafkaMessage as KafkaStreamMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from worker.decoding import Record
from worker.observability.http import HealthServer
from worker.observability.logs import log_batch
from worker.observability.metrics import WorkerMetrics
from worker.persistence.db import DatabaseUnavailable, describe_conninfo, make_pool
from worker.persistence.errors import (
    Backoff,
    OutageLog,
    conninfo_password,
    is_transient,
    safe_reason,
)
from worker.persistence.migrate import migrate
from worker.persistence.outbox import backlog
from worker.persistence.registry import BatchReport, PreparedBatch, apply_batch, is_replay
from worker.persistence.session import ReadAheadSession, TakeNext
from worker.persistence.sunset import run_sunset_loop
from worker.settings import ConfigError, Settings, get_settings
from worker.transport.clients import client_options, kafka_security
from worker.transport.pipeline import BatchPipeline, RawBatch
from worker.transport.polling import poll_without_pause
from worker.transport.relay import OutboxRelay, stop_task
from worker.transport.topics import check_topics

log = logging.getLogger("modelreg.worker")
broker_log = logging.getLogger("modelreg.broker")


class TopicsCheckedAtStartup(logging.Filter):
    """Drops FastStream's reminder that it creates no topics, logged as a warning at every start:
    by then :func:`check_topics` has found all four, or named the missing ones and stopped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Auto create topics is disabled")


broker_log.addFilter(TopicsCheckedAtStartup())

ApplyBatch = Callable[
    [psycopg.AsyncConnection[Any], Sequence[Record], Settings], Awaitable[BatchReport]
]
CommitBatch = Callable[[Any, RawBatch], Awaitable[None]]

#: How long one attempt waits for a pooled connection; short, so shutdown is never held up long.
POOL_CHECKOUT_TIMEOUT_S = 5.0


async def parse_raw_batch(raw: RawBatch) -> KafkaStreamMessage:
    """Wrap the records without interpreting them.

    FastStream's default parser decodes every header as UTF-8 and its decoder tries JSON; a
    publisher's bad bytes would make it raise before the handler runs, and FastStream would log
    and skip the batch. Bad input must reach ``apply_batch`` to be dead-lettered instead.
    """
    first, last = raw[0], raw[-1]
    return KafkaStreamMessage(
        body=b"",  # unread: the decoder hands the handler ``raw_message`` itself
        raw_message=raw,
        message_id=f"{first.topic}-{first.partition}-{first.offset}-{last.offset}",
        consumer=FAKE_CONSUMER,  # never used: offsets are committed by commit_offsets
    )


async def decode_raw_batch(message: KafkaStreamMessage) -> RawBatch:
    """The handler's argument: the records as fetched (their values are decoded per record)."""
    raw: RawBatch = message.raw_message
    return raw


def batch_offsets(raw: RawBatch) -> dict[TopicPartition, int]:
    """The offset to commit per partition: one past the last record of this batch."""
    offsets: dict[TopicPartition, int] = {}
    for record in raw:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


async def commit_offsets(consumer: AIOKafkaConsumer, raw: RawBatch) -> None:
    """Commit exactly this batch. Partitions lost to a rebalance are left to their new owner."""
    offsets = batch_offsets(raw)
    assigned = consumer.assignment()
    owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if len(owned) < len(offsets):
        log.info(
            "partitions %s were revoked while their batch was applied; their new owner re-reads"
            " it and the registry deduplicates",
            sorted(f"{tp.topic}[{tp.partition}]" for tp in offsets.keys() - owned.keys()),
        )
    if not owned:
        return
    try:
        await consumer.commit(owned)
    except (CommitFailedError, IllegalStateError) as error:
        log.warning(
            "offset commit failed after a rebalance (%s); the new owner re-reads the batch and"
            " the registry deduplicates it",
            safe_reason(error),
        )
    except KafkaError as error:
        log.warning(
            "offset commit failed (%s); the batch is applied, a later commit covers it or it is"
            " re-read and deduplicated",
            safe_reason(error),
        )


def tune_collector(young_threshold: int) -> None:
    """Collect the youngest generation every ``young_threshold`` allocations (0: leave it).

    The objects of a batch die by reference counting, so the cyclic collector has little to
    find; run every 700 allocations (Python's default) it still walks the young objects
    thousands of times per burst, and its older generations with them.
    """
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)


class BatchProcessor:
    """Applies one consumed batch, retrying until it is applied or the worker stops.

    With ``batch_read_ahead`` (the default) batches go through a read-ahead session that holds
    one pooled connection (see ``worker/persistence/session.py``); a batch the session fails
    to apply is applied on its own, with the retries and isolation of ``apply_batch``.
    """

    def __init__(self, settings: Settings, apply: ApplyBatch = apply_batch) -> None:
        self.settings = settings
        self.apply = apply
        self.pool: AsyncConnectionPool | None = None
        self.stopping = asyncio.Event()
        self.database = OutageLog(log, "database")
        self.applied_batches = 0
        #: Set by the Worker; None when the processor runs alone (unit tests).
        self.metrics: WorkerMetrics | None = None
        self._password = conninfo_password(settings.database_url)
        self._session: ReadAheadSession | None = None

    async def _attempt(self, records: Sequence[Record]) -> BatchReport:
        if self.pool is None:
            raise DatabaseUnavailable("the connection pool is not open")
        async with self.pool.connection(timeout=POOL_CHECKOUT_TIMEOUT_S) as conn:
            return await self.apply(conn, records, self.settings)

    async def process(self, records: Sequence[Record], take_next: TakeNext | None = None) -> bool:
        """True once the batch is applied; False if the worker began stopping while it failed.

        Transient errors (database away, serialization failures) and bugs alike are retried with
        exponential backoff for as long as the worker runs: skipping a batch would lose events,
        dead-lettering it would blame the publisher for our outage.
        """
        started = time.perf_counter()
        if take_next is not None and self._reads_ahead(records):
            report = await self._apply_in_session(records, take_next)
            if report is not None:
                self._applied(report, len(records), started)
                return True
        backoff = Backoff(self.settings.retry_max_backoff_s)
        while True:
            started = time.perf_counter()
            try:
                report = await self._attempt(records)
            except Exception as error:
                if self.metrics is not None:
                    self.metrics.record_retry()
                if is_transient(error):
                    self.database.failed(safe_reason(error, self._password))
                else:
                    log.exception(
                        "applying a batch of %d records failed with an unexpected error;"
                        " retrying (this is a bug: the batch is stuck until it is fixed)",
                        len(records),
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), backoff.next())
                if self.stopping.is_set():
                    return False
                continue
            self._applied(report, len(records), started)
            return True

    def _applied(self, report: BatchReport, records: int, started: float) -> None:
        self.database.recovered()
        self.applied_batches += 1
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.record_batch(report, records, elapsed)
        log_batch(log, report, records, elapsed)

    def _reads_ahead(self, records: Sequence[Record]) -> TypeGuard[PreparedBatch]:
        return (
            self.settings.batch_read_ahead
            and self.pool is not None
            and self.apply is apply_batch
            and isinstance(records, PreparedBatch)
        )

    async def _apply_in_session(
        self, batch: PreparedBatch, take_next: TakeNext
    ) -> BatchReport | None:
        """The batch applied in the read-ahead session; None if it was not (apply it alone)."""
        assert self.pool is not None
        try:
            if self._session is None:
                conn = await self.pool.getconn(timeout=POOL_CHECKOUT_TIMEOUT_S)
                try:
                    self._session = await ReadAheadSession.open(conn, self.settings)
                except BaseException:
                    await self.pool.putconn(conn)
                    raise
            report = await self._session.apply(batch, take_next)
            batch.release()
            await self._session.committed()
        except Exception as error:
            await self.close()
            if isinstance(error, psycopg.Error | PoolTimeout) or is_transient(error):
                reason = (
                    "an event of it was applied before (a replay)"
                    if is_replay(error)
                    else safe_reason(error, self._password)
                )
                log.info("applying a batch of %d records on its own: %s", len(batch), reason)
            else:
                log.exception(
                    "the read-ahead session failed unexpectedly; applying the batch on its own"
                )
            return None
        return report

    async def close(self) -> None:
        """End the read-ahead session, if any, and give its connection back to the pool."""
        session, self._session = self._session, None
        if session is None:
            return
        await session.close()
        if self.pool is not None:
            await self.pool.putconn(session.conn)


class Worker:
    """Everything one worker process runs, wired from settings; ``app`` is what FastStream runs.

    Startup: migrate (unless disabled), open the pool and the relay's producer, start the broker,
    start the relay. Shutdown: finish the batch in the database and commit its offsets (up to
    ``shutdown_timeout_s``), stop fetching, flush the outbox once more, close everything.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        apply: ApplyBatch = apply_batch,
        commit: CommitBatch = commit_offsets,
        processor: BatchProcessor | None = None,
    ) -> None:
        self.settings = settings
        self.processor = processor or BatchProcessor(settings, apply)
        self.metrics = WorkerMetrics()
        self.processor.metrics = self.metrics
        self.http: HealthServer | None = None
        if settings.http_port is not None:
            self.http = HealthServer(
                settings.http_port, readiness=self.readiness, metrics=self.render_metrics
            )
        self.commit = commit
        self.producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._sunset_task: asyncio.Task[None] | None = None
        self.pipeline = BatchPipeline(settings, self.processor, self._commit, self._halt)
        self._sunset_stop = asyncio.Event()
        self.broker = KafkaBroker(
            settings.bootstrap_servers,
            security=kafka_security(settings),
            enable_idempotence=settings.kafka_idempotent_producer,
            graceful_timeout=settings.shutdown_timeout_s,
            client_id="model-registry",
            # FastStream's per-message access log ("Received"/"Processed") at debug level,
            # through our logger: its own would print colored text to stdout, bypassing the
            # configured format (MODELREG_LOG_FORMAT=json).
            log_level=logging.DEBUG,
            logger=broker_log,
            # Topics are provisioned with their partition counts by ops (or ensure_topics);
            # a worker must not create them with broker defaults (see check_topics).
            allow_auto_create_topics=False,
            # The one handler takes the fetched records as they are. With dependency injection
            # on, resolving a message argument runs a synchronous lookup in a worker thread
            # for every batch: a thread hop and a GIL handover per fetch.
            apply_types=False,
        )
        self.subscriber: BatchSubscriber = self.broker.subscriber(
            *settings.input_topics,
            batch=True,
            group_id=settings.kafka_group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            max_records=settings.batch_max_records,
            batch_timeout_ms=settings.batch_timeout_ms,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            parser=parse_raw_batch,
            decoder=decode_raw_batch,
        )
        self.subscriber(self.handle_batch)
        poll_without_pause(self.subscriber)
        self.app = FastStream(
            self.broker,
            logger=log,
            on_startup=[self.startup],
            after_startup=[self.settle_heap, self.start_relay],
            on_shutdown=[self.shutdown],
            after_shutdown=[self.cleanup],
        )

    async def handle_batch(self, raw: RawBatch) -> None:
        """Hand the fetched batch to the pipeline and go back to fetching (see pipeline.py)."""
        self.metrics.record_fetched(r.timestamp for r in raw)
        await self.pipeline.put(raw)

    async def wait_in_flight(self) -> bool:
        """Wait until every batch handed over is applied and committed; False if one was not."""
        return await self.pipeline.drained()

    async def _commit(self, raw: RawBatch) -> None:
        await self.commit(self.subscriber.consumer, raw)
        self.metrics.record_committed(r.timestamp for r in raw)

    def _halt(self) -> None:
        self.processor.stopping.set()
        self.app.exit()

    @property
    def http_port(self) -> int | None:
        """The port the HTTP endpoints listen on (the bound one when 0 was configured)."""
        return self.http.port if self.http is not None else None

    async def startup(self) -> None:
        # Liveness answers while the worker migrates and connects; readiness waits for those.
        if self.http is not None:
            await self.http.start()
        try:
            await self._startup()
        except BaseException:
            if self.http is not None:
                await self.http.stop()
            raise

    async def _startup(self) -> None:
        settings = self.settings
        if settings.migrate_on_start:
            applied = await asyncio.to_thread(migrate, settings.database_url)
            for name in applied:
                log.info("applied migration %s", name)
        pool = make_pool(
            make_conninfo(settings.database_url, application_name="modelreg-worker"),
            max_size=3,
        )
        try:
            await pool.open(wait=True, timeout=10)
        except PoolTimeout:
            await pool.close()
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {describe_conninfo(settings.database_url)}"
            ) from None
        producer = AIOKafkaProducer(
            **client_options(settings),
            client_id="model-registry-relay",
            acks="all",
            enable_idempotence=settings.kafka_idempotent_producer,
        )
        try:
            await producer.start()
            # Before the consumer subscribes: its metadata requests could have the broker
            # create a missing input topic with the broker's default partition count.
            await check_topics(settings)
        except BaseException:
            await pool.close()
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self.processor.pool = pool
        self.producer = producer
        self.relay = OutboxRelay(settings, producer, on_published=self.metrics.record_drain)

    def settle_heap(self) -> None:
        """Set the garbage collector up for the long run, once everything is loaded.

        Everything loaded so far (modules, schemas, clients) lives as long as the process: it is
        kept out of the collector's full passes, which otherwise pause the event loop for tens of
        milliseconds each, and the youngest generation is collected less often.
        """
        gc.freeze()
        tune_collector(self.settings.gc_young_threshold)

    async def start_relay(self) -> None:
        """Start the background tasks: the outbox relay and the sunset archiver."""
        assert self.relay is not None and self.processor.pool is not None
        self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        self._sunset_task = asyncio.create_task(
            run_sunset_loop(self.processor.pool, self.settings, self._sunset_stop), name="sunset"
        )

    async def shutdown(self) -> None:
        """Finish the batch in hand, then publish what it queued, before the broker closes."""
        self.processor.stopping.set()
        # The batch in the database is applied and its offsets committed while the consumer
        # still owns its partitions; then fetching stops.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pipeline.stop(), self.settings.shutdown_timeout_s)
        await self.subscriber.stop()
        self._sunset_stop.set()
        await stop_task(self._sunset_task, grace=5.0)
        if self.relay is not None:
            self.relay.request_stop()
        await stop_task(self._relay_task, grace=self.settings.outbox_poll_interval_s + 5)
        if self.relay is not None:
            await self.relay.flush(timeout=min(10.0, self.settings.shutdown_timeout_s))

    async def readiness(self) -> list[str]:
        """Why the worker cannot do its job right now: database, broker, partitions."""
        problems: list[str] = []
        pool = self.processor.pool
        if pool is None:
            problems.append("database pool not open")
        else:
            try:
                async with pool.connection(timeout=2.0) as conn:
                    await conn.execute("SELECT 1")
            except Exception as error:
                problems.append(
                    f"database: {safe_reason(error, conninfo_password(self.settings.database_url))}"
                )
        consumer = self.subscriber.consumer
        if consumer is None:
            problems.append("consumer not started")
        elif not consumer.assignment():
            problems.append("no partitions assigned")
        return problems

    async def refresh_gauges(self) -> None:
        """Outbox backlog and consumer lag, read at scrape time (so they are never stale)."""
        pool = self.processor.pool
        if pool is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0), pool.connection(timeout=2.0) as conn:
                    self.metrics.outbox_backlog.set(await backlog(conn))
        consumer = self.subscriber.consumer
        if consumer is not None:
            lags: list[tuple[str, int, int]] = []
            for tp in sorted(consumer.assignment()):
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue  # nothing fetched from this partition yet
                with contextlib.suppress(Exception):
                    position = await asyncio.wait_for(consumer.position(tp), 1.0)
                    lags.append((tp.topic, tp.partition, max(0, highwater - position)))
            self.metrics.set_lag(lags)

    async def render_metrics(self) -> tuple[bytes, str]:
        await self.refresh_gauges()
        return self.metrics.render(), self.metrics.content_type

    async def cleanup(self) -> None:
        if self.http is not None:
            await self.http.stop()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        await self.processor.close()
        if self.processor.pool is not None:
            await self.processor.pool.close()
            self.processor.pool = None


def create_worker(settings: Settings, **options: Any) -> Worker:
    return Worker(settings, **options)


def create_app(settings: Settings) -> FastStream:
    """The FastStream app for ``settings``; building it connects to nothing."""
    return create_worker(settings).app


def _module_app() -> FastStream:
    """The app ``faststream run worker.transport.app:app`` runs, built from the environment.

    Importing this module must neither connect nor fail: with a bad environment the app is a
    stub whose startup raises the ConfigError, so the operator sees it when running the worker.
    """
    try:
        return create_app(get_settings())
    except ConfigError as error:
        problem = error

        def report() -> None:
            raise problem

        return FastStream(KafkaBroker(), logger=log, on_startup=[report])


app = _module_app()
