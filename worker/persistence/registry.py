"""Applies batches of decoded events to the registry in one transaction (implementation pending)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from worker.decoding import Record
from worker.settings import Settings

OUTBOX_CHANNEL = "modelreg_outbox"


@dataclass
class BatchReport:
    """What one batch did: outcome counts by (topic, type, outcome), and rows queued."""

    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    outbox_rows: int = 0


async def apply_batch(
    conn: psycopg.AsyncConnection, records: Sequence[Record], settings: Settings
) -> BatchReport:
    raise NotImplementedError
