"""Build the events publishers send to the worker, and publish them to Kafka.

The builders validate every event against the wire contract *before* it is sent, with the same
JSON round trip the worker performs, so a mistake surfaces as a ``ContractError`` naming the
field at the command line, not as a dead letter minutes later. ``Publisher`` sends them keyed by
model id (the worker rejects any other key) and signs admin events when admin keys are set.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from types import TracebackType
from typing import Any, Final, Self

from pydantic import TypeAdapter, ValidationError

from contracts.events import (
    ADMIN_EVENTS,
    ADMIN_TYPES,
    PROVIDER_SYNC_EVENTS,
    PROVIDER_SYNC_TYPES,
    SCHEMA_VERSION,
    InboundEvent,
)
from contracts.meta import Tier, TierRestrictionMode
from worker.catalog.formats import CatalogModel
from worker.decoding import sign
from worker.settings import Settings

DEFAULT_SYNC_SOURCE: Final = "modelreg-sync"
DEFAULT_ADMIN_SOURCE: Final = "modelreg-cli"
# Records bound for one partition within 5 ms go out as one batch, in one request: what Apache
# Kafka's Java producer (since 4.0) and librdkafka do by default. A burst costs the broker one
# request per batch, not one per record, for at most 5 ms more per event.
LINGER_MS: Final = 5


class ContractError(ValueError):
    """An event this process was about to publish violates the wire contract."""

    def __init__(self, event_type: str, problems: Sequence[tuple[str, str]]) -> None:
        self.event_type = event_type
        self.problems = tuple(problems)
        listed = "; ".join(f"{path}: {message}" for path, message in self.problems)
        super().__init__(f"{event_type} event violates the contract: {listed}")


class PublishError(Exception):
    """Kafka could not be reached or did not acknowledge every event; safe to show as is."""


# --- encoding and validation ------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # what contracts.meta's UsdPerMillion serializer does too
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"datetime {value.isoformat()} has no timezone")
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(event: Mapping[str, Any]) -> bytes:
    """The exact bytes published (compact UTF-8 JSON); signatures are computed over these."""
    return json.dumps(
        event, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


def _adapter(event_type: Any) -> TypeAdapter[InboundEvent]:
    if event_type in PROVIDER_SYNC_TYPES:
        return PROVIDER_SYNC_EVENTS
    if event_type in ADMIN_TYPES:
        return ADMIN_EVENTS
    raise ContractError(str(event_type), [("type", f"unknown event type {event_type!r}")])


def validate_event(event: Mapping[str, Any]) -> InboundEvent:
    """Decode the event exactly as the worker will; raise ContractError with field paths."""
    event_type = event.get("type")
    adapter = _adapter(event_type)
    try:
        value = encode(event)
    except (TypeError, ValueError) as error:
        raise ContractError(str(event_type), [("(event)", str(error))]) from None
    try:
        return adapter.validate_json(value)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False, include_input=False):
            loc = [str(p) for p in item["loc"]]
            if loc and loc[0] == event_type:  # the discriminator tag pydantic prepends
                loc = loc[1:]
            problems.append((".".join(loc) or "(root)", item["msg"]))
        raise ContractError(str(event_type), problems) from None


def envelope(
    event_type: str,
    data: Mapping[str, Any],
    *,
    source: str,
    actor: str | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A validated event as a plain JSON-ready dict (camelCase, no null fields)."""
    body: dict[str, Any] = {
        "eventId": str(event_id or uuid.uuid4()),
        "type": event_type,
        "schemaVersion": SCHEMA_VERSION,
        "occurredAt": (occurred_at or datetime.now(UTC)).isoformat(),
        "source": source,
    }
    if actor is not None:
        body["actor"] = actor
    body["data"] = {k: v for k, v in data.items() if v is not None}
    event: dict[str, Any] = json.loads(encode(body))
    validate_event(event)
    return event


# --- provider sync ----------------------------------------------------------------------------


def synced_event(
    model: CatalogModel,
    source: str = DEFAULT_SYNC_SOURCE,
    *,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """``model.synced``: the provider lists this model with this metadata."""
    data = {"id": model.id, "name": model.name, "provider": model.provider, "meta": model.meta}
    return envelope("model.synced", data, source=source, occurred_at=occurred_at, event_id=event_id)


def withdrawn_event(
    model_id: str,
    source: str = DEFAULT_SYNC_SOURCE,
    *,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """``model.withdrawn``: the provider no longer lists this model."""
    return envelope(
        "model.withdrawn",
        {"id": model_id},
        source=source,
        occurred_at=occurred_at,
        event_id=event_id,
    )


# --- admin ------------------------------------------------------------------------------------


def _admin(
    event_type: str,
    data: Mapping[str, Any],
    actor: str,
    source: str,
    occurred_at: datetime | None,
) -> dict[str, Any]:
    return envelope(event_type, data, source=source, actor=actor, occurred_at=occurred_at)


def register_event(
    model_id: str,
    *,
    name: str,
    provider: str,
    meta: Mapping[str, Any],
    actor: str,
    source: str = DEFAULT_ADMIN_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """``model.register``: an admin adds a model no provider sync knows (any meta keys)."""
    data = {"id": model_id, "name": name, "provider": provider, "meta": dict(meta)}
    return _admin("model.register", data, actor, source, occurred_at)


def patch_meta_event(
    model_id: str,
    meta: Mapping[str, Any],
    *,
    actor: str,
    source: str = DEFAULT_ADMIN_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """``model.patch_meta``: an RFC 7396 merge patch (``null`` removes a key)."""
    data = {"id": model_id, "meta": dict(meta)}
    return _admin("model.patch_meta", data, actor, source, occurred_at)


def set_tier_event(
    model_id: str,
    required_tier: Tier | str,
    *,
    mode: TierRestrictionMode | str = TierRestrictionMode.MINIMUM,
    allowed_tiers: Sequence[Tier | str] | None = None,
    reason: str | None = None,
    actor: str,
    source: str = DEFAULT_ADMIN_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """``model.set_tier``: who may use the model; recorded in the tier audit with ``reason``."""
    data = {
        "id": model_id,
        "requiredTier": required_tier,
        "tierRestrictionMode": mode,
        "allowedTiers": list(allowed_tiers) if allowed_tiers is not None else None,
        "reason": reason,
    }
    return _admin("model.set_tier", data, actor, source, occurred_at)


def mark_legacy_event(
    model_id: str,
    *,
    replacement_model_id: str | None = None,
    deprecation_notice: str | None = None,
    sunset_date: datetime | str | None = None,
    actor: str,
    source: str = DEFAULT_ADMIN_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """``model.mark_legacy``: deprecate, optionally naming a successor and a sunset date."""
    data = {
        "id": model_id,
        "replacementModelId": replacement_model_id,
        "deprecationNotice": deprecation_notice,
        "sunsetDate": sunset_date,
    }
    return _admin("model.mark_legacy", data, actor, source, occurred_at)


def clear_legacy_event(
    model_id: str,
    *,
    actor: str,
    source: str = DEFAULT_ADMIN_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    return _admin("model.clear_legacy", {"id": model_id}, actor, source, occurred_at)


def archive_event(
    model_id: str,
    *,
    reason: str | None = None,
    actor: str,
    source: str = DEFAULT_ADMIN_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    data = {"id": model_id, "reason": reason}
    return _admin("model.archive", data, actor, source, occurred_at)


def unarchive_event(
    model_id: str,
    *,
    actor: str,
    source: str = DEFAULT_ADMIN_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    return _admin("model.unarchive", {"id": model_id}, actor, source, occurred_at)


def set_availability_event(
    model_id: str,
    is_available: bool,
    *,
    actor: str,
    source: str = DEFAULT_ADMIN_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    data = {"id": model_id, "isAvailable": is_available}
    return _admin("model.set_availability", data, actor, source, occurred_at)


#: CLI action name -> builder; every builder takes the model id first and ``actor=`` keyword.
ADMIN_BUILDERS: Final[dict[str, Callable[..., dict[str, Any]]]] = {
    "register": register_event,
    "patch-meta": patch_meta_event,
    "set-tier": set_tier_event,
    "mark-legacy": mark_legacy_event,
    "clear-legacy": clear_legacy_event,
    "archive": archive_event,
    "unarchive": unarchive_event,
    "set-availability": set_availability_event,
}


def topic_for(event: Mapping[str, Any], settings: Settings) -> str:
    """The input topic the worker reads this event type from."""
    event_type = event.get("type")
    if event_type in PROVIDER_SYNC_TYPES:
        return settings.provider_sync_topic
    if event_type in ADMIN_TYPES:
        return settings.admin_topic
    raise ContractError(str(event_type), [("type", f"unknown event type {event_type!r}")])


# --- Kafka ------------------------------------------------------------------------------------


def producer_options(settings: Settings, client_id: str = "modelreg-publisher") -> dict[str, Any]:
    """AIOKafkaProducer keyword arguments from Settings (bootstrap, idempotence, SASL, TLS)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotent_producer,
        "security_protocol": settings.kafka_security_protocol,
        "linger_ms": LINGER_MS,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    return options


def signing_headers(event_type: str, value: bytes, settings: Settings) -> list[tuple[str, bytes]]:
    """HMAC headers for admin events when admin keys are configured (first key signs)."""
    if event_type not in ADMIN_TYPES or not settings.admin_keys:
        return []
    key_id, secret = next(iter(settings.admin_keys.items()))
    return sign(value, key_id, secret.get_secret_value().encode())


class Publisher:
    """Async context manager over one AIOKafkaProducer; ``flush()`` confirms delivery.

    Sends are pipelined: ``publish`` only enqueues, ``flush`` (also run on a clean exit) waits
    for every acknowledgement and raises PublishError if any event was not delivered.
    """

    def __init__(self, settings: Settings, *, client_id: str = "modelreg-publisher") -> None:
        self.settings = settings
        self._client_id = client_id
        self._producer: Any = None
        self._pending: list[asyncio.Future[Any]] = []
        self.sent = 0

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(**producer_options(self.settings, self._client_id))
        try:
            await producer.start()
        except KafkaError as error:
            await producer.stop()
            raise PublishError(
                f"cannot connect to Kafka at {self.settings.kafka_bootstrap_servers}: {error}"
            ) from None
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self.stop()

    async def publish(self, topic: str, key: str, event: Mapping[str, Any]) -> None:
        """Validate, encode, sign if admin, and enqueue one event keyed by its model id."""
        if self._producer is None:
            raise RuntimeError("Publisher is not started; use 'async with Publisher(...)'")
        validate_event(event)
        data_id = event["data"]["id"]
        if key != data_id:
            raise ValueError(f"Kafka key must be the model id {data_id!r}, got {key!r}")
        value = encode(event)
        headers = signing_headers(str(event["type"]), value, self.settings)
        future = await self._producer.send(topic, value=value, key=key.encode(), headers=headers)
        self._pending.append(future)

    async def publish_event(self, event: Mapping[str, Any]) -> str:
        """Publish to the topic the event type belongs on; returns that topic."""
        topic = topic_for(event, self.settings)
        await self.publish(topic, str(event["data"]["id"]), event)
        return topic

    async def flush(self) -> int:
        """Wait until every enqueued event is acknowledged; returns how many were."""
        if self._producer is None:
            return 0
        await self._producer.flush()
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*pending, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        self.sent += len(results) - len(failures)
        if failures:
            raise PublishError(
                f"{len(failures)} of {len(results)} events were not delivered: {failures[0]}"
            )
        return len(results)


async def publish_events(
    settings: Settings, events: Sequence[Mapping[str, Any]], *, client_id: str = "modelreg-cli"
) -> list[str]:
    """Publish events to their topics and wait for every ack; the CLI's one-shot entry point."""
    async with Publisher(settings, client_id=client_id) as publisher:
        return [await publisher.publish_event(event) for event in events]
