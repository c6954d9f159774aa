"""``modelreg demo``: the whole product on one machine, with nothing but ``pip install``.

Starts an embedded PostgreSQL and an embedded Kafka-compatible broker (Tansu) in a local data
folder, migrates, runs the worker, publishes a small real catalog and a few admin actions, and
prints the registry and the lifecycle events the worker published. Everything it started is
stopped on exit, Ctrl-C included. With ``keep_running`` it then stays up (worker, broker,
database, HTTP endpoints) until Ctrl-C, and prints the environment a second shell needs to run
``modelreg sync``, ``models`` or ``doctor`` against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import typer
from aiokafka import AIOKafkaConsumer
from psycopg.conninfo import make_conninfo

from worker.catalog.formats import CatalogModel, load_catalog
from worker.embedded import embedded_postgres, tansu_broker
from worker.persistence.migrate import migrate
from worker.publishing import (
    Publisher,
    archive_event,
    mark_legacy_event,
    set_tier_event,
    synced_event,
)
from worker.settings import Settings, load_settings
from worker.transport.app import create_worker
from worker.transport.topics import ensure_topics

DEMO_CATALOG = Path(__file__).parent / "catalog" / "data" / "demo_catalog.json"
ACTOR = "demo@model-registry"
log = logging.getLogger("modelreg.demo")


@contextlib.contextmanager
def demo_services(data_dir: Path, http_port: int | None = None) -> Iterator[Settings]:
    """Embedded PostgreSQL + Tansu, and settings pointing at them (idempotence off for Tansu)."""
    with embedded_postgres(data_dir / "postgres") as server, tansu_broker() as bootstrap:
        yield load_settings(
            database_url=fresh_database(server, "modelreg_demo"),
            kafka_bootstrap_servers=bootstrap,
            kafka_idempotent_producer=False,
            migrate_on_start=False,
            outbox_poll_interval_s=0.2,
            log_level="WARNING",
            http_port=http_port,
        )


def client_environment(settings: Settings) -> dict[str, str]:
    """What another shell exports to use the demo's services with ``modelreg``."""
    return {
        "MODELREG_DATABASE_URL": settings.database_url,
        "MODELREG_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MODELREG_KAFKA_IDEMPOTENT_PRODUCER": "false",
    }


async def wait_for_stop_signal() -> None:
    """Until SIGINT (Ctrl-C) or SIGTERM: a clean end of ``--keep-running``, not an error."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def fresh_database(server: str, name: str) -> str:
    """Each demo starts from an empty registry; the server's data folder is reused for speed."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return make_conninfo(server, dbname=name)


def admin_actions(models: list[CatalogModel]) -> list[dict[str, Any]]:
    """Set a tier, retire an older model in favour of its successor, archive one."""
    ids = {m.id for m in models}
    actions = []
    if "gpt-4.1" in ids:
        actions.append(set_tier_event("gpt-4.1", "pro", reason="premium model", actor=ACTOR))
    if {"gpt-4o", "gpt-4.1"} <= ids:
        actions.append(
            mark_legacy_event(
                "gpt-4o",
                replacement_model_id="gpt-4.1",
                deprecation_notice="Superseded by GPT-4.1",
                sunset_date=datetime.now(UTC) + timedelta(days=90),
                actor=ACTOR,
            )
        )
    haiku = sorted(i for i in ids if i.startswith("claude-3-5-haiku"))
    archived = haiku[0] if haiku else models[-1].id
    actions.append(archive_event(archived, reason="retired by the provider", actor=ACTOR))
    return actions


async def registry_rows(conninfo: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(
            "SELECT id, provider, coalesce(meta->>'requiredTier', 'free'), meta->>'contextLength',"
            " meta->>'inputCostPerMillionTokens', meta->>'outputCostPerMillionTokens',"
            " is_available, is_legacy, is_archived, meta->>'legacyReplacementModelId'"
            " FROM models ORDER BY provider, id"
        )
        return await cur.fetchall()


async def wait_for(conninfo: str, sql: str, expected: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(sql)).fetchone()
            if row is not None and row[0] >= expected:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the worker did not get there in {timeout:.0f} s: {sql}")
            await asyncio.sleep(0.2)


async def lifecycle_events(settings: Settings, expected: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        settings.lifecycle_topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(events) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            events.extend(json.loads(r.value) for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return events


def print_registry(rows: list[tuple[Any, ...]]) -> None:
    header = ("id", "provider", "tier", "context", "in $/M", "out $/M", "state", "replacement")
    table = [header]
    for mid, provider, tier, ctx, cin, cout, available, legacy, archived, repl in rows:
        state = "archived" if archived else "legacy" if legacy else "available"
        if not available and not archived:
            state += " (unavailable)"
        table.append((mid, provider, tier, ctx or "", cin or "", cout or "", state, repl or ""))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        typer.echo(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        )
        if index == 0:
            typer.echo("  ".join("-" * width for width in widths))


async def run(
    settings: Settings, catalog_path: Path = DEMO_CATALOG, *, keep_running: bool = False
) -> None:
    catalog = load_catalog(catalog_path)
    models = list(catalog.models)
    await asyncio.to_thread(migrate, settings.database_url)
    await ensure_topics(settings.kafka_bootstrap_servers, settings)
    worker = create_worker(settings)
    task = asyncio.create_task(worker.app.run(), name="worker")
    try:
        typer.echo(f"publishing {len(models)} models from {catalog_path.name} ...")
        async with Publisher(settings) as publisher:
            for model in models:
                await publisher.publish_event(synced_event(model, "demo-catalog"))
            await publisher.flush()
            await wait_for(settings.database_url, "SELECT count(*) FROM models", len(models))
            actions = admin_actions(models)
            typer.echo(f"publishing {len(actions)} admin actions ...")
            for action in actions:
                await publisher.publish_event(action)
            await publisher.flush()
        await wait_for(
            settings.database_url,
            "SELECT count(*) FROM processed_events",
            len(models) + len(actions),
        )
        await wait_for(
            settings.database_url,
            "SELECT (count(*) FILTER (WHERE sent_at IS NULL) = 0)::int FROM outbox",
            1,
        )
        typer.echo("\nregistry:")
        print_registry(await registry_rows(settings.database_url))
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
            row = await (await conn.execute("SELECT count(*) FROM outbox")).fetchone()
        events = await lifecycle_events(settings, row[0] if row else 0)
        typer.echo(f"\nlifecycle events on {settings.lifecycle_topic}:")
        for event in events:
            extra = f" -> {event['replacementModelId']}" if event.get("replacementModelId") else ""
            typer.echo(f"  {event['type']:<28} {event['modelId']}{extra}  state={event['state']}")
        if keep_running:
            await keep_serving(settings, worker.http_port)
    finally:
        worker.app.exit()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, settings.shutdown_timeout_s)


async def keep_serving(settings: Settings, http_port: int | None) -> None:
    typer.echo("\nthe worker keeps running; in another shell:\n")
    for name, value in client_environment(settings).items():
        typer.echo(f"  export {name}={shlex.quote(value)}")
    typer.echo("\n  modelreg models list\n  modelreg doctor")
    if http_port is not None:
        typer.echo(f"  curl -s http://127.0.0.1:{http_port}/metrics")
    typer.echo("\nCtrl-C stops everything.", nl=True)
    await wait_for_stop_signal()


def main(data_dir: Path, *, keep_running: bool = False, http_port: int | None = None) -> None:
    for noisy in ("faststream", "aiokafka", "modelreg"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with demo_services(data_dir, http_port) as settings:
        typer.echo(
            f"PostgreSQL and Kafka-compatible broker up ({settings.kafka_bootstrap_servers})"
        )
        asyncio.run(run(settings, keep_running=keep_running))
    typer.echo("\nstopped the worker, the broker and PostgreSQL")
