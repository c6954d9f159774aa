"""Batch after batch on one connection, the next batch's reads sent behind each commit."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import pq

from tests.integration.test_registry_batch import admin, record, rows, synced
from tests.support.fold import fold, mixed_stream, setup_messages
from worker.decoding import Record
from worker.persistence.db import make_pool
from worker.persistence.registry import PreparedBatch, apply_batch, decode_records, is_replay
from worker.persistence.session import ReadAheadSession, model_keys
from worker.settings import Settings
from worker.transport.app import BatchProcessor

SETTINGS = Settings()


def prepared(records: Sequence[Record]) -> PreparedBatch:
    return PreparedBatch(records, decode_records(records, SETTINGS))


class Feed:
    """Hands the session the batches after the one it applies, as the pipeline does."""

    def __init__(self, batches: Sequence[Sequence[Record]]) -> None:
        self.batches = list(batches)
        self.handed: list[Sequence[Record]] = []

    async def take_next(self) -> Sequence[Record] | None:
        if not self.batches:
            return None
        self.handed.append(self.batches.pop(0))
        return self.handed[-1]


@pytest.fixture
async def session(clean_db: str) -> AsyncIterator[ReadAheadSession]:
    conn = await psycopg.AsyncConnection.connect(clean_db)
    opened = await ReadAheadSession.open(conn, SETTINGS)
    yield opened
    await opened.close()
    await conn.close()


async def apply_all(session: ReadAheadSession, batches: Sequence[Sequence[Record]]) -> list[Any]:
    """Apply every batch in order, each one's reads sent behind the commit before it."""
    feed = Feed(batches[1:])
    reports = []
    batch = prepared(batches[0])
    while True:
        reports.append(await session.apply(batch, feed.take_next))
        await session.committed()
        if not session.reading_ahead:
            return reports
        batch = prepared(feed.handed[-1])


async def process_all(processor: BatchProcessor, batches: Sequence[Sequence[Record]]) -> None:
    """Apply the batches in order as the pipeline does: a batch taken ahead is the next one."""
    queue, taken = list(batches), []

    async def take_next() -> Sequence[Record] | None:
        if taken or not queue:
            return None
        taken.append(queue.pop(0))
        return taken[-1]

    while queue or taken:
        batch = taken.pop(0) if taken else queue.pop(0)
        assert await processor.process(prepared(batch), take_next)


async def test_batches_applied_with_their_reads_ahead_end_where_the_rules_say(
    processor: BatchProcessor, clean_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A mixed stream, re-sent copies of earlier events included, in batches of 97."""
    messages = setup_messages() + mixed_stream(600, seed=11)
    records = [
        Record(m.topic(SETTINGS), 0, offset, m.key, m.value, m.headers)
        for offset, m in enumerate(messages)
    ]
    batches = [records[start : start + 97] for start in range(0, len(records), 97)]

    with caplog.at_level(logging.INFO, logger="modelreg.worker"):
        await process_all(processor, batches)

    expected = fold(messages, SETTINGS)
    async with await psycopg.AsyncConnection.connect(clean_db) as check:
        found = await rows(
            check,
            "SELECT id, name, provider, is_available, is_legacy, is_archived, meta FROM models",
        )
        assert {r[0]: r[1:] for r in found} == expected.rows()
        lifecycle = await rows(
            check,
            "SELECT dedup_key FROM outbox WHERE topic = %s ORDER BY id",
            SETTINGS.lifecycle_topic,
        )
    assert [key for (key,) in lifecycle] == [f"lifecycle:{i}" for i in expected.lifecycle_ids]
    assert processor.applied_batches == len(batches)
    replays = [r.getMessage() for r in caplog.records if "(a replay)" in r.getMessage()]
    assert 0 < len(replays) < len(batches), "batches with re-sent copies are applied on their own"


async def test_a_replayed_event_aborts_the_batch_before_anything_of_it_is_committed(
    session: ReadAheadSession, clean_db: str
) -> None:
    first = record(synced("a"))
    await apply_all(session, [[first]])
    feed = Feed([[record(synced("c"))]])

    with pytest.raises(psycopg.Error) as raised:
        await session.apply(prepared([record(synced("b")), first]), feed.take_next)
        await session.committed()

    assert is_replay(raised.value), raised.value

    async with await psycopg.AsyncConnection.connect(clean_db) as check:
        assert await rows(check, "SELECT id FROM models ORDER BY id") == [("a",)]
        assert await rows(check, "SELECT count(*) FROM processed_events") == [(1,)]


async def test_only_a_claim_made_before_counts_as_a_replay(clean_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(clean_db) as conn:
        await conn.execute("CREATE TEMP TABLE other (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO other VALUES (1)")
        with pytest.raises(psycopg.errors.UniqueViolation) as raised:
            await conn.execute("INSERT INTO other VALUES (1)")
    assert not is_replay(raised.value)
    assert not is_replay(psycopg.errors.UniqueViolation())
    assert not is_replay(ValueError("processed_events_pkey"))


async def test_the_next_batch_reads_what_the_batch_before_it_committed(
    session: ReadAheadSession, clean_db: str
) -> None:
    first = [record(synced("a")), record(synced("b"))]
    second = [record(admin("model.set_availability", "a", isAvailable=False))]
    third = [record(admin("model.mark_legacy", "b", replacementModelId="a"))]

    reports = await apply_all(session, [first, second, third])

    assert [[r.outcome for r in report.results] for report in reports] == [
        ["applied", "applied"],
        ["applied"],
        ["applied"],
    ]
    async with await psycopg.AsyncConnection.connect(clean_db) as check:
        states = await rows(check, "SELECT id, is_available, is_legacy FROM models ORDER BY id")
    assert states == [("a", False, False), ("b", True, True)]


async def test_reads_sent_ahead_lock_the_next_models_until_the_session_closes(
    session: ReadAheadSession, clean_db: str
) -> None:
    following = [record(synced("later"))]
    await apply_all(session, [[record(synced("later"))]])
    feed = Feed([following])
    await session.apply(prepared([record(synced("now"))]), feed.take_next)
    await session.committed()
    assert session.reading_ahead

    async with await psycopg.AsyncConnection.connect(clean_db) as other:
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await other.execute("SELECT 1 FROM models WHERE id = 'later' FOR UPDATE NOWAIT")
        await other.rollback()

        await session.close()

        await other.execute("SELECT 1 FROM models WHERE id = 'later' FOR UPDATE NOWAIT")
        await other.rollback()
        claimed = await rows(other, "SELECT count(*) FROM processed_events")
    assert claimed == [(2,)], "the batch read ahead claimed nothing"
    assert not session.reading_ahead
    assert session.conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert not session.conn.autocommit, "the connection goes back as the pool lent it"


async def test_a_batch_other_than_the_one_read_ahead_is_refused(
    session: ReadAheadSession,
) -> None:
    feed = Feed([[record(synced("expected"))]])
    await session.apply(prepared([record(synced("first"))]), feed.take_next)
    await session.committed()

    with pytest.raises(RuntimeError, match="not the one whose reads were sent ahead"):
        await session.apply(prepared([record(synced("other"))]), feed.take_next)


def test_the_models_are_named_by_the_records_keys_in_locking_order() -> None:
    records = [record(synced("b")), record(synced("a")), record(synced("b"))]
    keyless = Record(records[0].topic, 0, 99, None, b"{}")
    assert model_keys([*records, keyless]) == ["a", "b"]


@pytest.fixture
async def processor(clean_db: str) -> AsyncIterator[BatchProcessor]:
    pool = make_pool(clean_db)
    await pool.open(wait=True)
    applying = BatchProcessor(SETTINGS)
    applying.pool = pool
    yield applying
    await applying.close()
    await pool.close()


async def test_a_batch_the_session_cannot_write_is_applied_alone_with_its_poison_isolated(
    processor: BatchProcessor, clean_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as ddl:
        await ddl.execute("ALTER TABLE models ADD CONSTRAINT no_poison CHECK (id <> 'poison')")
    batch = [record(synced("a")), record(synced("poison")), record(synced("b"))]
    following = [record(synced("c"))]
    feed = Feed([following])

    with caplog.at_level(logging.INFO, logger="modelreg.worker"):
        assert await processor.process(prepared(batch), feed.take_next)
        assert await processor.process(prepared(following), feed.take_next)

    assert "applying a batch of 3 records on its own" in caplog.text
    async with await psycopg.AsyncConnection.connect(clean_db) as check:
        assert {r[0] for r in await rows(check, "SELECT id FROM models")} == {"a", "b", "c"}
        letters = await rows(
            check, "SELECT headers FROM outbox WHERE topic = %s", SETTINGS.dead_letter_topic
        )
    assert [dict(h)["error.type"] for (h,) in letters] == ["unstorable"]
    assert processor.applied_batches == 2


async def test_a_batch_applied_again_after_an_unconfirmed_commit_changes_nothing(
    session: ReadAheadSession, clean_db: str
) -> None:
    batch = [record(synced("a")), record(admin("model.archive", "a"))]
    await apply_all(session, [batch])

    async with await psycopg.AsyncConnection.connect(clean_db) as again:
        report = await apply_batch(again, batch, SETTINGS)
        outbox = await rows(again, "SELECT value FROM outbox")
    assert [r.outcome for r in report.results] == ["duplicate", "duplicate"]
    assert [json.loads(bytes(v))["type"] for (v,) in outbox] == [
        "model.archived",
        "model.availability_changed",
    ]
