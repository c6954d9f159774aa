"""Wire contract v1 of inbound events: the envelope, each type's data, and topic membership."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.events import (
    ADMIN_EVENTS,
    ADMIN_TYPES,
    PROVIDER_SYNC_EVENTS,
    PROVIDER_SYNC_TYPES,
    SCHEMA_VERSION,
    LifecycleEvent,
    LifecycleState,
    lifecycle_event_id,
)
from contracts.meta import PROVIDER_OWNED_KEYS
from tests.unit.builders import T0, wire

MINIMAL_DATA: dict[str, dict[str, Any]] = {
    "model.synced": {"id": "m1", "name": "M1", "provider": "openai", "meta": {}},
    "model.withdrawn": {"id": "m1"},
    "model.register": {"id": "m1", "name": "M1", "provider": "openai", "meta": {}},
    "model.patch_meta": {"id": "m1", "meta": {"displayName": "M"}},
    "model.set_tier": {"id": "m1", "requiredTier": "pro"},
    "model.mark_legacy": {"id": "m1"},
    "model.clear_legacy": {"id": "m1"},
    "model.archive": {"id": "m1"},
    "model.unarchive": {"id": "m1"},
    "model.set_availability": {"id": "m1", "isAvailable": False},
}
ALL_TYPES = sorted(MINIMAL_DATA)


def adapter(event_type: str):  # type: ignore[no-untyped-def]
    return PROVIDER_SYNC_EVENTS if event_type in PROVIDER_SYNC_TYPES else ADMIN_EVENTS


def parse(body: dict[str, Any]) -> Any:
    """Validate as the consumer does: from JSON bytes, with the adapter of the type's topic."""
    return adapter(body["type"]).validate_json(json.dumps(body))


def rejected(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        parse(body)
    return caught.value.errors()


def locs(errors: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Error locations without the leading discriminator tag."""
    return [tuple(e["loc"][1:]) for e in errors]


def test_the_topics_carry_exactly_the_specified_types() -> None:
    assert set(PROVIDER_SYNC_TYPES) == {"model.synced", "model.withdrawn"}
    assert set(ADMIN_TYPES) == {
        "model.register",
        "model.patch_meta",
        "model.set_tier",
        "model.mark_legacy",
        "model.clear_legacy",
        "model.archive",
        "model.unarchive",
        "model.set_availability",
    }


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_a_minimal_event_of_each_type_is_valid(event_type: str) -> None:
    event = parse(wire(event_type, MINIMAL_DATA[event_type]))
    assert event.type == event_type
    assert event.data.id == "m1"
    assert event.schema_version == SCHEMA_VERSION == 1


@pytest.mark.parametrize("event_type", sorted(ADMIN_TYPES))
def test_admin_types_are_not_accepted_on_the_provider_sync_topic(event_type: str) -> None:
    with pytest.raises(ValidationError):
        PROVIDER_SYNC_EVENTS.validate_json(json.dumps(wire(event_type, MINIMAL_DATA[event_type])))


@pytest.mark.parametrize("event_type", sorted(PROVIDER_SYNC_TYPES))
def test_provider_sync_types_are_not_accepted_on_the_admin_topic(event_type: str) -> None:
    body = wire(event_type, MINIMAL_DATA[event_type], actor="alice")
    with pytest.raises(ValidationError):
        ADMIN_EVENTS.validate_json(json.dumps(body))


# --- envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["model.synced", "model.archive"])
@pytest.mark.parametrize(
    "field", ["eventId", "type", "schemaVersion", "occurredAt", "source", "data"]
)
def test_every_envelope_field_is_required(event_type: str, field: str) -> None:
    with pytest.raises(ValidationError):
        parse_or_tagless(wire(event_type, MINIMAL_DATA[event_type], omit=(field,)), event_type)


def parse_or_tagless(body: dict[str, Any], event_type: str) -> Any:
    return adapter(event_type).validate_json(json.dumps(body))


@pytest.mark.parametrize("event_id", ["not-a-uuid", "", 42, None, "6f1c3a52-9d7e-4b8a-a0c2"])
def test_event_id_must_be_a_uuid_string(event_id: Any) -> None:
    errors = rejected(wire("model.archive", {"id": "m1"}, event_id=event_id))
    assert locs(errors) == [("eventId",)]


def test_event_id_is_parsed_as_a_uuid() -> None:
    event_id = uuid.uuid4()
    assert parse(wire("model.archive", {"id": "m1"}, event_id=str(event_id))).event_id == event_id


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_schema_version_must_be_1(version: Any) -> None:
    errors = rejected(wire("model.archive", {"id": "m1"}, schema_version=version))
    assert locs(errors) == [("schemaVersion",)]


def test_schema_version_true_is_not_1() -> None:
    rejected(wire("model.archive", {"id": "m1"}, schema_version=True))


@pytest.mark.parametrize(
    "occurred_at",
    ["2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00", "2024-05-01T07:00:00.123456-05:00"],
)
def test_occurred_at_accepts_rfc3339_with_a_zone(occurred_at: str) -> None:
    event = parse(wire("model.archive", {"id": "m1"}, occurred_at=occurred_at))
    assert event.occurred_at.utcoffset() is not None


@pytest.mark.parametrize("occurred_at", ["2024-05-01T12:00:00", "2024-05-01", "yesterday", ""])
def test_occurred_at_without_a_zone_or_not_a_timestamp_is_rejected(occurred_at: str) -> None:
    errors = rejected(wire("model.archive", {"id": "m1"}, occurred_at=occurred_at))
    assert locs(errors) == [("occurredAt",)]


def test_occurred_at_as_a_unix_timestamp_number_is_rejected() -> None:
    rejected(wire("model.archive", {"id": "m1"}, occurred_at=1714564800))


@pytest.mark.parametrize("source", ["", None, 7])
def test_source_must_be_a_non_empty_string(source: Any) -> None:
    errors = rejected(wire("model.synced", MINIMAL_DATA["model.synced"], source=source))
    assert locs(errors) == [("source",)]


@pytest.mark.parametrize("event_type", sorted(ADMIN_TYPES))
def test_actor_is_required_on_the_admin_topic(event_type: str) -> None:
    errors = rejected(wire(event_type, MINIMAL_DATA[event_type], omit=("actor",)))
    assert ("actor",) in locs(errors)


@pytest.mark.parametrize("event_type", sorted(ADMIN_TYPES))
def test_an_empty_actor_is_rejected_on_the_admin_topic(event_type: str) -> None:
    rejected(wire(event_type, MINIMAL_DATA[event_type], actor=""))


@pytest.mark.parametrize("event_type", sorted(PROVIDER_SYNC_TYPES))
def test_actor_is_optional_on_the_provider_sync_topic(event_type: str) -> None:
    assert parse(wire(event_type, MINIMAL_DATA[event_type])).actor is None
    assert parse(wire(event_type, MINIMAL_DATA[event_type], actor="sync-job")).actor == "sync-job"


@pytest.mark.parametrize("data", [[], "m1", None, 1])
def test_data_must_be_an_object(data: Any) -> None:
    errors = rejected(wire("model.archive", {"id": "m1"}) | {"data": data})
    assert locs(errors)[0][0] == "data"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_data_must_carry_the_model_id(event_type: str) -> None:
    data = {k: v for k, v in MINIMAL_DATA[event_type].items() if k != "id"}
    errors = rejected(wire(event_type, data))
    assert ("data", "id") in locs(errors)


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_unknown_data_fields_are_an_error(event_type: str) -> None:
    errors = rejected(wire(event_type, {**MINIMAL_DATA[event_type], "surprise": 1}))
    assert ("data", "surprise") in locs(errors)


@pytest.mark.parametrize("model_id", ["", "x" * 101, "has space", "-dash-first", "a\x00b"])
def test_model_ids_are_bounded_tokens(model_id: str) -> None:
    rejected(wire("model.archive", {"id": model_id}))


@pytest.mark.parametrize("model_id", ["gpt-4o", "anthropic/claude-3.5:beta", "m" * 100, "A1_b@x+y"])
def test_realistic_model_ids_are_accepted(model_id: str) -> None:
    assert parse(wire("model.archive", {"id": model_id})).data.id == model_id


# --- model.synced / model.register ------------------------------------------------------


@pytest.mark.parametrize("event_type", ["model.synced", "model.register"])
@pytest.mark.parametrize("field", ["name", "provider", "meta"])
def test_synced_and_register_need_name_provider_and_meta(event_type: str, field: str) -> None:
    data = {k: v for k, v in MINIMAL_DATA[event_type].items() if k != field}
    assert ("data", field) in locs(rejected(wire(event_type, data)))


@pytest.mark.parametrize("event_type", ["model.synced", "model.register"])
def test_the_name_must_not_be_empty(event_type: str) -> None:
    rejected(wire(event_type, {**MINIMAL_DATA[event_type], "name": ""}))


@pytest.mark.parametrize("provider", ["", "OpenAI", "open ai", "x" * 101])
def test_the_provider_is_a_lowercase_slug(provider: str) -> None:
    rejected(wire("model.synced", {**MINIMAL_DATA["model.synced"], "provider": provider}))


@pytest.mark.parametrize("event_type", ["model.synced", "model.register"])
def test_meta_must_be_an_object(event_type: str) -> None:
    rejected(wire(event_type, {**MINIMAL_DATA[event_type], "meta": ["displayName"]}))


@pytest.mark.parametrize(
    "key,value",
    [
        ("requiredTier", "pro"),
        ("tierRestrictionMode", "minimum"),
        ("allowedTiers", ["pro"]),
        ("creditsPer1kTokens", 1),
        ("legacyReplacementModelId", "m2"),
        ("deprecationNotice", "bye"),
        ("sunsetDate", "2025-01-01T00:00:00Z"),
        ("someFutureAdminKey", 1),
    ],
)
def test_a_provider_sync_carrying_an_admin_owned_key_is_rejected(key: str, value: Any) -> None:
    data = {**MINIMAL_DATA["model.synced"], "meta": {"displayName": "M", key: value}}
    errors = rejected(wire("model.synced", data))
    assert locs(errors) == [("data", "meta")]
    assert key in errors[0]["msg"]


def test_a_provider_sync_may_carry_every_provider_owned_key() -> None:
    meta = {
        "displayName": "GPT-4o",
        "description": "d",
        "version": "1",
        "capabilities": ["chat", "vision"],
        "contextLength": 1000,
        "maxOutputTokens": 100,
        "inputCostPerMillionTokens": 1.5,
        "outputCostPerMillionTokens": 3,
        "providerMetadata": {"x": 1},
    }
    assert set(meta) == PROVIDER_OWNED_KEYS
    event = parse(wire("model.synced", {**MINIMAL_DATA["model.synced"], "meta": meta}))
    assert event.data.meta == meta


@pytest.mark.parametrize("event_type", ["model.synced", "model.register"])
def test_an_invalid_meta_is_rejected_with_the_field_path(event_type: str) -> None:
    data = {**MINIMAL_DATA[event_type], "meta": {"contextLength": 0}}
    errors = rejected(wire(event_type, data))
    assert locs(errors) == [("data", "meta", "contextLength")]


def test_register_accepts_admin_owned_keys() -> None:
    meta = {"requiredTier": "pro", "creditsPer1kTokens": 2, "displayName": "M"}
    event = parse(wire("model.register", {**MINIMAL_DATA["model.register"], "meta": meta}))
    assert event.data.meta == meta


def test_the_meta_of_synced_and_register_arrives_in_canonical_form() -> None:
    meta = {"inputCostPerMillionTokens": "2.50", "sunsetDate": "2025-01-01T02:00:00+02:00"}
    event = parse(wire("model.register", {**MINIMAL_DATA["model.register"], "meta": meta}))
    assert event.data.meta["inputCostPerMillionTokens"] == 2.5
    json.dumps(event.data.meta)


@pytest.mark.parametrize("event_type", ["model.synced", "model.register"])
def test_a_meta_given_as_python_objects_arrives_in_its_json_form(event_type: str) -> None:
    meta = {"providerMetadata": {"price": Decimal("2.50")}, "contextLength": 8192}
    body = wire(event_type, {**MINIMAL_DATA[event_type], "meta": meta})
    event = adapter(event_type).validate_python(body)
    assert event.data.meta == {"providerMetadata": {"price": "2.50"}, "contextLength": 8192}


# --- admin data shapes ------------------------------------------------------------------------


def test_patch_meta_needs_a_non_empty_object() -> None:
    rejected(wire("model.patch_meta", {"id": "m1", "meta": {}}))
    rejected(wire("model.patch_meta", {"id": "m1", "meta": "x"}))


def test_patch_meta_keeps_nulls_because_they_remove_keys() -> None:
    event = parse(wire("model.patch_meta", {"id": "m1", "meta": {"description": None}}))
    assert event.data.meta == {"description": None}


def test_a_patch_itself_is_bounded_in_depth() -> None:
    value: Any = {}
    for _ in range(100):
        value = {"x": value}
    rejected(wire("model.patch_meta", {"id": "m1", "meta": value}))


def test_set_tier_defaults_to_the_minimum_mode() -> None:
    event = parse(wire("model.set_tier", {"id": "m1", "requiredTier": "pro"}))
    assert event.data.tier_restriction_mode == "minimum"
    assert event.data.allowed_tiers is None


def test_set_tier_carries_all_its_fields() -> None:
    data = {
        "id": "m1",
        "requiredTier": "free",
        "tierRestrictionMode": "whitelist",
        "allowedTiers": ["pro", "enterprise"],
        "reason": "launch",
    }
    event = parse(wire("model.set_tier", data))
    assert event.data.required_tier == "free"
    assert event.data.tier_restriction_mode == "whitelist"
    assert event.data.allowed_tiers == ["pro", "enterprise"]
    assert event.data.reason == "launch"


@pytest.mark.parametrize(
    "field,value",
    [("requiredTier", "gold"), ("tierRestrictionMode", "any"), ("allowedTiers", ["x"])],
)
def test_set_tier_rejects_unknown_tiers_and_modes(field: str, value: Any) -> None:
    rejected(wire("model.set_tier", {"id": "m1", "requiredTier": "pro", field: value}))


def test_set_tier_requires_the_required_tier() -> None:
    rejected(wire("model.set_tier", {"id": "m1"}))


def test_mark_legacy_carries_optional_replacement_notice_and_sunset() -> None:
    data = {
        "id": "m1",
        "replacementModelId": "m2",
        "deprecationNotice": "use m2",
        "sunsetDate": "2025-01-01T00:00:00Z",
    }
    event = parse(wire("model.mark_legacy", data))
    assert event.data.replacement_model_id == "m2"
    assert event.data.deprecation_notice == "use m2"
    assert event.data.sunset_date.isoformat() == "2025-01-01T00:00:00+00:00"


@pytest.mark.parametrize("sunset", ["2025-01-01T00:00:00", "2025-01-01", 1735689600])
def test_mark_legacy_rejects_a_sunset_date_that_is_not_rfc3339_with_a_zone(sunset: Any) -> None:
    errors = rejected(wire("model.mark_legacy", {"id": "m1", "sunsetDate": sunset}))
    assert locs(errors) == [("data", "sunsetDate")]


def test_archive_takes_an_optional_reason() -> None:
    assert parse(wire("model.archive", {"id": "m1", "reason": "eol"})).data.reason == "eol"


@pytest.mark.parametrize("value", ["true", 1, 0, None, "false"])
def test_set_availability_needs_a_json_boolean(value: Any) -> None:
    errors = rejected(wire("model.set_availability", {"id": "m1", "isAvailable": value}))
    assert locs(errors) == [("data", "isAvailable")]


# --- lifecycle out --------------------------------------------------------------------------


def test_a_lifecycle_event_serializes_with_the_specified_camel_case_fields() -> None:
    cause = uuid.uuid4()
    event = LifecycleEvent(
        event_id=lifecycle_event_id(cause, "model.marked_legacy", "m1"),
        type="model.marked_legacy",
        occurred_at=T0,
        causation_id=cause,
        model_id="m1",
        state=LifecycleState(is_available=True, is_legacy=True, is_archived=False),
        replacement_model_id="m2",
        deprecation_notice="use m2",
        sunset_date=T0,
    )
    body = json.loads(event.model_dump_json(by_alias=True))
    assert {
        "eventId",
        "type",
        "schemaVersion",
        "occurredAt",
        "causationId",
        "modelId",
        "state",
        "replacementModelId",
        "deprecationNotice",
        "sunsetDate",
    } <= set(body)
    assert body["schemaVersion"] == 1
    assert body["state"] == {"isAvailable": True, "isLegacy": True, "isArchived": False}
    assert body["causationId"] == str(cause)


def test_lifecycle_event_ids_are_deterministic_per_cause_type_and_model() -> None:
    cause = uuid.uuid4()
    first = lifecycle_event_id(cause, "model.archived", "m1")
    assert first == lifecycle_event_id(uuid.UUID(str(cause)), "model.archived", "m1")
    assert first.version == 5
    others = {
        lifecycle_event_id(uuid.uuid4(), "model.archived", "m1"),
        lifecycle_event_id(cause, "model.unarchived", "m1"),
        lifecycle_event_id(cause, "model.archived", "m2"),
    }
    assert first not in others
    assert len(others) == 3
