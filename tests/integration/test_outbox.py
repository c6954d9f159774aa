"""Claiming and publishing the outbox against a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from worker.persistence.outbox import (
    RELAY_LOCK_KEY,
    OutboxRow,
    backlog,
    claim_and_publish,
    purge_sent,
)


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
