"""The registry's rules: ``decide(event, current, registry) -> Decision``, one function per type.

Pure functions of (state, event): no I/O, no clock. The persistence layer loads the state,
calls :func:`decide` for each event in order, and writes what the decision says.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from contracts.events import (
    Archive,
    ClearLegacy,
    InboundEvent,
    LifecycleEvent,
    LifecycleType,
    MarkLegacy,
    ModelSynced,
    ModelWithdrawn,
    PatchMeta,
    Register,
    SetAvailability,
    SetTier,
    Unarchive,
    lifecycle_event_id,
)
from contracts.meta import LEGACY_KEYS, TIER_KEYS, merge_valid_meta, normalize_meta
from worker.domain.model import (
    Decision,
    ModelState,
    Outcome,
    Registry,
    Rejection,
    RejectionKind,
    TierAuditEntry,
)

MAX_REPLACEMENT_CHAIN = 100


class RuleViolation(Exception):
    def __init__(self, kind: RejectionKind, message: str, detail: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.rejection = Rejection(kind, message, detail)


def _unknown(model_id: str) -> RuleViolation:
    return RuleViolation(RejectionKind.UNKNOWN_MODEL, f"model {model_id!r} does not exist")


def _validated(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Re-validate meta after a merge: a patch may be valid alone and invalid combined."""
    try:
        return normalize_meta(dict(meta))
    except ValidationError as error:
        detail = tuple(
            {"loc": ["data", "meta", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]}
            for e in error.errors(include_url=False, include_input=False)
        )
        raise RuleViolation(
            RejectionKind.CONTRACT_VIOLATION, "resulting meta is invalid", detail
        ) from None


def _merged(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Shallow merge of an already validated update into valid meta (sync, register)."""
    try:
        return merge_valid_meta(current, update)
    except ValueError as error:
        detail = ({"loc": ["data", "meta"], "msg": str(error), "type": "value_error"},)
        raise RuleViolation(
            RejectionKind.CONTRACT_VIOLATION, f"resulting meta is invalid: {error}", detail
        ) from None


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch: ``null`` removes a key, objects merge, anything else replaces."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            result[key] = value
    return result


#: Keys with a dedicated event, whose checks (replacement, cycle) and audit a generic meta
#: write would bypass.
DEDICATED_KEYS: dict[str, str] = {
    **{key: "model.set_tier" for key in TIER_KEYS},
    **{key: "model.mark_legacy" for key in LEGACY_KEYS},
}


def _no_dedicated_keys(meta: Mapping[str, Any]) -> None:
    claimed = sorted(key for key in meta if key in DEDICATED_KEYS)
    if claimed:
        hints = ", ".join(f"{key} (use {DEDICATED_KEYS[key]})" for key in claimed)
        raise RuleViolation(
            RejectionKind.RULE_VIOLATION, f"these keys have their own event: {hints}"
        )


def _same_provider(current: ModelState, provider: str) -> None:
    if current.provider != provider:
        raise RuleViolation(
            RejectionKind.RULE_VIOLATION,
            f"model {current.id!r} belongs to provider {current.provider!r}, not {provider!r}",
        )


# --- one function per event type ----------------------------------------------------------


def model_synced(event: ModelSynced, current: ModelState | None, _: Registry) -> ModelState:
    data = event.data
    if current is None:
        return ModelState(
            id=data.id,
            name=data.name,
            provider=data.provider,
            meta=data.meta,
            last_synced_at=event.occurred_at,
        )
    _same_provider(current, data.provider)
    restore = current.withdrawn and not current.is_available and not current.is_archived
    return replace(
        current,
        meta=_merged(current.meta, data.meta),
        is_available=True if restore else current.is_available,
        withdrawn=False,
        last_synced_at=event.occurred_at,
    )


def model_withdrawn(event: ModelWithdrawn, current: ModelState | None, _: Registry) -> ModelState:
    if current is None:
        raise _unknown(event.data.id)
    withdraw = current.is_available and not current.is_archived
    return replace(
        current,
        is_available=False if withdraw else current.is_available,
        withdrawn=current.withdrawn or withdraw,
        last_synced_at=event.occurred_at,
    )


def register(event: Register, current: ModelState | None, _: Registry) -> ModelState:
    data = event.data
    _no_dedicated_keys(data.meta)
    if current is None:
        return ModelState(id=data.id, name=data.name, provider=data.provider, meta=data.meta)
    _same_provider(current, data.provider)
    return replace(current, meta=_merged(current.meta, data.meta))


def patch_meta(event: PatchMeta, current: ModelState | None, _: Registry) -> ModelState:
    if current is None:
        raise _unknown(event.data.id)
    _no_dedicated_keys(event.data.meta)
    return replace(current, meta=_validated(merge_patch(current.meta, event.data.meta)))


def set_tier(event: SetTier, current: ModelState | None, _: Registry) -> ModelState:
    if current is None:
        raise _unknown(event.data.id)
    data = event.data
    meta = {k: v for k, v in current.meta.items() if k not in TIER_KEYS}
    meta["requiredTier"] = data.required_tier.value
    meta["tierRestrictionMode"] = data.tier_restriction_mode.value
    if data.allowed_tiers is not None:
        meta["allowedTiers"] = [tier.value for tier in data.allowed_tiers]
    return replace(current, meta=_validated(meta))


def _check_replacement(model_id: str, replacement_id: str, registry: Registry) -> None:
    if replacement_id == model_id:
        raise RuleViolation(RejectionKind.RULE_VIOLATION, "a model cannot replace itself")
    replacement = registry.get(replacement_id)
    if replacement is None:
        raise RuleViolation(
            RejectionKind.RULE_VIOLATION, f"replacement model {replacement_id!r} does not exist"
        )
    if replacement.is_archived:
        raise RuleViolation(
            RejectionKind.RULE_VIOLATION, f"replacement model {replacement_id!r} is archived"
        )
    seen = {model_id}
    step: ModelState | None = replacement
    while step is not None and len(seen) <= MAX_REPLACEMENT_CHAIN:
        if step.id in seen:
            raise RuleViolation(
                RejectionKind.RULE_VIOLATION,
                f"replacing {model_id!r} with {replacement_id!r} would make a cycle",
            )
        seen.add(step.id)
        next_id = step.meta.get("legacyReplacementModelId")
        step = registry.get(next_id) if isinstance(next_id, str) else None


def mark_legacy(event: MarkLegacy, current: ModelState | None, registry: Registry) -> ModelState:
    if current is None:
        raise _unknown(event.data.id)
    data = event.data
    meta = {k: v for k, v in current.meta.items() if k not in LEGACY_KEYS}
    if data.replacement_model_id is not None:
        _check_replacement(current.id, data.replacement_model_id, registry)
        meta["legacyReplacementModelId"] = data.replacement_model_id
    if data.deprecation_notice is not None:
        meta["deprecationNotice"] = data.deprecation_notice
    if data.sunset_date is not None:
        meta["sunsetDate"] = data.sunset_date.isoformat()
    return replace(current, is_legacy=True, meta=_validated(meta))


def clear_legacy(event: ClearLegacy, current: ModelState | None, _: Registry) -> ModelState:
    if current is None:
        raise _unknown(event.data.id)
    meta = {k: v for k, v in current.meta.items() if k not in LEGACY_KEYS}
    return replace(current, is_legacy=False, meta=meta)


def archive(event: Archive, current: ModelState | None, _: Registry) -> ModelState:
    if current is None:
        raise _unknown(event.data.id)
    return replace(current, is_archived=True, is_available=False, withdrawn=False)


def unarchive(event: Unarchive, current: ModelState | None, _: Registry) -> ModelState:
    if current is None:
        raise _unknown(event.data.id)
    return replace(current, is_archived=False)


def set_availability(event: SetAvailability, current: ModelState | None, _: Registry) -> ModelState:
    if current is None:
        raise _unknown(event.data.id)
    if event.data.is_available and current.is_archived:
        raise RuleViolation(
            RejectionKind.RULE_VIOLATION,
            f"model {current.id!r} is archived; unarchive it before making it available",
        )
    return replace(current, is_available=event.data.is_available, withdrawn=False)


RULES: dict[str, Callable[[Any, ModelState | None, Registry], ModelState]] = {
    "model.synced": model_synced,
    "model.withdrawn": model_withdrawn,
    "model.register": register,
    "model.patch_meta": patch_meta,
    "model.set_tier": set_tier,
    "model.mark_legacy": mark_legacy,
    "model.clear_legacy": clear_legacy,
    "model.archive": archive,
    "model.unarchive": unarchive,
    "model.set_availability": set_availability,
}


# --- consequences: lifecycle events and audit entries ---------------------------------------


def lifecycle_changes(
    before: ModelState | None,
    after: ModelState,
    *,
    causation_id: uuid.UUID,
    occurred_at: datetime,
    reason: str | None = None,
    registry: Registry | None = None,
) -> tuple[LifecycleEvent, ...]:
    """One lifecycle event per flag that really changed; a new model changes no flag."""
    if before is None:
        return ()

    def event(kind: LifecycleType, **extra: Any) -> LifecycleEvent:
        return LifecycleEvent(
            event_id=lifecycle_event_id(causation_id, kind, after.id),
            type=kind,
            occurred_at=occurred_at,
            causation_id=causation_id,
            model_id=after.id,
            state=after.flags,
            **extra,
        )

    events: list[LifecycleEvent] = []
    if after.is_legacy != before.is_legacy:
        if after.is_legacy:
            sunset = after.meta.get("sunsetDate")
            events.append(
                event(
                    "model.marked_legacy",
                    replacement_model_id=after.meta.get("legacyReplacementModelId"),
                    deprecation_notice=after.meta.get("deprecationNotice"),
                    sunset_date=datetime.fromisoformat(sunset) if sunset else None,
                )
            )
        else:
            events.append(event("model.legacy_cleared"))
    if after.is_archived != before.is_archived:
        if after.is_archived:
            referrers = registry.legacy_referrers(after.id) if registry else []
            events.append(
                event("model.archived", reason=reason, affected_model_ids=referrers or None)
            )
        else:
            events.append(event("model.unarchived"))
    if after.is_available != before.is_available:
        events.append(event("model.availability_changed"))
    return tuple(events)


def _tier_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {key: meta[key] for key in TIER_KEYS if key in meta}


def decide(event: InboundEvent, current: ModelState | None, registry: Registry) -> Decision:
    """Apply one event to one model; stale and rejected events leave the model untouched."""
    if (
        isinstance(event, ModelSynced | ModelWithdrawn)
        and current is not None
        and current.last_synced_at is not None
        and event.occurred_at < current.last_synced_at
    ):
        return Decision(Outcome.STALE, state=current)
    try:
        after = RULES[event.type](event, current, registry)
    except RuleViolation as violation:
        return Decision(Outcome.REJECTED, state=current, rejection=violation.rejection)

    # Only set_tier and archive carry a reason. Asked of the others, a pydantic model raises and
    # catches an AttributeError: a few microseconds on every provider sync.
    reason = event.data.reason if isinstance(event, SetTier | Archive) else None
    audit: tuple[TierAuditEntry, ...] = ()
    if isinstance(event, SetTier):
        audit = (
            TierAuditEntry(
                model_id=after.id,
                actor=event.actor,
                old=_tier_of(current.meta if current else {}),
                new=_tier_of(after.meta),
                reason=reason,
                event_id=event.event_id,
            ),
        )
    lifecycle = lifecycle_changes(
        current,
        after,
        causation_id=event.event_id,
        occurred_at=event.occurred_at,
        reason=reason,
        registry=registry,
    )
    return Decision(
        Outcome.APPLIED,
        state=after,
        lifecycle=lifecycle,
        audit=audit,
        before=current,
    )
