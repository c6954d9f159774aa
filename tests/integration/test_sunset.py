"""Specification of sunset automation (worker.persistence.sunset) against a real PostgreSQL.

A legacy model whose ``sunsetDate`` has passed is archived by the worker itself, once: not twice
with several workers, not again after a restart, and with lifecycle events whose ids depend only
on the model and its sunset date.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from contracts.events import lifecycle_event_id, sunset_causation_id
from worker.persistence.db import make_pool
from worker.persistence.queries import resolve_model
from worker.persistence.sunset import archive_sunset_models, run_sunset_loop
from worker.settings import load_settings

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PAST = "2025-05-31T00:00:00+00:00"
FUTURE = "2025-07-01T00:00:00+00:00"
TOPIC = "test.lifecycle"


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as connection:
        yield connection


async def add(
    conn: psycopg.AsyncConnection[Any],
    model_id: str,
    meta: dict[str, Any] | None = None,
    *,
    available: bool = True,
    legacy: bool = False,
    archived: bool = False,
) -> None:
    await conn.execute(
        "INSERT INTO models (id, name, provider, is_available, is_legacy, is_archived, meta,"
        " updated_at) VALUES (%s, %s, 'openai', %s, %s, %s, %s, '2025-01-01')",
        (model_id, model_id.upper(), available, legacy, archived, Jsonb(meta or {})),
    )


async def flags(conn: psycopg.AsyncConnection[Any], model_id: str) -> tuple[bool, bool, bool]:
    cur = await conn.execute(
        "SELECT is_available, is_legacy, is_archived FROM models WHERE id = %s", (model_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def outbox(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Queued lifecycle events, decoded, in queue order (with their row's key and topic)."""
    cur = await conn.execute("SELECT dedup_key, topic, key, value FROM outbox ORDER BY id")
    events = []
    for dedup_key, topic, key, value in await cur.fetchall():
        event = json.loads(bytes(value))
        assert dedup_key == f"lifecycle:{event['eventId']}"
        assert bytes(key) == event["modelId"].encode()
        events.append({"topic": topic, **event})
    return events


async def sunset(conn: psycopg.AsyncConnection[Any], now: datetime = NOW) -> list[str]:
    return await archive_sunset_models(conn, now, lifecycle_topic=TOPIC)


# --- what gets archived -------------------------------------------------------------------------


async def test_only_legacy_models_past_their_sunset_are_archived(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await add(conn, "due", {"sunsetDate": PAST}, legacy=True)
    await add(conn, "due-now", {"sunsetDate": NOW.isoformat()}, legacy=True)
    await add(conn, "not-yet", {"sunsetDate": FUTURE}, legacy=True)
    await add(conn, "not-legacy", {"sunsetDate": PAST})
    await add(conn, "no-sunset", legacy=True)
    await add(conn, "done", {"sunsetDate": PAST}, legacy=True, archived=True, available=False)
    await add(conn, "garbled", {"sunsetDate": "next tuesday"}, legacy=True)

    assert await sunset(conn) == ["due", "due-now"]

    assert await flags(conn, "due") == (False, True, True)
    assert await flags(conn, "not-yet") == (True, True, False)
    assert await flags(conn, "not-legacy") == (True, False, False)
    assert await flags(conn, "garbled") == (True, True, False)
    cur = await conn.execute("SELECT updated_at FROM models WHERE id = 'due'")
    assert await cur.fetchone() == (NOW.replace(tzinfo=None),)


async def test_archiving_emits_archived_and_availability_events_caused_by_the_sunset(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await add(conn, "old", {"sunsetDate": PAST}, legacy=True)

    await sunset(conn)

    cause = sunset_causation_id("old", datetime.fromisoformat(PAST))
    archived, availability = await outbox(conn)
    assert archived["type"] == "model.archived"
    assert archived["topic"] == TOPIC
    assert archived["causationId"] == str(cause)
    assert archived["eventId"] == str(lifecycle_event_id(cause, "model.archived", "old"))
    assert archived["state"] == {"isAvailable": False, "isLegacy": True, "isArchived": True}
    assert archived["occurredAt"].startswith("2025-06-01T12:00:00")
    assert "sunset" in archived["reason"]
    assert "affectedModelIds" not in archived  # nobody points at it
    assert availability["type"] == "model.availability_changed"
    assert availability["eventId"] == str(
        lifecycle_event_id(cause, "model.availability_changed", "old")
    )


async def test_an_unavailable_model_only_gets_the_archived_event(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await add(conn, "old", {"sunsetDate": PAST}, legacy=True, available=False)

    await sunset(conn)

    assert [e["type"] for e in await outbox(conn)] == ["model.archived"]


async def test_a_provider_withdrawal_is_superseded_by_the_archive(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await add(conn, "old", {"sunsetDate": PAST}, legacy=True, available=False)
    await conn.execute("INSERT INTO model_sync_state VALUES ('old', '2025-01-01T00:00:00Z', true)")

    await sunset(conn)

    cur = await conn.execute("SELECT withdrawn FROM model_sync_state WHERE model_id = 'old'")
    assert await cur.fetchone() == (False,)


async def test_the_archived_event_names_the_legacy_models_that_pointed_at_it(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await add(conn, "v3", {"sunsetDate": PAST}, legacy=True)
    await add(conn, "v2", {"legacyReplacementModelId": "v3"}, legacy=True)
    await add(conn, "v1", {"legacyReplacementModelId": "v3"}, legacy=True)
    await add(conn, "fork", {"legacyReplacementModelId": "v3"})  # not legacy: not affected

    await sunset(conn)

    [archived] = [e for e in await outbox(conn) if e["type"] == "model.archived"]
    assert archived["affectedModelIds"] == ["v1", "v2"]


# --- exactly once -------------------------------------------------------------------------------


async def test_two_concurrent_workers_archive_each_model_exactly_once(clean_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as setup:
        for i in range(60):
            await add(setup, f"m{i:02d}", {"sunsetDate": PAST}, legacy=True)
        workers = [
            await psycopg.AsyncConnection.connect(clean_db, autocommit=True) for _ in range(2)
        ]
        try:
            first, second = await asyncio.gather(*(sunset(w) for w in workers))
        finally:
            for worker in workers:
                await worker.close()

        assert not set(first) & set(second)
        assert sorted(first + second) == [f"m{i:02d}" for i in range(60)]
        events = await outbox(setup)
        assert len(events) == 120  # archived + availability_changed, once per model
        assert len({e["eventId"] for e in events}) == 120


async def test_a_model_locked_by_another_worker_is_skipped_not_waited_for(
    clean_db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    await add(conn, "a", {"sunsetDate": PAST}, legacy=True)
    await add(conn, "b", {"sunsetDate": PAST}, legacy=True)
    async with await psycopg.AsyncConnection.connect(clean_db) as other:
        # Another worker is in the middle of archiving "a".
        await other.execute("SELECT 1 FROM models WHERE id = 'a' FOR UPDATE")

        assert await asyncio.wait_for(sunset(conn), timeout=5) == ["b"]

        await other.execute("UPDATE models SET is_archived = true WHERE id = 'a'")
        await other.commit()

    assert await sunset(conn) == []


async def test_a_rerun_after_a_restart_changes_nothing(conn: psycopg.AsyncConnection[Any]) -> None:
    await add(conn, "old", {"sunsetDate": PAST}, legacy=True)
    await sunset(conn)
    queued = await outbox(conn)

    assert await sunset(conn, NOW + timedelta(days=1)) == []
    assert await outbox(conn) == queued


async def test_event_ids_are_the_same_whichever_run_emits_them(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await add(conn, "old", {"sunsetDate": PAST}, legacy=True)
    # A first run crashes before committing (rolled back) ...
    async with conn.transaction(force_rollback=True):
        await sunset(conn)
        crashed = [e["eventId"] for e in await outbox(conn)]
    assert await outbox(conn) == []

    # ... and a later run, at another time, emits the very same event ids.
    await sunset(conn, NOW + timedelta(hours=3))

    assert [e["eventId"] for e in await outbox(conn)] == crashed


async def test_an_unarchived_model_is_not_archived_again_for_the_same_sunset(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await add(conn, "old", {"sunsetDate": PAST}, legacy=True)
    await sunset(conn)
    # An admin brings it back on purpose; the sunset has been carried out once already.
    await conn.execute("UPDATE models SET is_archived = false, is_available = true")

    assert await sunset(conn) == []
    assert await flags(conn, "old") == (True, True, False)

    # A new sunset date is a new cause.
    await conn.execute("""UPDATE models SET meta = '{"sunsetDate": "2025-06-01T06:00:00+00:00"}'""")
    assert await sunset(conn) == ["old"]


# --- the periodic task --------------------------------------------------------------------------


async def test_the_worker_loop_archives_due_models_and_stops_when_asked(
    clean_db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    await add(conn, "old", {"sunsetDate": PAST}, legacy=True)
    settings = load_settings(database_url=clean_db, sunset_interval_s=0.05, lifecycle_topic=TOPIC)
    pool = make_pool(clean_db)
    await pool.open()
    try:
        for _restart in range(2):
            stop = asyncio.Event()
            task = asyncio.create_task(run_sunset_loop(pool, settings, stop))
            for _ in range(100):
                if (await flags(conn, "old"))[2]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # a few more ticks
            stop.set()
            await asyncio.wait_for(task, timeout=5)
    finally:
        await pool.close()

    assert await flags(conn, "old") == (False, True, True)
    assert [e["type"] for e in await outbox(conn)] == [
        "model.archived",
        "model.availability_changed",
    ]


async def test_the_worker_loop_survives_a_failing_run(
    clean_db: str, conn: psycopg.AsyncConnection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    await add(conn, "old", {"sunsetDate": PAST}, legacy=True)
    await conn.execute("ALTER TABLE outbox RENAME TO outbox_away")  # every run fails
    settings = load_settings(database_url=clean_db, sunset_interval_s=0.05)
    pool = make_pool(clean_db)
    await pool.open()
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(run_sunset_loop(pool, settings, stop))
        await asyncio.sleep(0.3)
        assert not task.done()
        await conn.execute("ALTER TABLE outbox_away RENAME TO outbox")  # the database recovers
        for _ in range(100):
            if (await flags(conn, "old"))[2]:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    finally:
        await pool.close()

    assert await flags(conn, "old") == (False, True, True)
    assert "sunset run failed" in caplog.text


# --- replacement resolution after a sunset ------------------------------------------------------


async def test_resolution_skips_a_replacement_that_was_sunset(clean_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
        await add(conn, "v1", {"legacyReplacementModelId": "v2"}, legacy=True)
        await add(conn, "v2", {"legacyReplacementModelId": "v3"})
        await add(conn, "v3")
        # v2 is the answer until it is deprecated with a sunset and the sunset passes.
        await conn.execute(
            """UPDATE models SET is_legacy = true,"""
            """ meta = meta || '{"sunsetDate": "2025-05-01T00:00:00Z"}' WHERE id = 'v2'"""
        )
        assert await sunset(conn) == ["v2"]

    with psycopg.connect(clean_db) as sync_conn:
        resolved = resolve_model(sync_conn, "v1")

    assert resolved is not None
    assert resolved.chain == ("v1", "v2", "v3")
    assert resolved.model is not None and resolved.model["id"] == "v3"
