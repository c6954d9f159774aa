"""Sunset automation: legacy models whose ``sunsetDate`` has passed are archived by the worker.

Exactly once, even with several workers and restarts, without any coordination beyond the
database. The sunset is treated like an inbound event whose id is
``sunset_causation_id(model, sunsetDate)``: candidate rows are locked ``FOR UPDATE SKIP LOCKED``
and re-checked under the lock (a row another worker archived meanwhile no longer qualifies), the
causation id is claimed in ``processed_events`` (so a model an admin unarchives after its sunset
stays unarchived until it gets a new sunsetDate), and the lifecycle events get deterministic ids,
so a replay could only hit the outbox's ``dedup_key`` and add nothing. Which flags changed, and
hence which events are emitted, is decided by :func:`worker.domain.rules.lifecycle_changes`, the
same rule the event path uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from contracts.events import sunset_causation_id
from contracts.meta import sunset_of
from worker.domain.model import ModelState
from worker.domain.rules import lifecycle_changes
from worker.persistence.registry import (
    SELECT_MODEL_STATE,
    OutboxRow,
    state_from_row,
    write_outbox,
)
from worker.settings import Settings, get_settings

log = logging.getLogger("modelreg.sunset")

#: Most models archived per transaction; the loop simply comes back for the rest.
SUNSET_BATCH_LIMIT = 500

# Candidates are read without locks and filtered in Python: a legacy sunsetDate may be malformed
# (adopted data), and one bad value must not make a SQL cast fail the whole run.
_CANDIDATES = """
SELECT id, meta->>'sunsetDate' FROM models
WHERE is_legacy AND NOT is_archived AND meta ? 'sunsetDate'
ORDER BY id
"""

_LOCK_DUE = (
    SELECT_MODEL_STATE
    + """
WHERE m.id = ANY(%s::text[]) AND m.is_legacy AND NOT m.is_archived
ORDER BY m.id
FOR UPDATE OF m SKIP LOCKED
"""
)

_ALREADY_SUNSET = """
SELECT event_id FROM processed_events WHERE event_id = ANY(%s::uuid[])
"""

_CLAIM = """
INSERT INTO processed_events (event_id) SELECT unnest(%s::uuid[])
ON CONFLICT DO NOTHING
RETURNING event_id
"""

_ARCHIVE = """
UPDATE models SET is_archived = true, is_available = false, updated_at = %s
WHERE id = ANY(%s::text[])
"""

_CLEAR_WITHDRAWN = """
UPDATE model_sync_state SET withdrawn = false WHERE model_id = ANY(%s::text[]) AND withdrawn
"""

# Same definition as the event path's referrers: legacy models naming this one as replacement.
_REFERRERS = """
SELECT meta->>'legacyReplacementModelId', id FROM models
WHERE is_legacy AND meta->>'legacyReplacementModelId' = ANY(%s::text[])
ORDER BY id
"""


def _due_sunset(raw: str | None, now: datetime) -> datetime | None:
    """The parsed sunset if it has passed at ``now``; naive values are taken as UTC."""
    if raw is None:
        return None
    try:
        sunset = sunset_of({"sunsetDate": raw})
    except ValueError:
        return None
    if sunset is None:
        return None
    if sunset.tzinfo is None:
        sunset = sunset.replace(tzinfo=UTC)
    return sunset if sunset <= now else None


class _Referrers:
    """The slice of the Registry protocol that ``lifecycle_changes`` needs for an archive."""

    def __init__(self, models: Mapping[str, ModelState], referrers: Mapping[str, list[str]]):
        self._models = models
        self._referrers = referrers

    def get(self, model_id: str) -> ModelState | None:
        return self._models.get(model_id)

    def legacy_referrers(self, model_id: str) -> list[str]:
        return list(self._referrers.get(model_id, []))


async def archive_sunset_models(
    conn: psycopg.AsyncConnection[Any],
    now: datetime,
    *,
    lifecycle_topic: str | None = None,
    limit: int = SUNSET_BATCH_LIMIT,
) -> list[str]:
    """Archive every legacy model whose sunset is at or before ``now``; return their ids.

    One transaction: rows are locked ``SKIP LOCKED`` (a concurrent caller skips them and finds
    them archived afterwards), archived, and their lifecycle events queued in the outbox.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    topic = lifecycle_topic or get_settings().lifecycle_topic
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(_CANDIDATES)
        due: dict[str, uuid.UUID] = {}
        for mid, raw in await cur.fetchall():
            sunset = _due_sunset(raw, now)
            if sunset is not None:
                due[mid] = sunset_causation_id(mid, sunset)
        if due:
            # Sunsets already carried out (the model was unarchived since) must not crowd out
            # new ones from the batch.
            await cur.execute(_ALREADY_SUNSET, (list(due.values()),))
            done = {row[0] for row in await cur.fetchall()}
            due = {mid: cause for mid, cause in due.items() if cause not in done}
        if not due:
            return []
        await cur.execute(_LOCK_DUE, (list(due)[:limit],))
        befores: dict[str, ModelState] = {}
        sunsets: dict[str, datetime] = {}
        for row in await cur.fetchall():
            state = state_from_row(row)
            # Re-read under the lock: the sunset may have been moved since the unlocked read.
            sunset = _due_sunset(state.meta.get("sunsetDate"), now)
            if sunset is not None:
                befores[state.id] = state
                sunsets[state.id] = sunset
        causes = {mid: sunset_causation_id(mid, sunset) for mid, sunset in sunsets.items()}
        await cur.execute(_CLAIM, (list(causes.values()),))
        claimed = {row[0] for row in await cur.fetchall()}
        befores = {mid: s for mid, s in befores.items() if causes[mid] in claimed}
        if not befores:
            return []
        ids = sorted(befores)
        await cur.execute(_ARCHIVE, (now, ids))
        await cur.execute(_CLEAR_WITHDRAWN, (ids,))
        await cur.execute(_REFERRERS, (ids,))
        referrers: dict[str, list[str]] = {}
        for target, referrer in await cur.fetchall():
            referrers.setdefault(target, []).append(referrer)

        rows: list[OutboxRow] = []
        for mid in ids:
            before = befores[mid]
            after = replace(before, is_archived=True, is_available=False, withdrawn=False)
            sunset = sunsets[mid]
            events = lifecycle_changes(
                before,
                after,
                causation_id=causes[mid],
                occurred_at=now,
                reason=f"sunset date {sunset.isoformat()} passed",
                registry=_Referrers(befores, referrers),
            )
            rows.extend(
                OutboxRow(
                    dedup_key=f"lifecycle:{event.event_id}",
                    topic=topic,
                    key=mid.encode(),
                    value=event.model_dump_json(by_alias=True, exclude_none=True).encode(),
                    headers=[("type", event.type)],
                )
                for event in events
            )
        await write_outbox(cur, rows)  # also NOTIFYs the relay, delivered at commit
    log.info("archived %d model(s) whose sunset date passed: %s", len(ids), ", ".join(ids))
    return ids


async def run_sunset_loop(
    pool: AsyncConnectionPool, settings: Settings, stop_event: asyncio.Event
) -> None:
    """Call :func:`archive_sunset_models` every ``settings.sunset_interval_s`` until stopped.

    A failed run (database down, deadlock) is logged and retried at the next tick: the loop
    itself never dies, and nothing is lost because the next run sees the same due models.
    """
    while not stop_event.is_set():
        try:
            async with pool.connection() as conn:
                while True:
                    archived = await archive_sunset_models(
                        conn, datetime.now(UTC), lifecycle_topic=settings.lifecycle_topic
                    )
                    # A full batch may mean more are due: drain before sleeping.
                    if len(archived) < SUNSET_BATCH_LIMIT or stop_event.is_set():
                        break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sunset run failed; retrying in %.0f s", settings.sunset_interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=settings.sunset_interval_s)
