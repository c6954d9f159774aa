"""Creating the worker's four topics, for the demo and the tests (production creates its own)."""

from __future__ import annotations

import asyncio

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


async def ensure_topics(
    bootstrap: str, settings: Settings, partitions: int = 6, replication: int = 1
) -> list[str]:
    """Create the input, lifecycle and dead-letter topics that do not exist; return the new ones.

    Waits until the cluster metadata lists all four, because creation is asynchronous.
    """
    options = client_options(settings)
    options["bootstrap_servers"] = bootstrap
    wanted = worker_topics(settings)
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication) for name in missing]
            )
            for topic, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {rest}")
        deadline = asyncio.get_running_loop().time() + 15
        while not set(wanted) <= set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topics {wanted} did not appear in the cluster metadata")
            await asyncio.sleep(0.1)
        return missing
    finally:
        await admin.close()
