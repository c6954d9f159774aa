"""Wire contracts of model-registry: inbound events, lifecycle events and ``ModelMeta``."""

from contracts.events import (
    ADMIN_EVENTS,
    ADMIN_TYPES,
    PROVIDER_SYNC_EVENTS,
    PROVIDER_SYNC_TYPES,
    SCHEMA_VERSION,
    InboundEvent,
    LifecycleEvent,
    LifecycleState,
    lifecycle_event_id,
    sunset_causation_id,
)
from contracts.meta import (
    LEGACY_KEYS,
    PROVIDER_OWNED_KEYS,
    TIER_KEYS,
    ModelMeta,
    Tier,
    TierRestrictionMode,
    normalize_meta,
)

__all__ = [
    "ADMIN_EVENTS",
    "ADMIN_TYPES",
    "LEGACY_KEYS",
    "PROVIDER_OWNED_KEYS",
    "PROVIDER_SYNC_EVENTS",
    "PROVIDER_SYNC_TYPES",
    "SCHEMA_VERSION",
    "TIER_KEYS",
    "InboundEvent",
    "LifecycleEvent",
    "LifecycleState",
    "ModelMeta",
    "Tier",
    "TierRestrictionMode",
    "lifecycle_event_id",
    "normalize_meta",
    "sunset_causation_id",
]
