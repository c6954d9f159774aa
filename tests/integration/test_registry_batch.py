"""The persistence layer applies batches to a real PostgreSQL exactly as the rules decide."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from worker.decoding import Record
from worker.persistence.registry import apply_batch
from worker.settings import ADMIN_TOPIC, PROVIDER_SYNC_TOPIC, Settings

SETTINGS = Settings()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_offsets = iter(range(10**9))


def envelope(kind: str, data: dict[str, Any], *, at: datetime = T0, **extra: Any) -> dict[str, Any]:
    body = {
        "eventId": str(uuid.uuid4()),
        "type": kind,
        "schemaVersion": 1,
        "occurredAt": at.isoformat(),
        "source": "test",
        "data": data,
    }
    if kind.split(".")[1] not in ("synced", "withdrawn"):
        body["actor"] = "admin@example.com"
    return body | extra


def record(body: dict[str, Any] | bytes, *, key: str | None = None) -> Record:
    if isinstance(body, bytes):
        return Record(PROVIDER_SYNC_TOPIC, 0, next(_offsets), key and key.encode(), body)
    topic = (
        PROVIDER_SYNC_TOPIC if body["type"] in ("model.synced", "model.withdrawn") else ADMIN_TOPIC
    )
    model_id = key or body["data"]["id"]
    return Record(topic, 0, next(_offsets), model_id.encode(), json.dumps(body).encode())


def synced(model_id: str, at: datetime = T0, **meta: Any) -> dict[str, Any]:
    meta = {"displayName": model_id.upper(), "contextLength": 8192} | meta
    return envelope(
        "model.synced", {"id": model_id, "name": model_id, "provider": "acme", "meta": meta}, at=at
    )


def admin(kind: str, model_id: str, **data: Any) -> dict[str, Any]:
    return envelope(kind, {"id": model_id, **data})


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(clean_db) as connection:
        yield connection


async def rows(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(sql, args or None)
        return await cur.fetchall()


async def model(conn: psycopg.AsyncConnection[Any], model_id: str) -> tuple[Any, ...]:
    found = await rows(
        conn,
        "SELECT is_available, is_legacy, is_archived, meta FROM models WHERE id = %s",
        model_id,
    )
    return found[0]


async def outbox(conn: psycopg.AsyncConnection[Any], topic: str) -> list[dict[str, Any]]:
    found = await rows(
        conn, "SELECT value, headers FROM outbox WHERE topic = %s ORDER BY id", topic
    )
    return [{"value": bytes(v), "headers": dict(h)} for v, h in found]


async def apply(conn: psycopg.AsyncConnection[Any], *bodies: dict[str, Any] | Record) -> Any:
    records = [b if isinstance(b, Record) else record(b) for b in bodies]
    return await apply_batch(conn, records, SETTINGS)


async def test_a_sync_creates_an_available_model_and_records_the_sync_clock(conn: Any) -> None:
    await apply(conn, synced("m1", capabilities=["chat"]))

    assert await model(conn, "m1") == (
        True,
        False,
        False,
        {"displayName": "M1", "contextLength": 8192, "capabilities": ["chat"]},
    )
    assert await rows(conn, "SELECT model_id, last_synced_at FROM model_sync_state") == [("m1", T0)]


async def test_a_sync_merges_provider_keys_and_leaves_admin_keys_alone(conn: Any) -> None:
    await apply(conn, synced("m1"), admin("model.set_tier", "m1", requiredTier="pro"))
    await apply(conn, synced("m1", T0 + timedelta(1), contextLength=32000))

    meta = (await model(conn, "m1"))[3]
    assert meta["contextLength"] == 32000
    assert meta["requiredTier"] == "pro"


async def test_a_replayed_event_changes_nothing_and_emits_nothing(conn: Any) -> None:
    body = synced("m1")
    legacy = admin("model.mark_legacy", "m1")
    await apply(conn, body, legacy)
    before = await rows(conn, "SELECT id, meta, updated_at FROM models")
    outbox_before = await rows(conn, "SELECT count(*) FROM outbox")

    report = await apply(conn, body, legacy)

    assert [r.outcome for r in report.results] == ["duplicate", "duplicate"]
    assert await rows(conn, "SELECT id, meta, updated_at FROM models") == before
    assert await rows(conn, "SELECT count(*) FROM outbox") == outbox_before


async def test_a_second_copy_inside_one_batch_is_a_duplicate(conn: Any) -> None:
    body = synced("m1")
    report = await apply(conn, body, admin("model.archive", "m1"), body)
    assert [r.outcome for r in report.results] == ["applied", "applied", "duplicate"]
    assert (await model(conn, "m1"))[:3] == (False, False, True)


async def test_a_sync_older_than_the_last_applied_one_is_stale(conn: Any) -> None:
    await apply(conn, synced("m1", T0 + timedelta(hours=1), contextLength=2000))
    report = await apply(conn, synced("m1", T0, contextLength=1000))

    assert report.results[0].outcome == "stale"
    assert (await model(conn, "m1"))[3]["contextLength"] == 2000


async def test_lifecycle_changes_go_to_the_outbox_with_deterministic_ids(conn: Any) -> None:
    await apply(conn, synced("old"), synced("new"))
    legacy = admin(
        "model.mark_legacy", "old", replacementModelId="new", deprecationNotice="use new"
    )
    await apply(conn, legacy, admin("model.archive", "new"))

    events = [json.loads(m["value"]) for m in await outbox(conn, SETTINGS.lifecycle_topic)]
    assert [(e["type"], e["modelId"]) for e in events] == [
        ("model.marked_legacy", "old"),
        ("model.archived", "new"),
        ("model.availability_changed", "new"),
    ]
    assert events[0]["replacementModelId"] == "new"
    assert events[0]["causationId"] == legacy["eventId"]
    assert events[0]["state"] == {"isAvailable": True, "isLegacy": True, "isArchived": False}
    assert events[1]["affectedModelIds"] == ["old"]
    assert len({e["eventId"] for e in events}) == 3


async def test_set_tier_writes_one_audit_row_with_old_and_new_settings(conn: Any) -> None:
    await apply(conn, synced("m1"))
    change = admin("model.set_tier", "m1", requiredTier="enterprise", reason="contract")
    await apply(conn, change)

    audit = await rows(
        conn, "SELECT model_id, actor, old_tier, new_tier, reason, event_id FROM tier_audit"
    )
    assert audit == [
        (
            "m1",
            "admin@example.com",
            {},
            {"requiredTier": "enterprise", "tierRestrictionMode": "minimum"},
            "contract",
            uuid.UUID(change["eventId"]),
        )
    ]


async def test_bad_input_is_dead_lettered_with_the_original_bytes_and_the_rest_applied(
    conn: Any,
) -> None:
    garbage = record(b"{not json", key="m9")
    unknown = admin("model.archive", "ghost")
    report = await apply(conn, synced("m1"), garbage, record(unknown), synced("m2"))

    assert [r.outcome for r in report.results] == ["applied", "rejected", "rejected", "applied"]
    assert {r[0] for r in await rows(conn, "SELECT id FROM models")} == {"m1", "m2"}
    letters = await outbox(conn, SETTINGS.dead_letter_topic)
    assert letters[0]["value"] == b"{not json"
    assert letters[0]["headers"]["error.type"] == "invalid_json"
    assert letters[0]["headers"]["original.offset"] == str(garbage.offset)
    assert letters[1]["headers"]["error.type"] == "unknown_model"


async def test_a_contract_violation_names_the_field_path(conn: Any) -> None:
    bad = synced("m1", contextLength=-5)
    await apply(conn, bad)
    (letter,) = await outbox(conn, SETTINGS.dead_letter_topic)
    detail = json.loads(letter["headers"]["error.detail"])
    assert letter["headers"]["error.type"] == "contract_violation"
    assert detail[0]["loc"][:3] == ["model.synced", "data", "meta"]


async def test_an_event_the_database_refuses_is_isolated_and_dead_lettered(conn: Any) -> None:
    await conn.execute("ALTER TABLE models ADD CONSTRAINT no_poison CHECK (id <> 'poison')")
    await conn.commit()
    report = await apply(conn, synced("a"), synced("b"), synced("poison"), synced("c"))

    assert [r.outcome for r in report.results].count("applied") == 3
    assert {r[0] for r in await rows(conn, "SELECT id FROM models")} == {"a", "b", "c"}
    (letter,) = await outbox(conn, SETTINGS.dead_letter_topic)
    assert letter["headers"]["error.type"] == "unstorable"


async def test_two_consumers_applying_the_same_batch_apply_it_once(clean_db: str) -> None:
    bodies = [synced(f"m{i}") for i in range(50)] + [admin("model.archive", "m7")]
    records = [record(b) for b in bodies]
    async with (
        await psycopg.AsyncConnection.connect(clean_db) as one,
        await psycopg.AsyncConnection.connect(clean_db) as two,
    ):
        first, second = await asyncio.gather(
            apply_batch(one, records, SETTINGS), apply_batch(two, records, SETTINGS)
        )
        outcomes = [r.outcome for r in first.results + second.results]
        assert outcomes.count("applied") == len(records)
        assert outcomes.count("duplicate") == len(records)
        lifecycle = await rows(one, "SELECT count(*) FROM outbox")
        assert lifecycle == [(2,)]  # archived + availability_changed, once


async def test_only_meta_and_lifecycle_columns_change_on_update(conn: Any) -> None:
    await apply(conn, synced("m1"))
    (created,) = await rows(conn, "SELECT name, provider, created_at FROM models")
    await apply(conn, admin("model.register", "m1", name="Renamed", provider="acme", meta={}))
    assert await rows(conn, "SELECT name, provider, created_at FROM models") == [created]


async def test_a_large_batch_written_in_rounds_ends_where_the_rules_say(conn: Any) -> None:
    """More events than one round of writes, each model touched in several rounds."""
    from tests.support.fold import fold, mixed_stream, setup_messages
    from worker.persistence.registry import WRITE_EVERY

    messages = setup_messages() + mixed_stream(4 * WRITE_EVERY + 17, seed=5)
    records = [
        Record(m.topic(SETTINGS), 0, offset, m.key, m.value, m.headers)
        for offset, m in enumerate(messages)
    ]
    report = await apply_batch(conn, records, SETTINGS)
    expected = fold(messages, SETTINGS)

    found = await rows(
        conn, "SELECT id, name, provider, is_available, is_legacy, is_archived, meta FROM models"
    )
    assert {r[0]: r[1:] for r in found} == expected.rows()
    lifecycle = await rows(
        conn, "SELECT dedup_key FROM outbox WHERE topic = %s ORDER BY id", SETTINGS.lifecycle_topic
    )
    assert [key for (key,) in lifecycle] == [f"lifecycle:{i}" for i in expected.lifecycle_ids]
    assert report.outbox_rows == len(expected.lifecycle_ids) + len(expected.dead_letters)


async def test_archiving_a_replacement_names_the_legacy_models_of_earlier_batches(
    conn: Any,
) -> None:
    await apply(conn, synced("old"), synced("new"), synced("other"))
    await apply(conn, admin("model.mark_legacy", "old", replacementModelId="new"))
    await apply(conn, admin("model.archive", "new"))

    events = [json.loads(m["value"]) for m in await outbox(conn, SETTINGS.lifecycle_topic)]
    archived = next(e for e in events if e["type"] == "model.archived")
    assert archived["affectedModelIds"] == ["old"]
