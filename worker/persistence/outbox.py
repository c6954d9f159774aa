"""Reading the transactional outbox: claim pending rows, publish them, mark them sent.

Rows are written by ``apply_batch`` in the same transaction as the change that caused them; this
module is the other half. A row is marked sent only after the broker acknowledged it, so a crash
in between publishes it again (at-least-once; lifecycle event ids are deterministic, so consumers
can deduplicate).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

#: Key of the transaction-scoped advisory lock that makes one relay at a time publish, across all
#: workers: publishing in id order from a single relay keeps the per-model order of the outbox.
RELAY_LOCK_KEY = int.from_bytes(b"mr-relay", "big", signed=True)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message to publish exactly as ``apply_batch`` queued it."""

    id: int
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


Publish = Callable[[list[OutboxRow]], Awaitable[None]]


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    """The jsonb column holds ``[[name, string-value], ...]``; Kafka wants bytes values."""
    if isinstance(raw, str | bytes):
        raw = json.loads(raw)
    return tuple((str(name), str(value).encode("utf-8")) for name, value in raw or ())


def _row(values: Sequence[Any]) -> OutboxRow:
    id_, topic, key, value, headers = values
    return OutboxRow(
        id=int(id_),
        topic=str(topic),
        key=bytes(key) if key is not None else None,
        value=bytes(value),
        headers=_headers(headers),
    )


TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%s)"

#: Read after the lock is held, so its snapshot cannot show rows another relay published while
#: this one waited for the lock.
SELECT_PENDING = (
    "SELECT id, topic, key, value, headers FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT %s"
)

MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE id = ANY(%s)"


async def claim_and_publish(
    conn: psycopg.AsyncConnection[Any], publish: Publish, limit: int = 500
) -> int:
    """Publish up to ``limit`` pending rows in id order and mark them sent; return how many.

    Returns 0 when another relay holds the lock or nothing is pending. If ``publish`` raises, the
    transaction rolls back and the rows stay pending for the next attempt. Pipelined, a drain
    waits on the database twice: for the lock and the rows, and for the commit.
    """
    async with conn.pipeline(), conn.transaction():
        lock = await conn.execute(TRY_LOCK, (RELAY_LOCK_KEY,))
        pending = await conn.execute(SELECT_PENDING, (limit,))
        locked = await lock.fetchone()
        if not locked or not locked[0]:
            return 0
        rows = [_row(r) for r in await pending.fetchall()]
        if not rows:
            return 0
        await publish(rows)
        await conn.execute(MARK_SENT, ([r.id for r in rows],))
        return len(rows)


async def backlog(conn: psycopg.AsyncConnection[Any]) -> int:
    """How many rows wait to be published (a health signal: it should stay near zero)."""
    cur = await conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def purge_sent(conn: psycopg.AsyncConnection[Any], older_than: timedelta) -> int:
    """Delete rows published more than ``older_than`` ago; return how many were deleted.

    Pending rows are never deleted, however old.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - %s",
            (older_than,),
        )
        return cur.rowcount
