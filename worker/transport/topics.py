"""The worker's four topics: which are missing, and creating them for the demo and the tests.

Production provisions its own topics, with the partition counts its consumer group needs. The
worker never creates them, and it does not start while one is missing: aiokafka's metadata
requests always allow the broker to create a topic they name, so a consumer subscribed to a
missing input topic would have a broker with ``auto.create.topics.enable`` (Apache Kafka's
default) create it with the broker's default partition count, and nobody would notice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from worker.settings import Settings
from worker.transport.clients import client_options

TOPIC_ALREADY_EXISTS = 36


def worker_topics(settings: Settings) -> list[str]:
    return [
        settings.provider_sync_topic,
        settings.admin_topic,
        settings.lifecycle_topic,
        settings.dead_letter_topic,
    ]


@contextlib.asynccontextmanager
async def admin_client(options: dict[str, Any]) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on the way out."""
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


class TopicsMissing(Exception):
    """Some of the worker's topics do not exist on the broker."""


def missing_topics(existing: Iterable[str], settings: Settings) -> list[str]:
    """The worker's topics not among ``existing``, in the order of :func:`worker_topics`."""
    present = set(existing)
    return [name for name in worker_topics(settings) if name not in present]


async def check_topics(settings: Settings) -> None:
    """Raise :class:`TopicsMissing`, naming each missing topic, unless all four exist.

    Lists the cluster's topics without naming any, so the check itself creates nothing.
    """
    async with admin_client(client_options(settings)) as admin:
        missing = missing_topics(await admin.list_topics(), settings)
    if missing:
        raise TopicsMissing(
            f"topics missing at {settings.kafka_bootstrap_servers}: {', '.join(missing)}. The"
            " worker does not create its topics: create them with the partitions the consumer"
            " group needs (docs/operations.md, Topics); `modelreg doctor` lists what is missing"
        )


async def ensure_topics(
    bootstrap: str, settings: Settings, partitions: int = 6, replication: int = 1
) -> list[str]:
    """Create the input, lifecycle and dead-letter topics that do not exist; return the new ones.

    Waits until the cluster metadata lists all four, because creation is asynchronous.
    """
    async with admin_client({**client_options(settings), "bootstrap_servers": bootstrap}) as admin:
        missing = missing_topics(await admin.list_topics(), settings)
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication) for name in missing]
            )
            for topic, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {rest}")
        deadline = asyncio.get_running_loop().time() + 15
        while late := missing_topics(await admin.list_topics(), settings):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topics {late} did not appear in the cluster metadata")
            await asyncio.sleep(0.1)
        return missing
