"""Which failures are dead-lettered at once and which are retried, against a real PostgreSQL.

Data and rule errors are the publisher's: the record goes to the dead-letter topic in the same
call, and the rest of the batch is applied. Connection-level errors and serialization failures
are the infrastructure's: ``apply_batch`` raises them and ``is_transient`` says "retry".
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg.errors
import pytest
from psycopg_pool import AsyncConnectionPool

from worker.decoding import Record
from worker.persistence.errors import is_transient
from worker.persistence.registry import apply_batch
from worker.settings import ADMIN_TOPIC, DEAD_LETTER_TOPIC, PROVIDER_SYNC_TOPIC, Settings
from worker.transport.app import BatchProcessor

SETTINGS = Settings()
_offsets = iter(range(10**9))


def record(event_type: str, data: dict[str, Any]) -> Record:
    body: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "type": event_type,
        "schemaVersion": 1,
        "occurredAt": "2026-01-01T00:00:00+00:00",
        "source": "classification-tests",
        "data": data,
    }
    topic = PROVIDER_SYNC_TOPIC
    if event_type not in ("model.synced", "model.withdrawn"):
        body["actor"] = "admin@example.com"
        topic = ADMIN_TOPIC
    return Record(topic, 0, next(_offsets), data["id"].encode(), json.dumps(body).encode())


def synced(model_id: str, name: str | None = None) -> Record:
    data = {"id": model_id, "name": name or model_id, "provider": "acme", "meta": {}}
    return record("model.synced", data)


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as connection:
        yield connection


async def scalar(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> Any:
    cur = await conn.execute(sql, args or None)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def dead_letter_types(conn: psycopg.AsyncConnection[Any]) -> dict[int, str]:
    cur = await conn.execute(
        "SELECT headers FROM outbox WHERE topic = %s ORDER BY id", (DEAD_LETTER_TOPIC,)
    )
    letters = [dict(h) for (h,) in await cur.fetchall()]
    return {int(h["original.offset"]): h["error.type"] for h in letters}


# --- the publisher's fault: dead-lettered at once ---------------------------------------------


async def test_a_data_error_is_dead_lettered_at_once_as_unstorable_and_the_rest_applied(
    conn: Any,
) -> None:
    # A constraint the contract does not know about: only the database can refuse the record.
    await conn.execute("ALTER TABLE models ADD CONSTRAINT no_forbidden CHECK (name <> 'forbidden')")
    before, poison, after = synced("ok-1"), synced("bad", name="forbidden"), synced("ok-2")

    report = await asyncio.wait_for(apply_batch(conn, [before, poison, after], SETTINGS), 10)

    assert [r.outcome for r in report.results] == ["applied", "rejected", "applied"]
    assert await dead_letter_types(conn) == {poison.offset: "unstorable"}
    cur = await conn.execute("SELECT id FROM models ORDER BY id")
    assert await cur.fetchall() == [("ok-1",), ("ok-2",)]
    assert report.transactions > 1, "the batch was bisected to isolate the refused record"


async def test_the_unstorable_dead_letter_says_what_the_database_refused(conn: Any) -> None:
    await conn.execute("ALTER TABLE models ADD CONSTRAINT no_forbidden CHECK (name <> 'forbidden')")
    poison = synced("bad", name="forbidden")

    await apply_batch(conn, [poison], SETTINGS)

    cur = await conn.execute("SELECT headers FROM outbox WHERE topic = %s", (DEAD_LETTER_TOPIC,))
    [(headers,)] = await cur.fetchall()
    message = dict(headers)["error.message"]
    assert "no_forbidden" in message and "check constraint" in message


async def test_a_rule_error_is_dead_lettered_at_once(conn: Any) -> None:
    await apply_batch(conn, [synced("m1")], SETTINGS)
    archived = record("model.archive", {"id": "m1"})
    make_available = record("model.set_availability", {"id": "m1", "isAvailable": True})
    unknown = record("model.patch_meta", {"id": "nope", "meta": {"version": "1"}})

    report = await asyncio.wait_for(
        apply_batch(conn, [archived, make_available, unknown], SETTINGS), 10
    )

    assert [r.outcome for r in report.results] == ["applied", "rejected", "rejected"]
    assert await dead_letter_types(conn) == {
        make_available.offset: "rule_violation",
        unknown.offset: "unknown_model",
    }
    assert await scalar(conn, "SELECT is_available FROM models WHERE id = 'm1'") is False


# --- the infrastructure's fault: raised and retried -------------------------------------------


async def test_a_terminated_backend_is_raised_and_classified_transient(
    conn: Any, clean_db: str
) -> None:
    pid = await scalar(conn, "SELECT pg_backend_pid()")
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as admin:
        assert await scalar(admin, "SELECT pg_terminate_backend(%s)", pid) is True

    with pytest.raises(psycopg.Error) as raised:
        await apply_batch(conn, [synced("m1")], SETTINGS)

    assert is_transient(raised.value), repr(raised.value)
    async with await psycopg.AsyncConnection.connect(clean_db) as check:
        assert await scalar(check, "SELECT count(*) FROM outbox") == 0, "nothing dead-lettered"


async def test_a_closed_connection_is_raised_and_classified_transient(conn: Any) -> None:
    await conn.close()

    with pytest.raises(psycopg.Error) as raised:
        await apply_batch(conn, [synced("m1")], SETTINGS)

    assert is_transient(raised.value), repr(raised.value)


async def test_a_serialization_failure_from_the_server_is_classified_transient(
    conn: Any, clean_db: str
) -> None:
    await apply_batch(conn, [synced("m1")], SETTINGS)
    async with await psycopg.AsyncConnection.connect(clean_db) as first:
        await first.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await first.execute("SELECT name FROM models WHERE id = 'm1'")  # takes the snapshot
        await conn.execute("UPDATE models SET name = 'concurrent' WHERE id = 'm1'")

        with pytest.raises(psycopg.errors.SerializationFailure) as raised:
            await first.execute("UPDATE models SET name = 'mine' WHERE id = 'm1'")

    assert is_transient(raised.value)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.CheckViolation("check"),
        psycopg.errors.InvalidTextRepresentation("bad input"),
        psycopg.errors.UndefinedTable("no such table"),
        ValueError("a bug"),
    ],
    ids=["check-violation", "invalid-text", "undefined-table", "value-error"],
)
def test_data_errors_and_bugs_are_not_transient(error: Exception) -> None:
    assert not is_transient(error)


async def test_the_worker_retries_a_serialization_failure_and_then_applies_the_batch(
    clean_db: str,
) -> None:
    """The consumer's loop: a transient error delays the batch; it is applied, not dropped."""
    settings = SETTINGS.model_copy(update={"database_url": clean_db, "retry_max_backoff_s": 0.05})
    attempts = 0

    async def flaky_apply(
        connection: psycopg.AsyncConnection[Any], records: Any, s: Settings
    ) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise psycopg.errors.SerializationFailure("could not serialize access")
        return await apply_batch(connection, records, s)

    processor = BatchProcessor(settings, flaky_apply)
    async with AsyncConnectionPool(clean_db, min_size=1, max_size=1, open=False) as pool:
        processor.pool = pool
        assert await asyncio.wait_for(processor.process([synced("m1")]), 10) is True
        async with pool.connection() as check:
            assert await scalar(check, "SELECT count(*) FROM models") == 1
            assert await scalar(check, "SELECT count(*) FROM outbox") == 0

    assert attempts == 3
