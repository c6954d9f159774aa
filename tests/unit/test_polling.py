"""How the consumer loop polls: an empty poll is followed by the next poll, not by a pause.

A fake consumer stands in for aiokafka's: its ``getmany`` returns at once what it is given, as
the real one does once its timeout is over, so any time a poll takes is the subscriber's own.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from worker.settings import load_settings
from worker.transport.app import Worker
from worker.transport.polling import poll_batch

TIMEOUT_MS = 200


def record(partition: int, offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord("t", partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])


class AnsweringConsumer:
    """``getmany`` answers with the next of ``answers``, and remembers how it was called."""

    def __init__(self, *answers: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> Any:
        self.calls.append({"timeout_ms": timeout_ms, "max_records": max_records})
        return self.answers.pop(0)


@pytest.fixture
def worker() -> Worker:
    return Worker(load_settings(batch_timeout_ms=TIMEOUT_MS, batch_max_records=321))


async def test_a_poll_returns_every_partitions_records_in_one_tuple() -> None:
    consumer = AnsweringConsumer(
        {
            TopicPartition("t", 0): [record(0, 5), record(0, 6)],
            TopicPartition("t", 1): [record(1, 9)],
        }
    )

    polled = await poll_batch(consumer, 50, 10)  # type: ignore[arg-type]

    assert [(r.partition, r.offset) for r in polled] == [(0, 5), (0, 6), (1, 9)]
    assert consumer.calls == [{"timeout_ms": 50, "max_records": 10}]


async def test_the_workers_consumer_loop_polls_with_the_configured_wait_and_batch_size(
    worker: Worker,
) -> None:
    consumer = AnsweringConsumer({TopicPartition("t", 0): [record(0, 1)]})

    polled = await worker.subscriber.get_msg(consumer)  # type: ignore[arg-type]

    assert [r.offset for r in polled] == [1]
    assert consumer.calls == [{"timeout_ms": TIMEOUT_MS, "max_records": 321}]


async def test_after_an_empty_poll_the_worker_polls_again_at_once(worker: Worker) -> None:
    consumer = AnsweringConsumer({})

    started = time.monotonic()
    assert await worker.subscriber.get_msg(consumer) == ()  # type: ignore[arg-type]
    assert time.monotonic() - started < TIMEOUT_MS / 1000 / 2


async def test_faststreams_own_poll_pauses_after_an_empty_poll() -> None:
    # Why the worker replaces it. Should this fail, FastStream no longer pauses and
    # ``poll_without_pause`` can go.
    subscriber = Worker(load_settings(batch_timeout_ms=TIMEOUT_MS)).broker.subscriber(
        "other-topic", batch=True, batch_timeout_ms=TIMEOUT_MS
    )
    consumer = AnsweringConsumer({})

    started = time.monotonic()
    assert await subscriber.get_msg(consumer) == ()  # type: ignore[arg-type]
    assert time.monotonic() - started >= TIMEOUT_MS / 1000 * 0.9
