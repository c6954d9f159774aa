"""From fetched batches to applied and committed ones, without holding up the fetching.

The consumer hands every fetched batch to :meth:`BatchPipeline.put`, which queues it and
returns, so the next fetch starts at once instead of after the batch in the database. One
applier task takes what has arrived, in arrival order, up to ``batch_max_records``, and applies
it in one transaction; whatever arrives meanwhile is the next transaction. Offsets are committed
in the same order, each only after its transaction committed, and nothing is applied or
committed after a batch that was not applied.

While a batch is in the database, the processor may take the next one (``take_next``) to send
its reads right behind this batch's commit (``worker/persistence/session.py``); a batch taken so
is applied next, and left, like everything waiting, when the worker stops.

Decoding is pure CPU, and it is done on the event loop's thread while that thread would
otherwise wait: the transaction decodes the waiting batches while the server reads and writes
(``PreparedBatch.while_waiting``), and whatever is left is decoded when the batch is taken. It
used to run in a thread of its own, but a CPU-bound thread holds the GIL for up to the switch
interval (5 ms) each time the event loop wakes up for a socket, and reading a batch's rows wakes
it dozens of times (docs/performance.md, round six).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from itertools import chain
from typing import Any, Protocol

from aiokafka import ConsumerRecord

from worker.decoding import Record
from worker.persistence.registry import Decoded, PreparedBatch, decode_records
from worker.persistence.session import TakeNext
from worker.settings import Settings

log = logging.getLogger("modelreg.worker")

RawBatch = tuple[ConsumerRecord[Any, Any], ...]


class Processor(Protocol):
    async def process(self, records: Sequence[Record], take_next: TakeNext | None = None) -> bool:
        """Apply the batch; it may call ``take_next`` to read the next batch's rows ahead."""

    async def close(self) -> None:
        """Roll back reads sent ahead for a batch that will not be applied now."""


def to_records(raw: RawBatch) -> list[Record]:
    """aiokafka records to the worker's Record, bytes untouched."""
    return [
        Record(
            r.topic,
            r.partition,
            r.offset,
            r.key,
            r.value,
            tuple((str(name), bytes(value or b"")) for name, value in r.headers)
            if r.headers
            else (),
        )
        for r in raw
    ]


class Fetched:
    """A fetched batch, decoded a few records at a time by whoever has the time."""

    __slots__ = ("decoded", "raw", "records")

    def __init__(
        self,
        raw: RawBatch,
        records: list[Record] | None = None,
        decoded: list[Decoded] | None = None,
    ) -> None:
        self.raw = raw
        self.records = to_records(raw) if records is None else records
        self.decoded: list[Decoded] = [] if decoded is None else decoded

    @classmethod
    def joined(cls, parts: Sequence[Fetched]) -> Fetched:
        """Several fetches as one, in order. Decoding goes oldest first, so what each has
        decoded is a prefix of it, and the decoded lists join into the whole's prefix."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            tuple(chain.from_iterable(part.raw for part in parts)),
            [record for part in parts for record in part.records],
            [item for part in parts for item in part.decoded],
        )

    @property
    def undecoded(self) -> int:
        return len(self.records) - len(self.decoded)

    def decode(self, count: int, settings: Settings) -> int:
        """Decode up to ``count`` more records; how many it decoded."""
        start = len(self.decoded)
        more = self.records[start : start + count]
        if more:
            self.decoded.extend(decode_records(more, settings))
        return len(more)


class BatchPipeline:
    """Fetched batches in; one applier turns them into transactions and commits, in order."""

    def __init__(
        self,
        settings: Settings,
        processor: Processor,
        commit: Callable[[RawBatch], Awaitable[None]],
        on_failure: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.commit = commit
        self.on_failure = on_failure
        self._waiting: deque[Fetched] = deque()
        #: Taken by the processor (``take_next``) to read its rows behind the commit in front.
        self._ahead: Fetched | None = None
        self._waiting_records = 0
        self._changed = asyncio.Condition()
        self._applier: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._applying = False
        self._accepting = True
        #: Set once a batch could not be applied (the worker is stopping) or a bug broke the loop.
        self.halted = False

    async def put(self, raw: RawBatch) -> bool:
        """Queue a fetched batch; waits while a full batch is already waiting. False once halted."""
        limit = self.settings.batch_max_records
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._waiting_records < limit or self.halted or not self._accepting
            )
            if self.halted or not self._accepting:
                return False
            self._waiting.append(Fetched(raw))
            self._waiting_records += len(raw)
            self._changed.notify_all()
        if self._applier is None:
            self._applier = asyncio.create_task(self._apply_loop(), name="apply-batches")
        return True

    def _decode_waiting(self, share: float) -> None:
        """Decode ``share`` of what waits behind the batch in the database, oldest first.

        Decoding reports bad input as rejections; anything it raises is a bug, and it must not
        fail the transaction in front. It is left for the applier to meet again when it takes
        that batch, which stops the worker (see ``_apply_loop``).
        """
        todo = math.ceil(share * sum(fetched.undecoded for fetched in self._queued()))
        try:
            for fetched in self._queued():
                if todo <= 0:
                    return
                todo -= fetched.decode(todo, self.settings)
        except Exception:
            return

    def _queued(self) -> Iterator[Fetched]:
        """Everything taken or waiting behind the batch in the database, oldest first."""
        return chain([self._ahead] if self._ahead else [], self._waiting)

    async def _take_next(self) -> list[Record] | None:
        """Take the next batch now, so its reads can go out behind the commit in front of it.

        The records returned are the very list the batch is applied with, next.
        """
        async with self._changed:
            if self._ahead or not self._waiting or not self._accepting:
                return None
            self._ahead = self._take()
            self._changed.notify_all()
        return self._ahead.records

    def _prepare(self, taken: Fetched) -> PreparedBatch:
        """The taken batch, its last records decoded now if nothing had the time before."""
        taken.decode(taken.undecoded, self.settings)
        return PreparedBatch(taken.records, taken.decoded, while_waiting=self._decode_waiting)

    def _take(self) -> Fetched:
        """What has arrived, oldest first, up to one batch's worth (at least one fetch)."""
        taken = [self._waiting.popleft()]
        count = len(taken[0].raw)
        while (
            self._waiting and count + len(self._waiting[0].raw) <= self.settings.batch_max_records
        ):
            count += len(self._waiting[0].raw)
            taken.append(self._waiting.popleft())
        self._waiting_records -= count
        return Fetched.joined(taken)

    async def _apply_loop(self) -> None:
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(
                        lambda: bool(self._ahead or self._waiting) or not self._accepting
                    )
                    if not self._accepting:
                        return
                    taken, self._ahead = self._ahead or self._take(), None
                    self._applying = True
                    self._changed.notify_all()
                batch = self._prepare(taken)
                raw = taken.raw
                del taken  # the batch alone holds the decoded events: it can release them
                if not await self.processor.process(batch, self._take_next):
                    self.halted = True  # stopping: the partitions' next owner re-reads the rest
                    return
                self._committing = asyncio.create_task(
                    self._commit_after(self._committing, raw), name="commit-offsets"
                )
                async with self._changed:
                    self._applying = False
                    self._changed.notify_all()
        except Exception:
            log.exception("a batch failed outside the database retry loop; stopping the worker")
            self.halted = True
            self.on_failure()
        finally:
            await self.processor.close()
            async with self._changed:
                self._applying = False
                self._changed.notify_all()

    async def _commit_after(self, previous: asyncio.Task[None] | None, raw: RawBatch) -> None:
        """Commit this batch's offsets once the previous batch's commit is done: in order."""
        if previous is not None:
            await previous
        try:
            await self.commit(raw)
        except Exception:
            log.exception("committing offsets failed; the batch is applied and will be re-read")

    def _settled(self) -> bool:
        idle = not self._applying and (not (self._waiting or self._ahead) or not self._accepting)
        return self.halted or idle

    async def drained(self) -> bool:
        """Wait until everything queued is applied and committed; False if the pipeline halted."""
        async with self._changed:
            await self._changed.wait_for(self._settled)
        if self._committing is not None:
            await asyncio.shield(self._committing)
        return not self.halted

    async def stop(self) -> None:
        """Finish the batch in the database and commit it; what waits behind it is left."""
        async with self._changed:
            self._accepting = False
            self._changed.notify_all()
        if self._applier is not None:
            await asyncio.shield(self._applier)
        if self._committing is not None:
            await asyncio.shield(self._committing)
