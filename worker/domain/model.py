"""What the domain rules see of a model and what they decide about an event."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from contracts.events import LifecycleEvent, LifecycleState
from worker.values import value_object


@value_object
class ModelState:
    """One row of ``models`` plus its provider-sync bookkeeping."""

    id: str
    name: str
    provider: str
    meta: Mapping[str, Any]
    is_available: bool = True
    is_legacy: bool = False
    is_archived: bool = False
    last_synced_at: datetime | None = None
    withdrawn: bool = False

    @property
    def flags(self) -> LifecycleState:
        return LifecycleState(
            is_available=self.is_available, is_legacy=self.is_legacy, is_archived=self.is_archived
        )


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    REJECTED = "rejected"


class RejectionKind(StrEnum):
    """``error.type`` of a dead letter: what the publisher got wrong."""

    INVALID_JSON = "invalid_json"
    INVALID_ENCODING = "invalid_encoding"
    UNKNOWN_TYPE = "unknown_type"
    CONTRACT_VIOLATION = "contract_violation"
    UNKNOWN_MODEL = "unknown_model"
    RULE_VIOLATION = "rule_violation"
    UNAUTHENTICATED = "unauthenticated"
    UNSTORABLE = "unstorable"


@value_object
class Rejection:
    kind: RejectionKind
    message: str
    detail: tuple[Mapping[str, Any], ...] = ()


@value_object
class TierAuditEntry:
    model_id: str
    actor: str
    old: Mapping[str, Any]
    new: Mapping[str, Any]
    reason: str | None
    event_id: uuid.UUID


@value_object
class Decision:
    """The whole effect of one event: the registry writes follow from it mechanically."""

    outcome: Outcome
    state: ModelState | None = None
    lifecycle: tuple[LifecycleEvent, ...] = ()
    audit: tuple[TierAuditEntry, ...] = ()
    rejection: Rejection | None = None
    #: The model before the event (None for a new one); only :attr:`changed` reads it.
    before: ModelState | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        """Whether an applied event changed the model. Computed on demand: comparing two metas
        costs microseconds, and the registry diffs rows once per batch, not per event."""
        return self.outcome is Outcome.APPLIED and self.state != self.before


class Registry(Protocol):
    """Read access the rules need beyond the model itself (replacements, referrers)."""

    def get(self, model_id: str) -> ModelState | None: ...

    def legacy_referrers(self, model_id: str) -> list[str]: ...
