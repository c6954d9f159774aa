"""Building wire events, publishing raw bytes, reading output topics: shared by the test suites.

Builders return plain dicts (what a publisher in any language would send) wrapped in
:class:`Message`, which also knows its topic kind and Kafka key. Everything is bytes on the way
out, so tests can just as well send bytes no builder would make.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from worker.settings import Settings

TopicKind = Literal["sync", "admin"]
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Message:
    """One record to publish: which input topic, the key, the value and headers, as bytes."""

    kind: TopicKind
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    body: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def event_id(self) -> str | None:
        return str(self.body["eventId"]) if self.body and "eventId" in self.body else None

    def topic(self, settings: Settings) -> str:
        return settings.provider_sync_topic if self.kind == "sync" else settings.admin_topic

    def with_value(self, value: bytes) -> Message:
        return replace(self, value=value, body=None)


def at(seconds: float) -> str:
    """An ISO timestamp ``seconds`` after a fixed base time (deterministic ordering in tests)."""
    return (BASE_TIME + timedelta(seconds=seconds)).isoformat()


def event(
    kind: TopicKind,
    event_type: str,
    model_id: str,
    data: Mapping[str, Any] | None = None,
    *,
    occurred_at: str | None = None,
    event_id: uuid.UUID | str | None = None,
    actor: str | None = "tester@example.com",
    source: str = "tests",
) -> Message:
    body: dict[str, Any] = {
        "eventId": str(event_id or uuid.uuid4()),
        "type": event_type,
        "schemaVersion": 1,
        "occurredAt": occurred_at or at(0),
        "source": source,
        "data": {"id": model_id, **(data or {})},
    }
    if actor is not None:
        body["actor"] = actor
    return Message(kind, model_id.encode(), json.dumps(body).encode(), body=body)


def synced(
    model_id: str,
    *,
    provider: str = "acme",
    name: str | None = None,
    meta: Mapping[str, Any] | None = None,
    occurred_at: str | None = None,
    **kw: Any,
) -> Message:
    data = {"name": name or model_id, "provider": provider, "meta": dict(meta or {})}
    return event("sync", "model.synced", model_id, data, occurred_at=occurred_at, actor=None, **kw)


def withdrawn(model_id: str, *, occurred_at: str | None = None, **kw: Any) -> Message:
    return event("sync", "model.withdrawn", model_id, occurred_at=occurred_at, actor=None, **kw)


def register(
    model_id: str,
    *,
    provider: str = "acme",
    name: str | None = None,
    meta: Mapping[str, Any] | None = None,
    **kw: Any,
) -> Message:
    data = {"name": name or model_id, "provider": provider, "meta": dict(meta or {})}
    return event("admin", "model.register", model_id, data, **kw)


def patch_meta(model_id: str, meta: Mapping[str, Any], **kw: Any) -> Message:
    return event("admin", "model.patch_meta", model_id, {"meta": dict(meta)}, **kw)


def set_tier(
    model_id: str,
    tier: str,
    *,
    mode: str = "minimum",
    allowed: Sequence[str] | None = None,
    reason: str | None = None,
    **kw: Any,
) -> Message:
    data: dict[str, Any] = {"requiredTier": tier, "tierRestrictionMode": mode}
    if allowed is not None:
        data["allowedTiers"] = list(allowed)
    if reason is not None:
        data["reason"] = reason
    return event("admin", "model.set_tier", model_id, data, **kw)


def mark_legacy(
    model_id: str,
    *,
    replacement: str | None = None,
    notice: str | None = None,
    sunset: str | None = None,
    **kw: Any,
) -> Message:
    data: dict[str, Any] = {}
    if replacement is not None:
        data["replacementModelId"] = replacement
    if notice is not None:
        data["deprecationNotice"] = notice
    if sunset is not None:
        data["sunsetDate"] = sunset
    return event("admin", "model.mark_legacy", model_id, data, **kw)


def clear_legacy(model_id: str, **kw: Any) -> Message:
    return event("admin", "model.clear_legacy", model_id, **kw)


def archive(model_id: str, *, reason: str | None = None, **kw: Any) -> Message:
    return event("admin", "model.archive", model_id, {"reason": reason} if reason else {}, **kw)


def unarchive(model_id: str, **kw: Any) -> Message:
    return event("admin", "model.unarchive", model_id, **kw)


def set_availability(model_id: str, available: bool, **kw: Any) -> Message:
    return event("admin", "model.set_availability", model_id, {"isAvailable": available}, **kw)


def raw(kind: TopicKind, key: bytes | None, value: bytes, **headers: bytes) -> Message:
    """Bytes no builder would make: for bad-input tests."""
    return Message(kind, key, value, tuple(headers.items()))


# --- the broker side ------------------------------------------------------------------------


class RawPublisher:
    """Publishes :class:`Message` bytes exactly as given and waits for the broker's acks."""

    def __init__(self, bootstrap: str, settings: Settings, *, idempotent: bool = False) -> None:
        self.settings = settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=idempotent, acks="all", linger_ms=5
        )

    async def __aenter__(self) -> RawPublisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def publish(self, messages: Iterable[Message]) -> None:
        futures = [
            await self.producer.send(
                m.topic(self.settings), value=m.value, key=m.key, headers=list(m.headers)
            )
            for m in messages
        ]
        await asyncio.gather(*futures)


async def publish(bootstrap: str, settings: Settings, messages: Iterable[Message]) -> None:
    async with RawPublisher(bootstrap, settings) as publisher:
        await publisher.publish(messages)


@dataclass(frozen=True)
class OutputRecord:
    """A record read back from the lifecycle or dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.value)


def _output(record: ConsumerRecord[Any, Any]) -> OutputRecord:
    return OutputRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers={k: v.decode("utf-8", "replace") for k, v in record.headers or ()},
    )


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expect: int = 0,
    timeout: float = 20.0,
    settle: float = 1.0,
) -> list[OutputRecord]:
    """Everything on ``topic`` from the beginning: waits until at least ``expect`` records are
    there (or ``timeout``), then ``settle`` seconds more so that extra records would show too."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not partitions:
            if loop.time() > deadline:
                raise AssertionError(f"topic {topic} does not exist")
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[OutputRecord] = []
        quiet_until: float | None = None
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for recs in batch.values():
                records.extend(_output(r) for r in recs)
            now = loop.time()
            if len(records) >= expect:
                if quiet_until is None or batch:
                    quiet_until = now + settle
                if now >= quiet_until:
                    return records
            elif now > deadline:
                return records
    finally:
        await consumer.stop()
