"""Catalog sync and admin publishing against a real broker and a real registry database.

What the worker will see is checked with the worker's own decoder: keys equal model ids, every
event passes the contract, admin events carry valid HMAC headers when keys are configured.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer

from contracts.events import ADMIN_EVENTS, PROVIDER_SYNC_EVENTS, ModelSynced
from worker.catalog.formats import CatalogModel, load_catalog
from worker.catalog.sync import (
    RegistryUnavailable,
    SyncProgress,
    build_sync_events,
    registered_ids,
    sync_catalog,
)
from worker.decoding import KEY_ID_HEADER, Record, decode, verify_signature
from worker.domain.model import Rejection
from worker.publishing import (
    Publisher,
    PublishError,
    archive_event,
    clear_legacy_event,
    mark_legacy_event,
    patch_meta_event,
    publish_events,
    register_event,
    set_availability_event,
    set_tier_event,
    unarchive_event,
)
from worker.settings import Settings

MakeTopic = Callable[..., Awaitable[str]]


def insert(conninfo: str, *rows: tuple[str, str, bool, bool]) -> None:
    """Registered models: (id, provider, is_available, is_archived)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for model_id, provider, available, archived in rows:
            conn.execute(
                "INSERT INTO models"
                " (id, name, provider, is_available, is_archived, meta, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, now())",
                (model_id, model_id, provider, available, archived, json.dumps({})),
            )


async def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> list[Record]:
    """Every record of ``topic`` from the start; fails if fewer than ``count`` arrive."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Record] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < count and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                records.extend(
                    Record(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers))
                    for m in messages
                )
        # Anything beyond what was expected would be a bug too.
        for messages in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(
                Record(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers))
                for m in messages
            )
    finally:
        await consumer.stop()
    assert len(records) >= count, f"only {len(records)} of {count} records arrived"
    return records


def settings(bootstrap: str, idempotent: bool, **overrides: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap, kafka_idempotent_producer=idempotent, **overrides
    )


@pytest.fixture
def openai_catalog() -> list[CatalogModel]:
    from importlib.resources import as_file, files

    with as_file(files("worker.catalog") / "data" / "litellm_sample.json") as path:
        return list(load_catalog(path, provider="openai").models)


async def test_sync_publishes_synced_then_withdrawn_keyed_by_model_id(
    clean_db: str,
    kafka_bootstrap: str,
    kafka_supports_idempotence: bool,
    make_topic: MakeTopic,
    openai_catalog: list[CatalogModel],
) -> None:
    insert(
        clean_db,
        ("gpt-4o", "openai", True, False),  # still listed: synced, not withdrawn
        ("gpt-3.5-turbo-0301", "openai", True, False),  # gone from the catalog: withdrawn
        ("gpt-4-32k", "openai", False, True),  # archived: left alone
        ("davinci-002", "openai", False, False),  # already unavailable: left alone
        ("claude-2.1", "anthropic", True, False),  # another provider: left alone
    )
    existing = registered_ids(clean_db, "openai")
    assert existing == {"gpt-4o", "gpt-3.5-turbo-0301"}

    topic = await make_topic("catalog-sync")
    config = settings(kafka_bootstrap, kafka_supports_idempotence, provider_sync_topic=topic)
    seen: list[SyncProgress] = []
    summary = await sync_catalog(
        config, "openai", openai_catalog, existing_ids=existing, progress=seen.append
    )

    catalog_ids = [m.id for m in openai_catalog]
    assert summary.synced == catalog_ids
    assert summary.withdrawn == ["gpt-3.5-turbo-0301"]
    assert [(p.done, p.total) for p in seen] == [(i, 6) for i in range(1, 7)]
    assert seen[-1].event_type == "model.withdrawn"

    records = await consume(kafka_bootstrap, topic, 6)
    assert len(records) == 6
    events = [decode(r, PROVIDER_SYNC_EVENTS) for r in records]
    assert not [e for e in events if isinstance(e, Rejection)], events
    assert [r.key for r in records] == [i.encode() for i in [*catalog_ids, "gpt-3.5-turbo-0301"]]
    assert [e.type for e in events] == ["model.synced"] * 5 + ["model.withdrawn"]  # type: ignore[union-attr]
    assert len({e.occurred_at for e in events}) == 1  # type: ignore[union-attr]
    assert len({e.event_id for e in events}) == 6  # type: ignore[union-attr]
    gpt4o = events[0]
    assert isinstance(gpt4o, ModelSynced)
    assert gpt4o.data.provider == "openai"
    assert gpt4o.data.meta["inputCostPerMillionTokens"] == 2.5
    assert gpt4o.data.meta["contextLength"] == 128000
    assert all(r.headers == () for r in records)  # provider sync is never signed


async def test_sync_without_withdraw_only_syncs(
    clean_db: str,
    kafka_bootstrap: str,
    kafka_supports_idempotence: bool,
    make_topic: MakeTopic,
    openai_catalog: list[CatalogModel],
) -> None:
    insert(clean_db, ("gpt-3.5-turbo-0301", "openai", True, False))
    topic = await make_topic("catalog-sync")
    config = settings(kafka_bootstrap, kafka_supports_idempotence, provider_sync_topic=topic)
    summary = await sync_catalog(
        config,
        "openai",
        openai_catalog,
        withdraw=False,
        existing_ids=registered_ids(clean_db, "openai"),
    )
    assert summary.withdrawn == []
    records = await consume(kafka_bootstrap, topic, len(openai_catalog))
    assert [json.loads(r.value or b"")["type"] for r in records] == ["model.synced"] * 5


async def test_dry_run_and_guards_publish_nothing(openai_catalog: list[CatalogModel]) -> None:
    unreachable = settings("127.0.0.1:1", False)
    summary = await sync_catalog(
        unreachable, "openai", openai_catalog, existing_ids={"old"}, dry_run=True
    )
    assert (len(summary.synced), summary.withdrawn) == (5, ["old"])
    with pytest.raises(ValueError, match="refusing to withdraw all 2"):
        build_sync_events("openai", [], existing_ids={"a", "b"})
    assert [
        e["data"]["id"]
        for e in build_sync_events("openai", [], existing_ids={"a"}, allow_empty=True)
    ] == ["a"]
    with pytest.raises(ValueError, match="another provider"):
        build_sync_events("anthropic", openai_catalog)
    with pytest.raises(PublishError, match="cannot connect to Kafka"):
        await sync_catalog(
            unreachable,
            "openai",
            openai_catalog[:1],
            existing_ids=set(),
        )


def test_registered_ids_reports_an_unreachable_database() -> None:
    with pytest.raises(RegistryUnavailable, match=r"127\.0\.0\.1:1/x") as caught:
        registered_ids("postgresql://u:secret@127.0.0.1:1/x", "openai")
    assert "secret" not in str(caught.value)


def admin_events() -> list[dict[str, Any]]:
    actor = "ops@example.com"
    sunset = datetime(2026, 6, 30, tzinfo=UTC)
    return [
        register_event(
            "internal-llm",
            name="internal-llm",
            provider="acme",
            meta={"displayName": "Internal", "requiredTier": "enterprise"},
            actor=actor,
        ),
        patch_meta_event(
            "internal-llm", {"description": "in house", "displayName": None}, actor=actor
        ),
        set_tier_event("internal-llm", "pro", reason="launch", actor=actor),
        mark_legacy_event(
            "gpt-4o", replacement_model_id="gpt-4.1", sunset_date=sunset, actor=actor
        ),
        clear_legacy_event("gpt-4o", actor=actor),
        archive_event("internal-llm", reason="retired", actor=actor),
        unarchive_event("internal-llm", actor=actor),
        set_availability_event("gpt-4o", False, actor=actor),
    ]


async def test_admin_events_are_signed_with_the_first_key(
    kafka_bootstrap: str, kafka_supports_idempotence: bool, make_topic: MakeTopic
) -> None:
    topic = await make_topic("admin")
    keys = {"k2026": "current-secret", "k2025": "previous-secret"}
    config = settings(
        kafka_bootstrap, kafka_supports_idempotence, admin_topic=topic, admin_keys=keys
    )
    events = admin_events()
    async with Publisher(config) as publisher:
        for event in events:
            assert await publisher.publish_event(event) == topic
    assert publisher.sent == len(events)

    records = await consume(kafka_bootstrap, topic, len(events))
    assert len(records) == len(events)
    secrets = {k: v.encode() for k, v in keys.items()}
    for record, event in zip(records, events, strict=True):
        assert record.key == event["data"]["id"].encode()
        assert record.header(KEY_ID_HEADER) == b"k2026"
        assert verify_signature(record, secrets) is None
        decoded = decode(record, ADMIN_EVENTS, admin_keys=secrets)
        assert not isinstance(decoded, Rejection), decoded
        assert decoded.type == event["type"]
    # A different secret for the same key id must not verify.
    assert verify_signature(records[0], {"k2026": b"wrong"}) is not None


async def test_admin_events_unsigned_without_keys(
    kafka_bootstrap: str, kafka_supports_idempotence: bool, make_topic: MakeTopic
) -> None:
    topic = await make_topic("admin")
    config = settings(kafka_bootstrap, kafka_supports_idempotence, admin_topic=topic, admin_keys={})
    async with Publisher(config) as publisher:
        await publisher.publish_event(archive_event("gpt-4o", actor="ops@example.com"))
        with pytest.raises(ValueError, match="Kafka key must be the model id"):
            await publisher.publish(topic, "other", unarchive_event("gpt-4o", actor="ops"))
    (record,) = await consume(kafka_bootstrap, topic, 1)
    assert record.headers == ()
    assert not isinstance(decode(record, ADMIN_EVENTS), Rejection)


async def test_publish_events_routes_each_event_to_its_topic(
    kafka_bootstrap: str, kafka_supports_idempotence: bool, make_topic: MakeTopic
) -> None:
    admin_topic, sync_topic = await make_topic("admin"), await make_topic("sync")
    config = settings(
        kafka_bootstrap,
        kafka_supports_idempotence,
        admin_topic=admin_topic,
        provider_sync_topic=sync_topic,
        admin_keys={"k1": "s"},
    )
    from worker.publishing import withdrawn_event

    topics = await publish_events(
        config, [archive_event("m-1", actor="ops"), withdrawn_event("m-2", "job")]
    )
    assert topics == [admin_topic, sync_topic]
    (admin,) = await consume(kafka_bootstrap, admin_topic, 1)
    (synced,) = await consume(kafka_bootstrap, sync_topic, 1)
    assert (admin.key, synced.key) == (b"m-1", b"m-2")
    assert verify_signature(admin, {"k1": b"s"}) is None
    assert synced.headers == ()
