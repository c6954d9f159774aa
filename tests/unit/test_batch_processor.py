"""The consumer's delivery rules, without a broker or database: retry until applied, never skip."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from worker.decoding import Record
from worker.persistence.registry import (
    SHARE_WHILE_READING,
    BatchReport,
    Decoded,
    PreparedBatch,
)
from worker.settings import Settings, load_settings
from worker.transport import pipeline
from worker.transport.app import BatchProcessor, batch_offsets
from worker.transport.pipeline import to_records


class ScriptedProcessor(BatchProcessor):
    """Fails with the given errors, in order, then applies."""

    def __init__(self, settings: Settings, failures: Sequence[BaseException]) -> None:
        super().__init__(settings)
        self.failures = list(failures)
        self.attempts = 0

    async def _attempt(self, records: Sequence[Record]) -> BatchReport:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        return BatchReport()


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        retry_max_backoff_s=0.02, database_url="postgresql://u:s3cret@db:5432/registry"
    )


def record(topic: str, partition: int, offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic, partition, offset, 0, 0, b"k", b"v", None, 1, 1, [("h", b"\xff")])


async def test_a_transient_failure_is_retried_until_the_batch_is_applied(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    outage = [psycopg.OperationalError("server closed the connection; password s3cret")] * 5
    processor = ScriptedProcessor(settings, outage)
    with caplog.at_level(logging.INFO, logger="modelreg.worker"):
        assert await processor.process([]) is True
    assert processor.attempts == 6
    messages = [r.getMessage() for r in caplog.records]
    assert sum("database unavailable, retrying" in m for m in messages) == 1, "logged once"
    assert sum("database available again" in m for m in messages) == 1
    assert not any("s3cret" in m for m in messages), "the password never reaches the logs"


async def test_a_bug_is_retried_too_and_logged_with_its_traceback(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    processor = ScriptedProcessor(settings, [ValueError("bug"), ValueError("bug")])
    with caplog.at_level(logging.ERROR, logger="modelreg.worker"):
        assert await processor.process([]) is True
    assert processor.attempts == 3
    assert all(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)
    assert len(caplog.records) == 2


async def test_stopping_while_a_batch_fails_gives_up_without_applying(settings: Settings) -> None:
    processor = ScriptedProcessor(settings, [psycopg.OperationalError("down")] * 10_000)
    task = asyncio.create_task(processor.process([]))
    await asyncio.sleep(0.2)
    assert not task.done(), "still retrying while the worker runs"
    processor.stopping.set()
    assert await asyncio.wait_for(task, 1) is False


async def test_a_batch_in_hand_is_still_applied_when_stopping_begins(settings: Settings) -> None:
    processor = ScriptedProcessor(settings, [])
    processor.stopping.set()
    assert await processor.process([]) is True


def test_the_commit_covers_exactly_the_batch_per_partition() -> None:
    raw = (record("a", 0, 5), record("a", 1, 9), record("a", 0, 6), record("b", 0, 0))
    assert batch_offsets(raw) == {
        TopicPartition("a", 0): 7,
        TopicPartition("a", 1): 10,
        TopicPartition("b", 0): 1,
    }


def test_records_keep_the_raw_bytes_and_headers() -> None:
    (converted,) = to_records((record("a", 2, 3),))
    assert converted == Record("a", 2, 3, b"k", b"v", (("h", b"\xff"),))


class GatedProcessor(BatchProcessor):
    """Applies batches only when the test opens the gate, and remembers their order."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gate = asyncio.Event()
        self.applied: list[int] = []
        self.sizes: list[int] = []

    async def _attempt(self, records: Sequence[Record]) -> BatchReport:
        await self.gate.wait()
        self.applied.append(records[0].offset)
        self.sizes.append(len(records))
        return BatchReport()


def pipelined_worker(settings: Settings) -> tuple[Any, GatedProcessor, list[int]]:
    from worker.transport.app import Worker

    processor = GatedProcessor(settings)
    committed: list[int] = []

    async def commit(_consumer: Any, raw: Any) -> None:
        committed.append(raw[-1].offset)

    return Worker(settings, processor=processor, commit=commit), processor, committed


async def hand_over(worker: Any, topic: str, *offsets: int) -> None:
    """The consumer fetched these offsets of partition 0 and hands them to the worker."""
    await worker.handle_batch(tuple(record(topic, 0, offset) for offset in offsets))


async def test_the_next_batch_reaches_the_database_only_after_the_previous_one_committed(
    settings: Settings,
) -> None:
    worker, processor, committed = pipelined_worker(settings)
    topic = settings.provider_sync_topic
    await hand_over(worker, topic, 0)
    await asyncio.sleep(0.05)  # in the database, gate closed
    await hand_over(worker, topic, 1)  # returns: fetching goes on
    await asyncio.sleep(0.05)
    assert processor.applied == [] and committed == []

    processor.gate.set()
    assert await worker.wait_in_flight()
    assert processor.applied == [0, 1]
    assert committed == [0, 1]


async def three_arrive_while_one_is_in_the_database(worker: Any, topic: str) -> None:
    await hand_over(worker, topic, 0)
    await asyncio.sleep(0.05)  # in the database
    for offset in (1, 2, 3):
        await hand_over(worker, topic, offset)


async def test_batches_fetched_while_one_is_in_the_database_go_in_together_next(
    settings: Settings,
) -> None:
    worker, processor, committed = pipelined_worker(settings)
    await three_arrive_while_one_is_in_the_database(worker, settings.provider_sync_topic)

    processor.gate.set()
    assert await worker.wait_in_flight()
    assert processor.applied == [0, 1] and processor.sizes == [1, 3]
    assert committed == [0, 3], "one commit per transaction, covering all of it"


async def test_fetching_waits_while_a_full_batch_is_already_waiting(settings: Settings) -> None:
    small = settings.model_copy(update={"batch_max_records": 2})
    worker, processor, _ = pipelined_worker(small)
    topic = settings.provider_sync_topic
    await hand_over(worker, topic, 0)
    await asyncio.sleep(0.05)  # in the database
    await hand_over(worker, topic, 1, 2)
    third = asyncio.create_task(hand_over(worker, topic, 3))
    await asyncio.sleep(0.05)
    assert not third.done(), "a full batch waits: the consumer stops fetching"

    processor.gate.set()
    await third
    assert await worker.wait_in_flight()
    assert processor.sizes == [1, 2, 1]


class WaitingProcessor(GatedProcessor):
    """Hands the waiting work over as the registry does: some while reading, the rest writing."""

    def __init__(self, settings: Settings, decoded: list[int]) -> None:
        super().__init__(settings)
        self.decoded = decoded
        self.progress: list[int] = []

    async def _attempt(self, records: Sequence[Record]) -> BatchReport:
        assert isinstance(records, PreparedBatch)
        await self.gate.wait()
        for share in (SHARE_WHILE_READING, 1.0):
            records.while_waiting(share)
            self.progress.append(sum(self.decoded))
        self.applied.append(records[0].offset)
        return BatchReport()


async def test_the_next_batch_is_decoded_while_the_database_works_on_this_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    decoded: list[int] = []  # records per call to the decoder
    decode_records = pipeline.decode_records

    def spy(records: Sequence[Record], settings: Settings) -> list[Decoded]:
        threads.add(threading.get_ident())
        decoded.append(len(records))
        return decode_records(records, settings)

    monkeypatch.setattr(pipeline, "decode_records", spy)
    processor = WaitingProcessor(settings, decoded)
    worker, _, committed = pipelined_worker(settings)
    worker.pipeline.processor = processor
    topic = settings.provider_sync_topic
    await hand_over(worker, topic, 0)
    await asyncio.sleep(0.05)  # taken (decoded on the way in), now in the database
    await hand_over(worker, topic, *range(1, 11))
    assert decoded == [1], "the next batch waits undecoded while nothing has the time"

    processor.gate.set()
    assert await worker.wait_in_flight()
    reading = math.ceil(SHARE_WHILE_READING * 10)
    assert 0 < reading < 10
    assert processor.progress == [1 + reading, 11, 11, 11], "some while reading, the rest writing"
    assert decoded == [1, reading, 10 - reading], "nothing is decoded twice"
    assert threads == {threading.get_ident()}, "on the event loop's thread, no GIL contention"
    assert processor.applied == [0, 1] and committed == [0, 10]


async def test_a_decoding_bug_in_the_next_batch_stops_the_worker_after_this_one_commits(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode_records = pipeline.decode_records

    def broken_after_the_first(records: Sequence[Record], settings: Settings) -> list[Decoded]:
        if records[0].offset > 0:
            raise RuntimeError("a bug in decoding")
        return decode_records(records, settings)

    monkeypatch.setattr(pipeline, "decode_records", broken_after_the_first)
    processor = WaitingProcessor(settings, [])
    worker, _, committed = pipelined_worker(settings)
    worker.pipeline.processor = processor
    halted: list[bool] = []
    worker.pipeline.on_failure = lambda: halted.append(True)
    topic = settings.provider_sync_topic
    await hand_over(worker, topic, 0)
    await asyncio.sleep(0.05)  # in the database
    await hand_over(worker, topic, 1, 2)

    processor.gate.set()
    assert await asyncio.wait_for(worker.wait_in_flight(), 5) is False
    assert processor.applied == [0] and committed == [0], "the batch in front is unaffected"
    assert halted == [True], "the broken batch stops the worker instead of being skipped"


class DownProcessor(BatchProcessor):
    """The database never answers."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.attempted: set[int] = set()

    async def _attempt(self, records: Sequence[Record]) -> BatchReport:
        self.attempted.add(records[0].offset)
        raise psycopg.OperationalError("connection refused")


async def test_nothing_after_a_batch_that_was_not_applied_is_applied_or_committed(
    settings: Settings,
) -> None:
    from worker.transport.app import Worker

    processor = DownProcessor(settings)
    committed: list[Any] = []

    async def commit(_consumer: Any, raw: Any) -> None:
        committed.append(raw)

    worker = Worker(settings, processor=processor, commit=commit)
    topic = settings.provider_sync_topic
    await hand_over(worker, topic, 0)  # retrying in the background
    await asyncio.sleep(0.05)
    processor.stopping.set()  # the worker stops while the database is still away

    await hand_over(worker, topic, 1)
    assert processor.attempted == {0}
    assert committed == []


class ReadingAheadProcessor(GatedProcessor):
    """Takes the next batch while applying one, as the read-ahead session does."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.taken: list[list[int] | None] = []
        self.closed = 0
        self.may_take = self.gate

    async def process(self, records: Sequence[Record], take_next: Any = None) -> bool:
        await self.may_take.wait()
        following = await take_next()
        self.taken.append(None if following is None else [r.offset for r in following])
        await self.gate.wait()
        self.applied.append(records[0].offset)
        self.sizes.append(len(records))
        return True

    async def close(self) -> None:
        self.closed += 1


def reading_ahead_worker(settings: Settings) -> tuple[Any, ReadingAheadProcessor, list[int]]:
    worker, _, committed = pipelined_worker(settings)
    processor = ReadingAheadProcessor(settings)
    worker.pipeline.processor = processor
    return worker, processor, committed


async def test_the_batch_taken_ahead_is_the_next_one_applied_and_committed(
    settings: Settings,
) -> None:
    worker, processor, committed = reading_ahead_worker(settings)
    await three_arrive_while_one_is_in_the_database(worker, settings.provider_sync_topic)

    processor.gate.set()
    assert await worker.wait_in_flight()
    assert processor.taken == [[1, 2, 3], None], "what waited is taken whole, then nothing"
    assert processor.applied == [0, 1] and processor.sizes == [1, 3]
    assert committed == [0, 3]


async def test_a_batch_taken_ahead_is_decoded_before_what_waits_behind_it(
    settings: Settings,
) -> None:
    small = settings.model_copy(update={"batch_max_records": 2})
    worker, _, _ = pipelined_worker(small)
    pipe = worker.pipeline
    await hand_over(worker, small.provider_sync_topic, 0, 1)
    await asyncio.sleep(0.05)  # in the database
    await hand_over(worker, small.provider_sync_topic, 2, 3)
    taken = await pipe._take_next()
    assert taken is not None and [r.offset for r in taken] == [2, 3]
    await hand_over(worker, small.provider_sync_topic, 4, 5)  # waits behind it

    pipe._decode_waiting(0.5)

    assert [len(f.decoded) for f in pipe._queued()] == [2, 0]


async def test_stopping_leaves_the_batch_taken_ahead_unapplied_and_rolled_back(
    settings: Settings,
) -> None:
    one_by_one = settings.model_copy(update={"batch_max_records": 1})
    worker, processor, committed = reading_ahead_worker(one_by_one)
    processor.may_take = asyncio.Event()
    topic = settings.provider_sync_topic
    await hand_over(worker, topic, 0)
    await hand_over(worker, topic, 1)  # returns once 0 is in the database
    processor.may_take.set()
    await asyncio.sleep(0.05)  # 1 taken ahead
    stopping = asyncio.create_task(worker.pipeline.stop())
    await asyncio.sleep(0.05)

    processor.gate.set()
    await asyncio.wait_for(stopping, 5)
    assert processor.taken == [[1]]
    assert processor.applied == [0] and committed == [0], "the batch in hand is finished"
    assert processor.closed == 1, "the reads sent ahead are rolled back"
