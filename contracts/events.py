"""Wire contract v1: the events the worker consumes and the lifecycle events it publishes.

Every message is a JSON envelope; ``type`` selects the shape of ``data``. The models here are
the single source of the JSON Schema that publishers in other languages validate against.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from contracts.meta import (
    PROVIDER_OWNED_KEYS,
    CamelModel,
    ModelId,
    Text,
    Tier,
    TierRestrictionMode,
    WireDatetime,
    check_json_value,
    normalize_meta,
)

SCHEMA_VERSION: Final = 1
LIFECYCLE_NAMESPACE: Final = uuid.UUID("6f1c3a52-9d7e-4b8a-a0c2-3e5d7f9b1c24")

Name = Annotated[Text, StringConstraints(min_length=1, max_length=255)]
Provider = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")
]
Source = Annotated[Text, StringConstraints(min_length=1, max_length=255)]
Actor = Annotated[Text, StringConstraints(min_length=1, max_length=255)]
Reason = Annotated[Text, StringConstraints(max_length=2_000)]


EARLIEST_OCCURRED_AT: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_OCCURRED_AT: Final = datetime(9999, 1, 1, tzinfo=UTC)


def _storable_instant(value: datetime) -> datetime:
    # An offset can push a valid-looking date out of datetime's range once it is converted to
    # UTC (0001-01-01T00:00+14:00 is 1 BC): PostgreSQL stores that, but reading it back fails,
    # and every later event of the model would then be unstorable.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_OCCURRED_AT <= utc < LATEST_OCCURRED_AT:
        raise ValueError(
            f"must be between {EARLIEST_OCCURRED_AT.date()} and {LATEST_OCCURRED_AT.date()} in UTC"
        )
    return value


def _exactly_one(value: Any) -> Any:
    # Literal[1] alone would accept true and 1.0.
    if isinstance(value, bool | float):
        raise ValueError("must be the integer 1")
    return value


OccurredAt = Annotated[WireDatetime, AfterValidator(_storable_instant)]
SchemaVersion = Annotated[Literal[1], BeforeValidator(_exactly_one)]

MetaObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"x-ref": "model-meta.schema.json", "description": "A ModelMeta object."}),
]
MetaPatch = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "description": "RFC 7396 merge patch of ModelMeta; null removes a key.",
        }
    ),
]


class Data(CamelModel):
    """Base of every ``data`` object: unknown fields are an error, not silently ignored."""

    model_config = {"extra": "forbid"}

    id: ModelId


def _meta_object(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    return normalize_meta(value, info.context, parsed_from_json=info.mode == "json")


class ModelSyncedData(Data):
    name: Name
    provider: Provider
    meta: MetaObject

    @field_validator("meta")
    @classmethod
    def _provider_owned_only(cls, meta: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        foreign = sorted(set(meta) - PROVIDER_OWNED_KEYS)
        if foreign:
            raise ValueError(
                f"provider sync may only set provider-owned keys; not allowed: {', '.join(foreign)}"
            )
        return _meta_object(meta, info)


class ModelWithdrawnData(Data):
    pass


class RegisterData(Data):
    name: Name
    provider: Provider
    meta: MetaObject

    @field_validator("meta")
    @classmethod
    def _valid_meta(cls, meta: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _meta_object(meta, info)


class PatchMetaData(Data):
    """An RFC 7396 merge patch of meta; the merged result is validated against ModelMeta."""

    meta: MetaPatch = Field(min_length=1)

    @field_validator("meta")
    @classmethod
    def _bounded(cls, meta: dict[str, Any]) -> dict[str, Any]:
        check_json_value(meta, what="meta patch")
        return meta


class SetTierData(Data):
    required_tier: Tier
    tier_restriction_mode: TierRestrictionMode = TierRestrictionMode.MINIMUM
    allowed_tiers: list[Tier] | None = None
    reason: Reason | None = None


class MarkLegacyData(Data):
    replacement_model_id: ModelId | None = None
    deprecation_notice: Annotated[Text, StringConstraints(max_length=2_000)] | None = None
    sunset_date: WireDatetime | None = None


class ClearLegacyData(Data):
    pass


class ArchiveData(Data):
    reason: Reason | None = None


class UnarchiveData(Data):
    pass


class SetAvailabilityData(Data):
    is_available: StrictBool


class Envelope(CamelModel):
    """Fields every inbound event carries, whatever its type."""

    model_config = {"extra": "forbid"}

    event_id: uuid.UUID
    schema_version: SchemaVersion
    occurred_at: OccurredAt
    source: Source
    actor: Actor | None = None


class AdminEnvelope(Envelope):
    actor: Actor


class ModelSynced(Envelope):
    type: Literal["model.synced"]
    data: ModelSyncedData


class ModelWithdrawn(Envelope):
    type: Literal["model.withdrawn"]
    data: ModelWithdrawnData


class Register(AdminEnvelope):
    type: Literal["model.register"]
    data: RegisterData


class PatchMeta(AdminEnvelope):
    type: Literal["model.patch_meta"]
    data: PatchMetaData


class SetTier(AdminEnvelope):
    type: Literal["model.set_tier"]
    data: SetTierData


class MarkLegacy(AdminEnvelope):
    type: Literal["model.mark_legacy"]
    data: MarkLegacyData


class ClearLegacy(AdminEnvelope):
    type: Literal["model.clear_legacy"]
    data: ClearLegacyData


class Archive(AdminEnvelope):
    type: Literal["model.archive"]
    data: ArchiveData


class Unarchive(AdminEnvelope):
    type: Literal["model.unarchive"]
    data: UnarchiveData


class SetAvailability(AdminEnvelope):
    type: Literal["model.set_availability"]
    data: SetAvailabilityData


ProviderSyncEvent = Annotated[ModelSynced | ModelWithdrawn, Field(discriminator="type")]
AdminEvent = Annotated[
    Register
    | PatchMeta
    | SetTier
    | MarkLegacy
    | ClearLegacy
    | Archive
    | Unarchive
    | SetAvailability,
    Field(discriminator="type"),
]
InboundEvent = (
    ModelSynced
    | ModelWithdrawn
    | Register
    | PatchMeta
    | SetTier
    | MarkLegacy
    | ClearLegacy
    | Archive
    | Unarchive
    | SetAvailability
)

PROVIDER_SYNC_EVENTS: Final[TypeAdapter[InboundEvent]] = TypeAdapter(ProviderSyncEvent)
ADMIN_EVENTS: Final[TypeAdapter[InboundEvent]] = TypeAdapter(AdminEvent)

PROVIDER_SYNC_TYPES: Final = ("model.synced", "model.withdrawn")
ADMIN_TYPES: Final = (
    "model.register",
    "model.patch_meta",
    "model.set_tier",
    "model.mark_legacy",
    "model.clear_legacy",
    "model.archive",
    "model.unarchive",
    "model.set_availability",
)


# --- outbound: lifecycle topic -------------------------------------------------------------

LifecycleType = Literal[
    "model.marked_legacy",
    "model.legacy_cleared",
    "model.archived",
    "model.unarchived",
    "model.availability_changed",
]


class LifecycleState(CamelModel):
    is_available: bool
    is_legacy: bool
    is_archived: bool


class LifecycleEvent(CamelModel):
    """One real change of one lifecycle flag, published on the lifecycle topic."""

    event_id: uuid.UUID
    type: LifecycleType
    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime
    causation_id: uuid.UUID
    model_id: str
    state: LifecycleState
    replacement_model_id: str | None = None
    deprecation_notice: str | None = None
    sunset_date: datetime | None = None
    reason: str | None = None
    affected_model_ids: list[str] | None = Field(
        None,
        description="For model.archived: legacy models whose replacement is this model.",
    )


def lifecycle_event_id(causation_id: uuid.UUID, event_type: str, model_id: str) -> uuid.UUID:
    """Deterministic: a replay of the same cause yields the same id, so consumers can dedupe."""
    return uuid.uuid5(LIFECYCLE_NAMESPACE, f"{causation_id}:{event_type}:{model_id}")


def sunset_causation_id(model_id: str, sunset: datetime) -> uuid.UUID:
    """The cause of an automatic archive: the model's sunset date itself."""
    return uuid.uuid5(LIFECYCLE_NAMESPACE, f"sunset:{model_id}:{sunset.isoformat()}")
