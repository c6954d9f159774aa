"""Publish one provider's catalog as provider-sync events: synced for each listed model,
withdrawn for registered models the provider no longer lists.

Every event is built and validated before the first one is sent, so a bad catalog publishes
nothing rather than half a sync. All events of one run share one ``occurredAt``: the worker
orders syncs of a model by it, and one run is one observation of the provider's catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from worker.catalog.formats import CatalogModel
from worker.persistence.db import conninfo_password, describe_conninfo, safe_reason
from worker.publishing import DEFAULT_SYNC_SOURCE, Publisher, synced_event, withdrawn_event
from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """One published event; ``done`` of ``total`` for a progress bar."""

    done: int
    total: int
    event_type: str
    model_id: str


ProgressCallback = Callable[[SyncProgress], None]


class RegistryUnavailable(Exception):
    """The registry database could not be read; the message names host and db, never secrets."""


@dataclass
class SyncSummary:
    provider: str
    synced: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.synced) + len(self.withdrawn)


def _describe_failure(conninfo: str, error: Exception) -> str:
    """host:port/db and libpq's first line, with the password scrubbed (this gets printed)."""
    first_line = (str(error).splitlines() or [type(error).__name__])[0]
    reason = safe_reason(Exception(first_line), conninfo_password(conninfo))
    return f"cannot read the registry at {describe_conninfo(conninfo)}: {reason}"


def registered_ids(conninfo: str, provider: str) -> set[str]:
    """Ids of the provider's models a withdrawal would still change.

    Archived models and models that are already unavailable are left out: the worker ignores a
    withdrawal of those (see ``worker.domain.rules.model_withdrawn``), so sending one is noise.
    """
    try:
        with psycopg.connect(conninfo, connect_timeout=10, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id FROM models WHERE provider = %s AND is_available AND NOT is_archived",
                (provider,),
            ).fetchall()
    except psycopg.OperationalError as error:
        raise RegistryUnavailable(_describe_failure(conninfo, error)) from None
    return {row[0] for row in rows}


def plan_withdrawals(models: Iterable[CatalogModel], existing_ids: Iterable[str]) -> list[str]:
    """Registered ids missing from the catalog, sorted for a stable order."""
    listed = {m.id for m in models}
    return sorted(set(existing_ids) - listed)


def build_sync_events(
    provider: str,
    models: Sequence[CatalogModel],
    *,
    withdraw: bool = True,
    existing_ids: Iterable[str] = (),
    source: str = DEFAULT_SYNC_SOURCE,
    occurred_at: datetime | None = None,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Every event of one sync run, validated; raises ValueError before anything is sent."""
    foreign = sorted({m.id for m in models if m.provider != provider})
    if foreign:
        raise ValueError(f"models of another provider than {provider!r}: {', '.join(foreign)}")
    ids = [m.id for m in models]
    duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if duplicates:
        raise ValueError(f"duplicate model ids in the catalog: {', '.join(duplicates)}")
    gone = plan_withdrawals(models, existing_ids) if withdraw else []
    if withdraw and not models and gone and not allow_empty:
        raise ValueError(
            f"the catalog lists no {provider} models; refusing to withdraw all {len(gone)} "
            "registered ones (pass allow_empty=True / --allow-empty if that is intended)"
        )
    at = occurred_at or datetime.now(UTC)
    events = [synced_event(m, source, occurred_at=at) for m in models]
    events += [withdrawn_event(model_id, source, occurred_at=at) for model_id in gone]
    return events


async def sync_catalog(
    settings: Settings,
    provider: str,
    models: Sequence[CatalogModel],
    *,
    withdraw: bool = True,
    existing_ids: set[str],
    progress: ProgressCallback | None = None,
    source: str = DEFAULT_SYNC_SOURCE,
    allow_empty: bool = False,
    dry_run: bool = False,
) -> SyncSummary:
    """Publish the catalog of ``provider`` to the provider-sync topic and wait for the acks.

    ``existing_ids`` comes from ``registered_ids`` (the CLI reads the database); models in it but
    not in ``models`` are withdrawn unless ``withdraw`` is False. ``dry_run`` validates and
    reports without connecting to Kafka.
    """
    events = build_sync_events(
        provider,
        models,
        withdraw=withdraw,
        existing_ids=existing_ids,
        source=source,
        allow_empty=allow_empty,
    )
    summary = SyncSummary(provider)
    for event in events:
        target = summary.synced if event["type"] == "model.synced" else summary.withdrawn
        target.append(event["data"]["id"])
    if dry_run:
        return summary
    async with Publisher(settings, client_id="modelreg-sync") as publisher:
        for done, event in enumerate(events, start=1):
            model_id = event["data"]["id"]
            await publisher.publish(settings.provider_sync_topic, model_id, event)
            if progress is not None:
                progress(SyncProgress(done, len(events), event["type"], model_id))
    return summary


__all__ = [
    "ProgressCallback",
    "RegistryUnavailable",
    "SyncProgress",
    "SyncSummary",
    "build_sync_events",
    "plan_withdrawals",
    "registered_ids",
    "sync_catalog",
]
