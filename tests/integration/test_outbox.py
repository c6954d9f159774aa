"""Claiming and publishing the outbox against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.support.waiting import wait_until
from worker.persistence import registry
from worker.persistence.outbox import (
    RELAY_LOCK_KEY,
    OutboxRow,
    backlog,
    claim_and_publish,
    purge_sent,
)
from worker.settings import Settings
from worker.transport.relay import OutboxRelay, stop_task


async def queue(conn: psycopg.AsyncConnection, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await conn.execute(
            "INSERT INTO outbox (dedup_key, topic, key, value, headers)"
            " VALUES (%s, %s, %s, %s, %s)",
            (f"k{i}", "t", f"m{i % 3}".encode(), f"v{i}".encode(), json.dumps([["type", f"x{i}"]])),
        )


@pytest.fixture
async def conn(clean_db: str):
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as c:
        yield c


async def test_pending_rows_are_published_in_id_order_then_marked_sent(conn) -> None:
    await queue(conn, 5)
    seen: list[OutboxRow] = []

    async def publish(rows: list[OutboxRow]) -> None:
        seen.extend(rows)

    assert await claim_and_publish(conn, publish, limit=3) == 3
    assert await claim_and_publish(conn, publish, limit=3) == 2
    assert await claim_and_publish(conn, publish, limit=3) == 0
    assert [r.value for r in seen] == [f"v{i}".encode() for i in range(5)]
    assert seen[0].key == b"m0"
    assert seen[0].headers == (("type", b"x0"),)
    assert await backlog(conn) == 0


async def test_a_failed_publish_leaves_the_rows_pending(conn) -> None:
    await queue(conn, 2)

    async def broken(rows: list[OutboxRow]) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        await claim_and_publish(conn, broken)
    assert await backlog(conn) == 2


async def test_only_one_relay_publishes_at_a_time(conn, clean_db: str) -> None:
    await queue(conn, 2)
    calls: list[int] = []

    async def publish(rows: list[OutboxRow]) -> None:
        calls.append(len(rows))

    async with await psycopg.AsyncConnection.connect(clean_db) as other:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock(%s)", (RELAY_LOCK_KEY,))
            assert await claim_and_publish(conn, publish) == 0, "lock busy: nothing published"
        assert await claim_and_publish(conn, publish) == 2
    assert calls == [2]


async def test_purge_deletes_only_old_published_rows(conn) -> None:
    await queue(conn, 3)
    await conn.execute(
        "UPDATE outbox SET sent_at = now() - interval '2 days' WHERE dedup_key = 'k0'"
    )
    await conn.execute("UPDATE outbox SET sent_at = now() WHERE dedup_key = 'k1'")
    assert await purge_sent(conn, timedelta(days=1)) == 1
    cur = await conn.execute("SELECT dedup_key FROM outbox ORDER BY id")
    assert [r[0] for r in await cur.fetchall()] == ["k1", "k2"]


class RecordingProducer:
    """Acknowledges every send at once and remembers when each row was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    async def send(self, topic: str, value: bytes | None = None, **_: Any) -> asyncio.Future[Any]:
        self.sent.append((time.monotonic(), value or b""))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def commit_one(conn: psycopg.AsyncConnection, i: int) -> None:
    """One transaction queueing one row through ``write_outbox``, which notifies the relay."""
    row = registry.OutboxRow(
        dedup_key=f"k{i}", topic="t", key=b"m", value=f"v{i}".encode(), headers=[]
    )
    async with conn.transaction(), conn.cursor() as cur:
        await registry.write_outbox(cur, [row])


async def wait_for_sent(producer: RecordingProducer, count: int) -> None:
    async def sent() -> bool:
        return len(producer.sent) >= count

    await wait_until(sent, 20, f"{count} rows published", interval=0.01)


async def test_under_steady_commits_the_relay_drains_once_per_interval_not_once_per_commit(
    conn, clean_db: str
) -> None:
    interval = 1.5
    settings = Settings(database_url=clean_db, outbox_min_drain_interval_s=interval)
    producer = RecordingProducer()
    drains: list[int] = []
    relay = OutboxRelay(settings, producer, on_published=drains.append)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.5)  # listening
        await commit_one(conn, 0)
        await wait_for_sent(producer, 1)
        first_drain = producer.sent[0][0]
        for i in range(1, 6):  # five commits, five notifications, within the pause
            await commit_one(conn, i)
        await wait_for_sent(producer, 6)
    finally:
        relay.request_stop()
        await stop_task(task, grace=5)
    later = [at for at, _ in producer.sent[1:]]
    assert min(later) - first_drain >= interval - 0.05, "the next drain waited out the interval"
    assert max(later) - min(later) < 0.5, "the five rows went out in one drain"
    assert drains == [1, 5]
    assert [value for _, value in producer.sent] == [f"v{i}".encode() for i in range(6)]
    assert await backlog(conn) == 0


async def test_a_quiet_outbox_is_drained_as_soon_as_a_change_commits(conn, clean_db: str) -> None:
    settings = Settings(
        database_url=clean_db, outbox_min_drain_interval_s=2.0, outbox_poll_interval_s=60.0
    )
    producer = RecordingProducer()
    relay = OutboxRelay(settings, producer)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(2.3)  # listening, and the start-up drain's pause is over
        committed = time.monotonic()
        await commit_one(conn, 0)
        await wait_for_sent(producer, 1)
    finally:
        relay.request_stop()
        await stop_task(task, grace=5)
    assert producer.sent[0][0] - committed < 1.5, "published on the notification, not the poll"
