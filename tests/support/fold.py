"""The expected outcome of a stream of messages, computed in memory with the domain rules.

The worker's database state must equal this fold of the same messages: same models, one
lifecycle event per real change, one dead letter per rejected message.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.support import events as ev
from tests.support.events import Message
from worker.decoding import Record, adapter_for, decode
from worker.domain.model import ModelState, Outcome, Rejection
from worker.domain.rules import decide
from worker.settings import Settings


class MemoryRegistry:
    def __init__(self) -> None:
        self.models: dict[str, ModelState] = {}

    def get(self, model_id: str) -> ModelState | None:
        return self.models.get(model_id)

    def legacy_referrers(self, model_id: str) -> list[str]:
        return sorted(
            m.id
            for m in self.models.values()
            if m.is_legacy and m.meta.get("legacyReplacementModelId") == model_id
        )


@dataclass
class Expected:
    models: dict[str, ModelState] = field(default_factory=dict)
    lifecycle_ids: list[str] = field(default_factory=list)
    dead_letters: list[Message] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)
    audit_event_ids: list[str] = field(default_factory=list)

    def rows(self) -> dict[str, tuple[Any, ...]]:
        """Models as ``registry_rows`` returns them."""
        return {
            m.id: (m.name, m.provider, m.is_available, m.is_legacy, m.is_archived, dict(m.meta))
            for m in self.models.values()
        }


def fold(messages: Iterable[Message], settings: Settings) -> Expected:
    """Apply messages in publish order (per model that is also the order the worker sees)."""
    registry = MemoryRegistry()
    expected = Expected(models=registry.models)
    for message in messages:
        topic = message.topic(settings)
        record = Record(topic, 0, 0, message.key, message.value, message.headers)
        decoded = decode(record, adapter_for(topic, *settings.input_topics))
        if isinstance(decoded, Rejection):
            expected.dead_letters.append(message)
            continue
        event_id = str(decoded.event_id)
        if event_id in expected.event_ids:
            continue
        expected.event_ids.add(event_id)
        decision = decide(decoded, registry.get(decoded.data.id), registry)
        if decision.outcome is Outcome.REJECTED:
            expected.dead_letters.append(message)
        elif decision.outcome is Outcome.APPLIED and decision.state is not None:
            registry.models[decision.state.id] = decision.state
            expected.lifecycle_ids.extend(str(e.event_id) for e in decision.lifecycle)
            expected.audit_event_ids.extend(str(a.event_id) for a in decision.audit)
    return expected


# --- a reproducible mixed stream ------------------------------------------------------------

STABLE = [f"stable-{i}" for i in range(4)]


def setup_messages() -> list[Message]:
    """Models that other models may name as replacement; registered before the stream."""
    return [ev.register(model_id, meta={"description": "a replacement"}) for model_id in STABLE]


def malformed(index: int) -> Message:
    """One bad message of each kind in turn: not JSON, unknown type, contract violation,
    unknown model, rule violation (a model re-registered under another provider)."""
    kind = index % 5
    if kind == 0:
        return ev.raw("admin", b"whatever", b"{not json %d" % index)
    if kind == 1:
        return ev.event("admin", "model.explode", f"boom-{index}")
    if kind == 2:  # no name
        return ev.event("admin", "model.register", f"bad-{index}", {"provider": "a", "meta": {}})
    if kind == 3:
        return ev.patch_meta(f"ghost-{index}", {"description": "nobody home"})
    return ev.register(STABLE[index % len(STABLE)], provider="intruder")


def mixed_stream(
    total: int, *, seed: int = 7, duplicates: float = 0.10, bad: float = 0.05
) -> list[Message]:
    """``total`` messages: valid events of every type, ``duplicates`` re-sent copies (same
    bytes, same eventId, later in the same partition) and ``bad`` malformed messages.

    Models get events on one topic only (sync-* on provider sync, adm-* on admin), so the
    per-partition order the worker keeps is the whole order that matters.
    """
    rng = random.Random(seed)
    n_dup = round(total * duplicates)
    n_bad = round(total * bad)
    n_valid = total - n_dup - n_bad
    sync_models = [f"sync-{i}" for i in range(20)]
    admin_models = [f"adm-{i}" for i in range(20)]
    clock = dict.fromkeys(sync_models, 100.0)
    started: set[str] = set()
    archived: set[str] = set()
    valid: list[Message] = []
    while len(valid) < n_valid:
        if rng.random() < 0.4:
            model = rng.choice(sync_models)
            clock[model] += rng.uniform(1, 10)
            roll = rng.random()
            if model not in started or roll < 0.6:
                started.add(model)
                meta = {
                    "version": str(rng.randint(1, 9)),
                    "contextLength": rng.randint(1, 9) * 1024,
                }
                valid.append(ev.synced(model, meta=meta, occurred_at=ev.at(clock[model])))
            elif roll < 0.8:
                valid.append(ev.withdrawn(model, occurred_at=ev.at(clock[model])))
            else:  # stale: older than what the model has seen
                valid.append(ev.synced(model, meta={"version": "0"}, occurred_at=ev.at(50)))
        else:
            model = rng.choice(admin_models)
            if model not in started:
                started.add(model)
                valid.append(ev.register(model, meta={"displayName": model.upper()}))
                continue
            choice = rng.randrange(8)
            if choice == 0:
                valid.append(ev.patch_meta(model, {"description": f"d{rng.randint(0, 99)}"}))
            elif choice == 1:
                valid.append(ev.set_tier(model, rng.choice(["free", "pro", "enterprise"])))
            elif choice == 2:
                replacement = rng.choice([None, *STABLE])
                valid.append(ev.mark_legacy(model, replacement=replacement, notice="old"))
            elif choice == 3:
                valid.append(ev.clear_legacy(model))
            elif choice == 4:
                archived.add(model)
                valid.append(ev.archive(model, reason="retired"))
            elif choice == 5:
                archived.discard(model)
                valid.append(ev.unarchive(model))
            else:  # never "available" while archived: that is a malformed event's job
                available = model not in archived and rng.random() < 0.5
                valid.append(ev.set_availability(model, available))
    stream = list(valid)
    for i in range(n_bad):
        stream.insert(rng.randrange(len(stream) + 1), malformed(i))
    for _ in range(n_dup):
        original = rng.choice(valid)
        position = next(i for i, m in enumerate(stream) if m is original)
        stream.insert(rng.randrange(position + 1, len(stream) + 1), original)
    assert len(stream) == total
    return stream
