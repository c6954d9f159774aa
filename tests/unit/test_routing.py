"""Routing only, with FastStream's in-memory TestKafkaBroker: which topics reach the handler, how.

The database and the real broker are out of the picture: the processor records what it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.middlewares import AckPolicy

from worker.decoding import Record
from worker.persistence.registry import BatchReport
from worker.settings import Settings, load_settings
from worker.transport.app import BatchProcessor, RawBatch, Worker


class RecordingProcessor(BatchProcessor):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.batches: list[list[Record]] = []

    async def _attempt(self, records: Sequence[Record]) -> BatchReport:
        self.batches.append(list(records))
        return BatchReport()


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        provider_sync_topic="test.provider-sync",
        admin_topic="test.admin",
        kafka_group_id="routing-test",
        batch_max_records=123,
        batch_timeout_ms=77,
        kafka_fetch_max_wait_ms=33,
    )


@pytest.fixture
def worker(settings: Settings) -> tuple[Worker, RecordingProcessor, list[RawBatch]]:
    processor = RecordingProcessor(settings)
    committed: list[RawBatch] = []

    async def commit(_consumer: Any, raw: RawBatch) -> None:
        committed.append(raw)

    return Worker(settings, processor=processor, commit=commit), processor, committed


def test_one_batch_subscriber_listens_on_both_input_topics(worker: Any, settings: Settings) -> None:
    subscribers = list(worker[0].broker.subscribers)
    assert len(subscribers) == 1
    subscriber = subscribers[0]
    assert isinstance(subscriber, BatchSubscriber)
    assert sorted(subscriber.topic_names) == sorted(settings.input_topics)
    assert subscriber.group_id == "routing-test"
    assert subscriber.max_records == 123
    assert subscriber.batch_timeout_ms == 77


def test_offsets_are_never_committed_automatically(worker: Any) -> None:
    subscriber = next(iter(worker[0].broker.subscribers))
    assert subscriber.ack_policy is AckPolicy.MANUAL
    assert subscriber._connection_args["enable_auto_commit"] is False
    assert subscriber._connection_args["auto_offset_reset"] == "earliest"


def test_a_fetch_waits_on_the_broker_no_longer_than_configured(worker: Any) -> None:
    # Some Kafka-compatible brokers can hold a fetch for the whole wait: it bounds the latency.
    subscriber = next(iter(worker[0].broker.subscribers))
    assert subscriber._connection_args["fetch_max_wait_ms"] == 33


@pytest.mark.parametrize("topic", ["test.provider-sync", "test.admin"])
async def test_a_message_on_an_input_topic_reaches_the_handler_as_a_record(
    worker: Any, topic: str
) -> None:
    app_worker, processor, committed = worker
    async with TestKafkaBroker(app_worker.broker) as broker:
        await broker.publish(b'{"not": "checked here"}', topic=topic, key=b"model-1")
        assert await app_worker.wait_in_flight()

    assert len(processor.batches) == 1
    (record,) = processor.batches[0]
    assert record.topic == topic
    assert record.key == b"model-1"
    assert record.value == b'{"not": "checked here"}'
    assert len(committed) == 1, "the batch is committed once it is applied"


async def test_bytes_faststream_could_not_decode_still_reach_the_handler(worker: Any) -> None:
    app_worker, processor, _ = worker
    async with TestKafkaBroker(app_worker.broker) as broker:
        await broker.publish(
            b"\xff\xfe not utf-8",
            topic="test.admin",
            key=b"k",
            headers={"content-type": "application/json"},
        )
        assert await app_worker.wait_in_flight()
    assert [r.value for r in processor.batches[0]] == [b"\xff\xfe not utf-8"]


async def test_other_topics_do_not_reach_the_handler(worker: Any) -> None:
    app_worker, processor, _ = worker
    async with TestKafkaBroker(app_worker.broker) as broker:
        await broker.publish(b"{}", topic="model-registry.lifecycle.v1", key=b"m")
    assert processor.batches == []


async def test_a_fetched_batch_reaches_the_handler_without_a_hop_through_a_thread(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hop per fetch hands the GIL to a thread and back while the event loop has work to do.
    hops: list[Any] = []
    real_run_sync = anyio.to_thread.run_sync

    async def counting_run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await real_run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    app_worker, processor, _ = worker
    async with TestKafkaBroker(app_worker.broker) as broker:
        for n in range(3):
            await broker.publish(b"{}", topic="test.provider-sync", key=f"model-{n}".encode())
        assert await app_worker.wait_in_flight()

    assert sum(len(batch) for batch in processor.batches) == 3
    assert hops == []
