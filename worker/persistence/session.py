"""Batch after batch on one connection, each batch's reads queued behind the commit before it.

With a transaction per batch on a pooled connection, the server idles while the worker takes the
next batch, decodes it and sends its reads, and the worker idles while the server reads. A
session keeps one connection in pipeline mode instead, and sends the next batch's ``BEGIN`` and
the read of its models right behind this batch's ``COMMIT``, before decoding it: the models are
named by the records' Kafka keys (the model id, checked against ``data.id`` when decoding). The
server finishes the writes, commits and reads while the worker decodes. Running after the commit
on the same connection, the reads see its rows and take their locks in a transaction of their
own. Once the rows are in, the claim of the event ids goes out and the fold starts at once, as if
every event were new: an id claimed before (a replay) violates ``processed_events``' primary key
and the server aborts the transaction, so a fold that counted a replayed event as new is never
committed.

A session only has a happy path. Any error ends it, a replay included, and the caller applies
the batch on its own with :func:`~worker.persistence.registry.apply_batch`, which reads the
claim's answer first, retries, and isolates a record the database refuses. A batch whose
``COMMIT`` was sent but not confirmed is safe to apply again: if it committed, its event ids are
claimed and its events come back as duplicates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from worker.decoding import Record
from worker.persistence.registry import (
    BatchReport,
    PreparedBatch,
    claim_all,
    events_of,
    fold_and_write,
    receive_reads,
    send_lookups,
    send_model_reads,
)
from worker.settings import Settings

TakeNext = Callable[[], Awaitable[Sequence[Record] | None]]
"""Hands over the batch to apply after this one, or None if none is waiting (or stopping); the
next ``apply`` gets the very same records."""


def model_keys(records: Sequence[Record]) -> list[str]:
    """The model ids a batch's records name by their Kafka key, sorted (the locking order)."""
    return sorted({r.key.decode("utf-8", "replace") for r in records if r.key is not None})


@dataclass(frozen=True, slots=True)
class _ReadAhead:
    records: Sequence[Record]
    models: psycopg.AsyncCursor[Any]


class ReadAheadSession:
    """Applies batches in order on one connection; the next batch's reads wait behind each commit.

    ``apply`` returns once the batch's ``COMMIT`` is sent; ``committed`` waits for the server to
    confirm it. Close the session when done, and after any error: its connection is then left
    clean (no transaction, no pipeline, autocommit off), or closed.
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self._exit = contextlib.AsyncExitStack()
        self._ahead: _ReadAhead | None = None
        self._pipeline: psycopg.AsyncPipeline | None = None

    @classmethod
    async def open(cls, conn: psycopg.AsyncConnection[Any], settings: Settings) -> ReadAheadSession:
        """Explicit ``BEGIN``/``COMMIT`` in one long pipeline: an autocommit connection."""
        await conn.set_autocommit(True)
        session = cls(conn, settings)
        session._pipeline = await session._exit.enter_async_context(conn.pipeline())
        return session

    @property
    def reading_ahead(self) -> bool:
        """True while a transaction holds the next batch's reads (and locks)."""
        return self._ahead is not None

    async def _begin(self, records: Sequence[Record]) -> _ReadAhead:
        await self.conn.execute("BEGIN")
        return _ReadAhead(records, await send_model_reads(self.conn, model_keys(records)))

    async def apply(self, batch: PreparedBatch, take_next: TakeNext) -> BatchReport:
        """Fold and write the batch, send its ``COMMIT``, then the next batch's reads, if any.

        While the server works on all that, the batch's ``while_waiting`` decodes what comes next.
        """
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            ahead = await self._begin(batch.records)
        elif ahead.records is not batch.records:
            raise RuntimeError("the batch applied is not the one whose reads were sent ahead")
        events = events_of(batch.decoded)
        claimed = await claim_all(self.conn, events)
        rows, referrers = await receive_reads(ahead.models, await send_lookups(self.conn, events))
        cur = self.conn.cursor(row_factory=tuple_row)
        report = await fold_and_write(cur, batch.decoded, (claimed, rows, referrers), self.settings)
        await self.conn.execute("COMMIT")
        following = await take_next()
        if following:
            self._ahead = await self._begin(following)
        batch.while_waiting(1.0)
        return report

    async def committed(self) -> None:
        """Wait until the server confirms the last ``COMMIT``; raises what went wrong if not."""
        assert self._pipeline is not None, "the session is not open"
        await self._pipeline.sync()

    async def close(self) -> None:
        """Roll back reads sent ahead for a batch that will not be applied; leave pipeline mode.

        The connection is closed instead if anything about it is in doubt, so the pool never
        hands out a connection in a broken state.
        """
        self._ahead = None
        try:
            with contextlib.suppress(psycopg.Error):  # the batch's own error, raised already
                await self._exit.aclose()
            if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
                await self.conn.execute("ROLLBACK")
            await self.conn.set_autocommit(False)
        except Exception:
            await self.conn.close()
