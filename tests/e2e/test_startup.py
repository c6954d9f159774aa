"""What a worker checks before it consumes anything."""

from __future__ import annotations

import logging
import secrets

import pytest

from tests.e2e.conftest import Env
from worker.transport.topics import TopicsMissing, admin_client


async def _topics(bootstrap: str) -> list[str]:
    async with admin_client({"bootstrap_servers": bootstrap}) as admin:
        return list(await admin.list_topics())


async def test_a_worker_whose_input_topic_is_missing_stops_at_startup_and_creates_none(
    e2e: Env,
) -> None:
    # aiokafka's metadata requests let the broker create any topic they name, with the
    # broker's default partition count: the worker must stop before its consumer asks.
    absent = f"absent-{secrets.token_hex(4)}"

    with pytest.raises(TopicsMissing, match=f"{absent}.provider-sync, {absent}.lifecycle"):
        await e2e.start_worker(
            provider_sync_topic=f"{absent}.provider-sync", lifecycle_topic=f"{absent}.lifecycle"
        )

    assert not {t for t in await _topics(e2e.bootstrap) if t.startswith(absent)}


async def test_a_worker_on_its_topics_starts_without_the_frameworks_generic_warning(
    e2e: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    await e2e.start_worker()

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "topics" in w], warnings
