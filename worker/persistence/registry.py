"""Applies a batch of Kafka records to the registry in one transaction, with set-based SQL.

The order of work inside the transaction is what makes the worker safe to scale out:
1. load and lock the models the batch touches, in id order;
2. claim the batch's event ids in ``processed_events`` (a replay or a second consumer that
   briefly owns the same partition finds them claimed and treats them as duplicates; locking
   first, in one order, makes two such consumers wait for each other instead of deadlocking);
3. fold every event through the pure rules, in order, in memory;
4. write the final rows, sync state, audit rows and outbox rows (lifecycle events and dead
   letters) with one statement each per round of ``WRITE_EVERY`` events, then ``NOTIFY`` the
   outbox relay.
Steps 1-2 are one round trip and 3-4 another (psycopg pipeline mode): the server executes a
round's writes while the next events are folded. While the server reads, and again while it
finishes the writes, the transaction does the caller's ``while_waiting`` work (the worker decodes
its next batch there), so the one Python thread is busy while the database is.
A record the database refuses to store (a data error) is isolated by bisecting the batch and
dead-lettered alone, so one poison event never sinks the rest.
``session.py`` runs the same steps batch after batch on one connection, with step 1 of the next
batch queued behind this one's commit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, overload

import psycopg
from psycopg import abc
from psycopg.adapt import Transformer
from psycopg.rows import tuple_row

from contracts.events import InboundEvent, MarkLegacy
from contracts.jsoncodec import dumps_text
from worker.decoding import Record, adapter_for, decode
from worker.domain.model import Decision, ModelState, Outcome, Rejection, RejectionKind
from worker.domain.rules import decide
from worker.settings import Settings
from worker.values import value_object

OUTBOX_CHANNEL: Final = "modelreg_outbox"
#: Events folded between two rounds of writes in one transaction (pipeline mode overlaps them).
WRITE_EVERY: Final = 250
DEAD_LETTER_MAX_VALUE: Final = 512 * 1024
"""Larger values are truncated in the dead letter (Kafka's default message limit is 1 MB)."""


@value_object
class EventResult:
    topic: str
    event_type: str
    outcome: str
    event_id: uuid.UUID | None = None  # formatted only if logged: str() of a UUID is not free
    model_id: str | None = None


@dataclass
class BatchReport:
    """What one batch did, for logs and metrics."""

    results: list[EventResult] = field(default_factory=list)
    outbox_rows: int = 0
    transactions: int = 0

    @property
    def outcomes(self) -> Counter[tuple[str, str, str]]:
        return Counter((r.topic, r.event_type, r.outcome) for r in self.results)

    def merge(self, other: BatchReport) -> None:
        self.results.extend(other.results)
        self.outbox_rows += other.outbox_rows
        self.transactions += other.transactions


@value_object
class OutboxRow:
    dedup_key: str
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str]]


class ModelRows:
    """The rows of the models a batch read, parsed only when the fold is about to need them.

    Parsing a thousand rows (meta included) takes about 8 ms, in which the server would wait
    for the first round of writes; parsed a round at a time, all but the first round's rows are
    parsed while the server writes the round before.
    """

    def __init__(
        self,
        models: psycopg.AsyncCursor[Any] | None = None,
        extra: Mapping[str, ModelState] | None = None,
    ) -> None:
        self._index: dict[str, int] = {}
        self._rows: abc.Transformer | None = None
        if models is not None and models.pgresult is not None:
            result = models.pgresult
            self._rows = Transformer.from_context(models)
            self._rows.set_pgresult(result)
            ids = (result.get_value(i, 0) for i in range(result.ntuples))
            self._index = {bytes(mid or b"").decode(): i for i, mid in enumerate(ids)}
        self._extra = dict(extra or {})

    def take(self, model_ids: Iterable[str]) -> dict[str, ModelState]:
        """These models' states, each at most once (a model not returned is not in the table)."""
        taken: dict[str, ModelState] = {}
        for mid in model_ids:
            row = self._index.pop(mid, None)
            if row is not None and self._rows is not None:
                taken[mid] = state_from_row(self._rows.load_row(row, tuple))
            elif (state := self._extra.pop(mid, None)) is not None:
                taken[mid] = state
        return taken

    def take_unlocked(self) -> dict[str, ModelState]:
        """The models read without a lock (replacement chains, referrers), as locked if they are."""
        return self.take(list(self._extra))


class BatchView:
    """The registry as the rules see it while a batch is folded: loaded rows plus batch edits."""

    def __init__(self, rows: ModelRows, referrers: Mapping[str, set[str]]):
        self._rows = rows
        self.loaded = rows.take_unlocked()
        self.current: dict[str, ModelState] = dict(self.loaded)
        self.dirty: set[str] = set()
        self._referrers = referrers

    def load(self, model_ids: Iterable[str]) -> None:
        """Make these models' rows part of the view before the events touching them are folded."""
        for mid, state in self._rows.take(model_ids).items():
            self.loaded[mid] = state
            self.current.setdefault(mid, state)

    def update(self, state: ModelState) -> None:
        self.current[state.id] = state
        self.dirty.add(state.id)

    def get(self, model_id: str) -> ModelState | None:
        return self.current.get(model_id)

    def legacy_referrers(self, model_id: str) -> list[str]:
        candidates = set(self._referrers.get(model_id, ())) | set(self.current)
        return sorted(
            other
            for other in candidates
            if (state := self.current.get(other)) is not None
            and state.is_legacy
            and state.meta.get("legacyReplacementModelId") == model_id
        )

    def take_changed(self, last_touch: Mapping[str, int], upto: int) -> list[ModelState]:
        """The changed models no event after ``upto`` touches; they are not returned again."""
        ready = sorted(mid for mid in self.dirty if last_touch.get(mid, -1) <= upto)
        self.dirty.difference_update(ready)
        return [self.current[mid] for mid in ready]


# --- SQL --------------------------------------------------------------------------------------

CLAIM_EVENTS = """
INSERT INTO processed_events (event_id)
SELECT value::uuid FROM jsonb_array_elements_text(%s::jsonb)
ON CONFLICT DO NOTHING
RETURNING event_id
"""

#: Claims every id, for a batch folded as if all its events were new, without waiting for the
#: answer: an id claimed before (a replay) violates the primary key and aborts the transaction.
#: A plain insert costs the server about a third less than ``ON CONFLICT DO NOTHING``, whose
#: speculative insertion writes a second WAL record per id.
CLAIM_ALL = """
INSERT INTO processed_events (event_id)
SELECT value::uuid FROM jsonb_array_elements_text(%s::jsonb)
"""
PROCESSED_EVENTS_KEY: Final = "processed_events_pkey"

#: A model with its sync bookkeeping, in the column order of :func:`state_from_row`.
SELECT_MODEL_STATE = """
SELECT m.id, m.name, m.provider, m.meta, m.is_available, m.is_legacy, m.is_archived,
       s.last_synced_at, coalesce(s.withdrawn, false)
FROM models m LEFT JOIN model_sync_state s ON s.model_id = m.id"""

LOAD_MODELS = (
    SELECT_MODEL_STATE
    + """
WHERE m.id IN (SELECT jsonb_array_elements_text(%s::jsonb))
ORDER BY m.id
FOR UPDATE OF m
"""
)

LOAD_REPLACEMENT_CHAINS = (
    """
WITH RECURSIVE chain(id, depth) AS (
    SELECT unnest(%s::text[]), 0
    UNION
    SELECT m.meta->>'legacyReplacementModelId', c.depth + 1
    FROM chain c JOIN models m ON m.id = c.id
    WHERE c.depth < 100 AND m.meta ? 'legacyReplacementModelId'
)
"""
    + SELECT_MODEL_STATE
    + """
WHERE m.id IN (SELECT id FROM chain)
"""
)

#: Legacy models naming one of these as replacement: an archive event lists them.
LOAD_REFERRERS = (
    SELECT_MODEL_STATE
    + """
WHERE m.is_legacy AND m.meta->>'legacyReplacementModelId' = ANY(%s::text[])
"""
)

UPSERT_MODELS = """
INSERT INTO models AS m
    (id, name, provider, is_available, is_legacy, is_archived, meta, updated_at)
SELECT u.id, u.name, u.provider, u.a, u.l, u.x, u.meta, CURRENT_TIMESTAMP
FROM jsonb_to_recordset(%s::jsonb)
    AS u(id text, name text, provider text, a bool, l bool, x bool, meta jsonb)
ON CONFLICT (id) DO UPDATE SET
    is_available = EXCLUDED.is_available,
    is_legacy = EXCLUDED.is_legacy,
    is_archived = EXCLUDED.is_archived,
    meta = EXCLUDED.meta,
    updated_at = EXCLUDED.updated_at
"""

UPSERT_SYNC_STATE = """
INSERT INTO model_sync_state AS s (model_id, last_synced_at, withdrawn)
SELECT u.id, u.at, u.w
FROM jsonb_to_recordset(%s::jsonb) AS u(id text, at timestamptz, w bool)
ON CONFLICT (model_id) DO UPDATE SET
    last_synced_at = EXCLUDED.last_synced_at,
    withdrawn = EXCLUDED.withdrawn
"""

INSERT_AUDIT = """
INSERT INTO tier_audit (model_id, actor, old_tier, new_tier, reason, event_id)
SELECT u.model_id, u.actor, u.old_tier::jsonb, u.new_tier::jsonb, u.reason, u.event_id
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::uuid[])
    AS u(model_id, actor, old_tier, new_tier, reason, event_id)
"""

INSERT_OUTBOX = """
INSERT INTO outbox (dedup_key, topic, key, value, headers)
SELECT u.dedup_key, u.topic, u.key, u.value, u.headers::jsonb
FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::bytea[], %s::text[])
    AS u(dedup_key, topic, key, value, headers)
ON CONFLICT (dedup_key) DO NOTHING
"""


def state_from_row(row: Sequence[Any]) -> ModelState:
    mid, name, provider, meta, available, legacy, archived, synced_at, withdrawn = row
    return ModelState(
        id=mid,
        name=name,
        provider=provider,
        meta=meta,
        is_available=available,
        is_legacy=legacy,
        is_archived=archived,
        last_synced_at=synced_at,
        withdrawn=withdrawn,
    )


def _dumps(value: Any) -> str:
    return dumps_text(value)


def _safe_header(text: str) -> str:
    # jsonb cannot hold U+0000; an error message quoting bad input must still be storable.
    return text.replace("\x00", "\\u0000")


def dead_letter(record: Record, rejection: Rejection, dead_letter_topic: str) -> OutboxRow:
    """The dead letter keeps the original bytes and says exactly what was wrong, and where."""
    value = record.value or b""
    headers = [
        ("error.type", rejection.kind.value),
        ("error.message", _safe_header(rejection.message)),
        ("original.topic", record.topic),
        ("original.partition", str(record.partition)),
        ("original.offset", str(record.offset)),
    ]
    if rejection.detail:
        headers.append(("error.detail", _safe_header(_dumps(list(rejection.detail)))))
    if len(value) > DEAD_LETTER_MAX_VALUE:
        headers.append(("original.size", str(len(value))))
        headers.append(("error.value_truncated", "true"))
        value = value[:DEAD_LETTER_MAX_VALUE]
    return OutboxRow(
        dedup_key=f"dead-letter:{record.topic}:{record.partition}:{record.offset}",
        topic=dead_letter_topic,
        key=record.key,
        value=value,
        headers=headers,
    )


def _lifecycle_rows(decision: Decision, topic: str) -> Iterable[OutboxRow]:
    for event in decision.lifecycle:
        yield OutboxRow(
            dedup_key=f"lifecycle:{event.event_id}",
            topic=topic,
            key=event.model_id.encode(),
            value=event.model_dump_json(by_alias=True, exclude_none=True).encode(),
            headers=[("type", event.type)],
        )


async def write_outbox(cur: psycopg.AsyncCursor[Any], rows: Sequence[OutboxRow]) -> None:
    if not rows:
        return
    await cur.execute(
        INSERT_OUTBOX,
        (
            [r.dedup_key for r in rows],
            [r.topic for r in rows],
            [r.key for r in rows],
            [r.value for r in rows],
            [_dumps(r.headers) for r in rows],
        ),
    )
    await cur.execute(f"NOTIFY {OUTBOX_CHANNEL}")


# --- the batch ------------------------------------------------------------------------------


Decoded = tuple[Record, InboundEvent | Rejection]

Reads = tuple[set[uuid.UUID], ModelRows, dict[str, set[str]]]
"""What a batch's reads returned: the event ids it claimed, the models' rows, and the legacy
models naming each archived model as their replacement."""

WhileWaiting = Callable[[float], None]
"""Work for the transaction to do while the server works: called with the share of it to do
now (``SHARE_WHILE_READING`` while the server reads, 1.0 once the last writes are sent)."""
#: Reading a batch takes the server about a third of the time writing it does (measured on the
#: benchmark's workload: 0.3 beat 0.5 and 0.15).
SHARE_WHILE_READING: Final = 0.3


def nothing_to_do(share: float) -> None:
    return None


class PreparedBatch(Sequence[Record]):
    """Records already decoded, and what to do while the database works on them."""

    def __init__(
        self,
        records: Sequence[Record],
        decoded: list[Decoded],
        while_waiting: WhileWaiting = nothing_to_do,
    ) -> None:
        self.records = records
        self.decoded = decoded
        self.while_waiting = while_waiting

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        return self.records[index]

    def __len__(self) -> int:
        return len(self.records)

    def release(self) -> None:
        """Drop the decoded events once the batch is written.

        Freeing a thousand events takes a few milliseconds; done before waiting for the commit,
        it overlaps the server's work instead of delaying the next batch. Applying the batch
        again decodes its records anew.
        """
        self.decoded = []


def events_of(decoded: Sequence[Decoded]) -> list[InboundEvent]:
    """The batch's events that decoded, in order (the rejected records left out)."""
    return [item for _, item in decoded if not isinstance(item, Rejection)]


def decode_records(records: Sequence[Record], settings: Settings) -> list[Decoded]:
    keys = {k: v.get_secret_value().encode() for k, v in settings.admin_keys.items()}
    decoded: list[Decoded] = []
    for record in records:
        adapter = adapter_for(record.topic, settings.provider_sync_topic, settings.admin_topic)
        admin_keys = keys if record.topic == settings.admin_topic else None
        decoded.append((record, decode(record, adapter, admin_keys=admin_keys)))
    return decoded


@dataclass(frozen=True, slots=True)
class Lookups:
    """The reads the rules need beyond the batch's own models, sent and not yet answered."""

    chains: psycopg.AsyncCursor[Any] | None
    referring: psycopg.AsyncCursor[Any] | None


async def send_model_reads(
    conn: psycopg.AsyncConnection[Any], model_ids: Sequence[str]
) -> psycopg.AsyncCursor[Any]:
    """Read and lock these models, in id order (two consumers lock in the same order)."""
    models = conn.cursor(row_factory=tuple_row)
    await models.execute(LOAD_MODELS, (_dumps(sorted(model_ids)),))
    return models


async def send_claim(
    conn: psycopg.AsyncConnection[Any], events: Sequence[InboundEvent]
) -> psycopg.AsyncCursor[Any]:
    """Claim the events' ids; the answer lists the ids claimed now (the others are replays).

    Sent after the models' read: every consumer locks models first and claims after, so two
    consumers that briefly share a partition wait for each other instead of deadlocking.
    """
    claim = conn.cursor(row_factory=tuple_row)
    await claim.execute(CLAIM_EVENTS, (_dumps([str(e.event_id) for e in events]),))
    return claim


async def send_lookups(
    conn: psycopg.AsyncConnection[Any], events: Sequence[InboundEvent]
) -> Lookups:
    """Read the replacement chains and the referrers the events' rules need, if any."""
    replacements = sorted(
        {
            e.data.replacement_model_id
            for e in events
            if isinstance(e, MarkLegacy) and e.data.replacement_model_id is not None
        }
    )
    chains = None
    if replacements:
        chains = conn.cursor(row_factory=tuple_row)
        await chains.execute(LOAD_REPLACEMENT_CHAINS, (replacements,))
    archived = sorted({e.data.id for e in events if e.type == "model.archive"})
    referring = None
    if archived:
        referring = conn.cursor(row_factory=tuple_row)
        await referring.execute(LOAD_REFERRERS, (archived,))
    return Lookups(chains, referring)


async def claim_all(
    conn: psycopg.AsyncConnection[Any], events: Sequence[InboundEvent]
) -> set[uuid.UUID]:
    """Claim the events' ids without reading the answer; a replayed id aborts the transaction
    (:func:`is_replay` tells that error apart).

    Returns the ids claimed if the transaction goes on, for the fold to treat as new.
    """
    ids = list(dict.fromkeys(e.event_id for e in events))
    if ids:
        await conn.execute(CLAIM_ALL, (_dumps([str(i) for i in ids]),))
    return set(ids)


def is_replay(error: BaseException) -> bool:
    """True for the error :func:`claim_all` aborts a transaction with when an id was claimed.

    Only what the log says depends on it: any error ends a read-ahead session, and the batch is
    then applied on its own, reading the claim's answer first.
    """
    return (
        isinstance(error, psycopg.errors.UniqueViolation)
        and error.diag.constraint_name == PROCESSED_EVENTS_KEY
    )


async def receive_reads(
    models: psycopg.AsyncCursor[Any], lookups: Lookups
) -> tuple[ModelRows, dict[str, set[str]]]:
    """The models' rows, and who refers to the archived ones."""
    with contextlib.suppress(IndexError):  # raised for no rows, once they have arrived
        await models.scroll(0)  # receive the rows; they are parsed as the fold needs them
    loaded: dict[str, ModelState] = {}
    if lookups.chains is not None:
        for row in await lookups.chains.fetchall():
            loaded.setdefault(row[0], state_from_row(row))
    referrers: dict[str, set[str]] = {}
    if lookups.referring is not None:
        # read, not locked: the archive changes the replacement, not the models naming it
        for row in await lookups.referring.fetchall():
            referrer = state_from_row(row)
            loaded.setdefault(referrer.id, referrer)
            target = referrer.meta["legacyReplacementModelId"]
            referrers.setdefault(target, set()).add(referrer.id)
    return ModelRows(models, loaded), referrers


async def _read(
    conn: psycopg.AsyncConnection[Any],
    events: Sequence[InboundEvent],
    while_waiting: WhileWaiting,
) -> Reads:
    """Lock the batch's models, claim its event ids and read what its rules need: one round trip.

    The models of every event are locked, duplicates' included (a replay is rare, and claiming
    first would cost a round trip). Part of the waiting work is done before the answer is read:
    the server reads in less time than it writes, so most is left for the writes.
    """
    models = await send_model_reads(conn, list({e.data.id for e in events}))
    claim = await send_claim(conn, events)
    lookups = await send_lookups(conn, events)
    while_waiting(SHARE_WHILE_READING)
    rows, referrers = await receive_reads(models, lookups)
    return {row[0] for row in await claim.fetchall()}, rows, referrers


async def _write(
    cur: psycopg.AsyncCursor[Any],
    changed: Sequence[ModelState],
    view: BatchView,
    decisions: Sequence[Decision],
    outbox: Sequence[OutboxRow],
) -> None:
    rows = [s for s in changed if _row_changed(view.loaded.get(s.id), s)]
    if rows:
        # One JSON document for the whole batch: serialized in C and parsed by the server,
        # much cheaper than adapting seven Python lists element by element.
        await cur.execute(
            UPSERT_MODELS,
            (
                _dumps(
                    [
                        {
                            "id": s.id,
                            "name": s.name,
                            "provider": s.provider,
                            "a": s.is_available,
                            "l": s.is_legacy,
                            "x": s.is_archived,
                            "meta": s.meta,
                        }
                        for s in rows
                    ]
                ),
            ),
        )
    synced = [s for s in changed if _sync_changed(view.loaded.get(s.id), s)]
    if synced:
        await cur.execute(
            UPSERT_SYNC_STATE,
            (_dumps([{"id": s.id, "at": s.last_synced_at, "w": s.withdrawn} for s in synced]),),
        )
    audit = [entry for d in decisions for entry in d.audit]
    if audit:
        await cur.execute(
            INSERT_AUDIT,
            (
                [a.model_id for a in audit],
                [a.actor for a in audit],
                [_dumps(a.old) for a in audit],
                [_dumps(a.new) for a in audit],
                [a.reason for a in audit],
                [a.event_id for a in audit],
            ),
        )
    await write_outbox(cur, outbox)


def _row_changed(before: ModelState | None, after: ModelState) -> bool:
    return (
        before is None
        or before.is_available != after.is_available
        or before.is_legacy != after.is_legacy
        or before.is_archived != after.is_archived
        or (before.meta is not after.meta and before.meta != after.meta)
    )


def _sync_changed(before: ModelState | None, after: ModelState) -> bool:
    if after.last_synced_at is None and not after.withdrawn:
        return False
    return (
        before is None
        or before.last_synced_at != after.last_synced_at
        or before.withdrawn != after.withdrawn
    )


async def fold_and_write(
    cur: psycopg.AsyncCursor[Any],
    decoded: Sequence[Decoded],
    reads: Reads,
    settings: Settings,
) -> BatchReport:
    """Fold the batch through the rules in order, sending its writes every ``WRITE_EVERY`` events.

    ``reads`` is what :func:`receive_reads` returned for this batch, in this transaction.
    """
    claimed, rows, referrers = reads
    claimed = set(claimed)
    report = BatchReport(transactions=1)
    outbox: list[OutboxRow] = []
    decisions: list[Decision] = []
    view = BatchView(rows, referrers)
    last_touch = {
        item.data.id: index
        for index, (_, item) in enumerate(decoded)
        if not isinstance(item, Rejection)
    }
    for index, (record, item) in enumerate(decoded):
        if index % WRITE_EVERY == 0:
            view.load(
                e.data.id
                for _, e in decoded[index : index + WRITE_EVERY]
                if not isinstance(e, Rejection)
            )
        if isinstance(item, Rejection):
            outbox.append(dead_letter(record, item, settings.dead_letter_topic))
            report.results.append(EventResult(record.topic, "?", Outcome.REJECTED))
        elif item.event_id not in claimed:
            report.results.append(_result(record, item, Outcome.DUPLICATE))
        else:
            claimed.discard(item.event_id)  # a second copy inside the batch is a duplicate
            decision = decide(item, view.get(item.data.id), view)
            if decision.rejection is not None:
                rejection = decision.rejection
                outbox.append(dead_letter(record, rejection, settings.dead_letter_topic))
            elif decision.outcome is Outcome.APPLIED and decision.state is not None:
                view.update(decision.state)
                outbox.extend(_lifecycle_rows(decision, settings.lifecycle_topic))
                decisions.append(decision)
            report.results.append(_result(record, item, decision.outcome))
        if (index + 1) % WRITE_EVERY == 0 or index + 1 == len(decoded):
            # The server writes these rows while the next events are folded.
            changed = view.take_changed(last_touch, index)
            await _write(cur, changed, view, decisions, outbox)
            report.outbox_rows += len(outbox)
            decisions, outbox = [], []
    return report


async def _apply_decoded(
    conn: psycopg.AsyncConnection[Any],
    decoded: Sequence[Decoded],
    settings: Settings,
    while_waiting: WhileWaiting,
) -> BatchReport:
    events = events_of(decoded)
    # Pipeline mode: the reads go in one round trip, the writes and the commit in another.
    async with conn.pipeline(), conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        reads: Reads = (set(), ModelRows(), {})
        if events:
            reads = await _read(conn, events, while_waiting)
        report = await fold_and_write(cur, decoded, reads, settings)
        while_waiting(1.0)  # the server is still writing; the commit waits for it anyway
    return report


def _result(record: Record, event: InboundEvent, outcome: Outcome) -> EventResult:
    return EventResult(record.topic, event.type, outcome, event.event_id, event.data.id)


async def _apply_isolating(
    conn: psycopg.AsyncConnection[Any],
    decoded: Sequence[Decoded],
    settings: Settings,
    while_waiting: WhileWaiting,
) -> BatchReport:
    """Bisect on data errors until the record the database refuses is alone, then dead-letter it."""
    try:
        return await _apply_decoded(conn, decoded, settings, while_waiting)
    except (psycopg.DataError, psycopg.IntegrityError) as error:
        if len(decoded) == 1:
            record, _ = decoded[0]
            message = f"the database refused the event: {error.diag.message_primary or error}"
            rejection = Rejection(RejectionKind.UNSTORABLE, message)
            return await _apply_decoded(conn, [(record, rejection)], settings, while_waiting)
        middle = len(decoded) // 2
        report = await _apply_isolating(conn, decoded[:middle], settings, while_waiting)
        report.merge(await _apply_isolating(conn, decoded[middle:], settings, while_waiting))
        return report


async def apply_batch(
    conn: psycopg.AsyncConnection[Any], records: Sequence[Record], settings: Settings
) -> BatchReport:
    """Apply records in order; raises only on database trouble (to be retried by the caller)."""
    if not records:
        return BatchReport()
    if not isinstance(records, PreparedBatch):
        records = PreparedBatch(records, decode_records(records, settings))
    elif len(records.decoded) != len(records):  # released after an attempt
        decoded = decode_records(records.records, settings)
        records = PreparedBatch(records.records, decoded, records.while_waiting)
    return await _apply_isolating(conn, records.decoded, settings, records.while_waiting)
