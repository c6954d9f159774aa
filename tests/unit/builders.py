"""Tiny helpers that build wire events, typed events, model states and a registry for unit tests.

Events are built as wire dicts and validated through the real contract adapters, so a test
exercises exactly what a consumer would hand to the rules.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import ADMIN_EVENTS, PROVIDER_SYNC_EVENTS, PROVIDER_SYNC_TYPES, InboundEvent
from worker.decoding import Record
from worker.domain.model import ModelState

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PROVIDER = "openai"
ADMIN_TOPIC = "admin"
SYNC_TOPIC = "provider-sync"


def at(minutes: int) -> datetime:
    """A point in time ``minutes`` after :data:`T0` (negative: before)."""
    return T0 + timedelta(minutes=minutes)


def wire(
    event_type: str, data: Mapping[str, Any], *, omit: tuple[str, ...] = (), **envelope: Any
) -> dict[str, Any]:
    """A wire envelope (camelCase dict). Envelope fields can be overridden or omitted."""
    body: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "type": event_type,
        "schemaVersion": 1,
        "occurredAt": T0.isoformat(),
        "source": "tests",
        "data": dict(data),
    }
    if event_type not in PROVIDER_SYNC_TYPES:
        body["actor"] = "alice@example.com"
    for key, value in envelope.items():
        body[_camel(key)] = value.isoformat() if isinstance(value, datetime) else value
    for key in omit:
        body.pop(key, None)
    return body


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def adapter_of(event_type: str):  # type: ignore[no-untyped-def]
    return PROVIDER_SYNC_EVENTS if event_type in PROVIDER_SYNC_TYPES else ADMIN_EVENTS


def event(event_type: str, data: Mapping[str, Any], **envelope: Any) -> InboundEvent:
    """A typed event validated through the contract adapter of its topic."""
    return adapter_of(event_type).validate_python(wire(event_type, data, **envelope))


def synced(
    model_id: str = "m1",
    meta: Mapping[str, Any] | None = None,
    *,
    provider: str = PROVIDER,
    name: str | None = None,
    occurred_at: datetime = T0,
    **envelope: Any,
) -> InboundEvent:
    data = {
        "id": model_id,
        "name": name or model_id,
        "provider": provider,
        "meta": dict(meta or {}),
    }
    return event("model.synced", data, occurred_at=occurred_at, **envelope)


def withdrawn(model_id: str = "m1", *, occurred_at: datetime = T0, **envelope: Any) -> InboundEvent:
    return event("model.withdrawn", {"id": model_id}, occurred_at=occurred_at, **envelope)


def register(
    model_id: str = "m1",
    meta: Mapping[str, Any] | None = None,
    *,
    provider: str = PROVIDER,
    name: str | None = None,
    **envelope: Any,
) -> InboundEvent:
    data = {
        "id": model_id,
        "name": name or model_id,
        "provider": provider,
        "meta": dict(meta or {}),
    }
    return event("model.register", data, **envelope)


def patch_meta(model_id: str, patch: Mapping[str, Any], **envelope: Any) -> InboundEvent:
    return event("model.patch_meta", {"id": model_id, "meta": dict(patch)}, **envelope)


def set_tier(model_id: str, required_tier: str, **fields: Any) -> InboundEvent:
    data = {"id": model_id, "requiredTier": required_tier}
    data.update({_camel(k): v for k, v in fields.items()})
    return event("model.set_tier", data)


def mark_legacy(model_id: str, **fields: Any) -> InboundEvent:
    data: dict[str, Any] = {"id": model_id}
    for key, value in fields.items():
        data[_camel(key)] = value.isoformat() if isinstance(value, datetime) else value
    return event("model.mark_legacy", data)


def clear_legacy(model_id: str) -> InboundEvent:
    return event("model.clear_legacy", {"id": model_id})


def archive(model_id: str, reason: str | None = None) -> InboundEvent:
    data: dict[str, Any] = {"id": model_id}
    if reason is not None:
        data["reason"] = reason
    return event("model.archive", data)


def unarchive(model_id: str) -> InboundEvent:
    return event("model.unarchive", {"id": model_id})


def set_availability(model_id: str, is_available: bool) -> InboundEvent:
    return event("model.set_availability", {"id": model_id, "isAvailable": is_available})


def state(model_id: str = "m1", meta: Mapping[str, Any] | None = None, **fields: Any) -> ModelState:
    """A model as the registry would load it: available, not legacy, not archived by default."""
    base = ModelState(id=model_id, name=model_id, provider=PROVIDER, meta=dict(meta or {}))
    return replace(base, **fields)


class Registry:
    """In-memory :class:`worker.domain.model.Registry` over a handful of states."""

    def __init__(self, *states: ModelState) -> None:
        self.models = {s.id: s for s in states}

    def get(self, model_id: str) -> ModelState | None:
        return self.models.get(model_id)

    def legacy_referrers(self, model_id: str) -> list[str]:
        return sorted(
            s.id
            for s in self.models.values()
            if s.is_legacy and s.meta.get("legacyReplacementModelId") == model_id
        )


def registry(*states: ModelState) -> Registry:
    return Registry(*states)


def record(
    body: Mapping[str, Any] | bytes | None,
    *,
    key: str | bytes | None = "m1",
    topic: str = ADMIN_TOPIC,
    headers: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]] = (),
) -> Record:
    """A consumed Kafka record; a mapping body is serialized as JSON."""
    value = json.dumps(body).encode() if isinstance(body, Mapping) else body
    raw_key = key.encode() if isinstance(key, str) else key
    return Record(topic, 0, 0, raw_key, value, tuple(headers))
