"""The consumer's poll: wait for records once, not twice.

FastStream's batch subscriber polls with ``getmany(timeout_ms=batch_timeout_ms)`` and, when that
returns nothing, sleeps another ``batch_timeout_ms`` before polling again. aiokafka's ``getmany``
has already waited that long, and it returns as soon as a fetch brings records, so the sleep only
delays them: whenever the broker answers a fetch later than the poll's timeout, the records it
brings wait out the sleep too. Under steady traffic on a busy broker that is a burst of records
each up to a whole timeout late (docs/performance.md, round fourteen).
"""

from __future__ import annotations

from itertools import chain

from aiokafka import AIOKafkaConsumer
from faststream.kafka.subscriber.usecase import BatchSubscriber

from worker.transport.pipeline import RawBatch


async def poll_batch(
    consumer: AIOKafkaConsumer, timeout_ms: int, max_records: int | None
) -> RawBatch:
    """What ``getmany`` returns within ``timeout_ms``, flattened; no pause when it is nothing.

    ``getmany`` waits for the whole timeout when nothing comes (it does not spin, with or without
    partitions assigned), so polling again at once is not a busy loop.
    """
    batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    return tuple(chain.from_iterable(batches.values()))


def poll_without_pause(subscriber: BatchSubscriber) -> None:
    """Make the subscriber's consume loop poll with :func:`poll_batch`."""

    async def get_msg(consumer: AIOKafkaConsumer) -> RawBatch:
        return await poll_batch(consumer, subscriber.batch_timeout_ms, subscriber.max_records)

    subscriber.get_msg = get_msg  # type: ignore[method-assign]
