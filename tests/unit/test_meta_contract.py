"""ModelMeta: the contract of ``models.meta`` (field rules, ownership, bounds, canonical form)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.meta import (
    LEGACY_KEYS,
    MAX_META_BYTES,
    MAX_META_DEPTH,
    PROVIDER_OWNED_KEYS,
    TIER_KEYS,
    ModelMeta,
    normalize_meta,
)


def valid(meta: dict[str, Any]) -> dict[str, Any]:
    return normalize_meta(meta)


def invalid(meta: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        normalize_meta(meta)
    return caught.value.errors()


def nested(depth: int) -> dict[str, Any]:
    """A meta whose container nesting depth is exactly ``depth`` (meta itself is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


# One valid sample per specified key, by its wire name.
SAMPLES: dict[str, Any] = {
    "displayName": "GPT-4o",
    "description": "Flagship multimodal model",
    "version": "2024-05-13",
    "capabilities": ["chat", "function_calling", "vision"],
    "contextLength": 128_000,
    "maxOutputTokens": 4_096,
    "inputCostPerMillionTokens": 2.5,
    "outputCostPerMillionTokens": 10,
    "creditsPer1kTokens": 0.5,
    "requiredTier": "pro",
    "tierRestrictionMode": "whitelist",
    "allowedTiers": ["pro", "enterprise"],
    "legacyReplacementModelId": "gpt-4o-2",
    "deprecationNotice": "Use gpt-4o-2",
    "sunsetDate": "2025-01-01T00:00:00Z",
    "providerMetadata": {"family": "gpt-4", "tags": ["a", "b"]},
}


# --- every specified key, by its exact wire name ------------------------------------------


def test_every_specified_key_round_trips_under_its_exact_camel_case_wire_name() -> None:
    stored = valid(SAMPLES)
    assert set(stored) == set(SAMPLES)
    assert stored["displayName"] == "GPT-4o"
    assert stored["capabilities"] == ["chat", "function_calling", "vision"]
    assert stored["contextLength"] == 128_000
    assert stored["creditsPer1kTokens"] == 0.5
    assert stored["allowedTiers"] == ["pro", "enterprise"]
    assert stored["providerMetadata"] == {"family": "gpt-4", "tags": ["a", "b"]}


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_each_specified_key_is_a_known_field_not_an_extra(key: str) -> None:
    parsed = ModelMeta.model_validate({key: SAMPLES[key], **_companions(key)})
    assert not (parsed.model_extra or {}).get(key), f"{key} is not mapped to a ModelMeta field"


def _companions(key: str) -> dict[str, Any]:
    return {"allowedTiers": ["pro"]} if key == "tierRestrictionMode" else {}


def test_an_empty_meta_is_valid() -> None:
    assert valid({}) == {}


def test_the_canonical_form_drops_null_known_keys() -> None:
    assert valid({"displayName": "x", "description": None}) == {"displayName": "x"}


# --- displayName ------------------------------------------------------------------------


def test_display_name_must_not_be_empty() -> None:
    errors = invalid({"displayName": ""})
    assert errors[0]["loc"] == ("displayName",)


def test_display_name_of_255_characters_is_accepted() -> None:
    assert valid({"displayName": "x" * 255})["displayName"] == "x" * 255


def test_display_name_longer_than_255_characters_is_rejected() -> None:
    errors = invalid({"displayName": "x" * 256})
    assert errors[0]["loc"] == ("displayName",)


@pytest.mark.parametrize("key", ["displayName", "description", "deprecationNotice"])
def test_text_fields_must_not_contain_nul(key: str) -> None:
    invalid({key: "a\x00b"})


# --- capabilities -----------------------------------------------------------------------


@pytest.mark.parametrize("token", ["chat", "function_calling", "vision", "tool_use2"])
def test_lowercase_capability_tokens_are_accepted(token: str) -> None:
    assert valid({"capabilities": [token]})["capabilities"] == [token]


@pytest.mark.parametrize("token", ["Chat", "VISION", "function-calling", "", " chat", "2d"])
def test_capabilities_must_be_lowercase_tokens(token: str) -> None:
    errors = invalid({"capabilities": [token]})
    assert errors[0]["loc"][0] == "capabilities"


def test_capabilities_must_be_unique() -> None:
    invalid({"capabilities": ["chat", "vision", "chat"]})


def test_capabilities_must_be_a_list() -> None:
    invalid({"capabilities": "chat"})


# --- contextLength / maxOutputTokens --------------------------------------------------------


@pytest.mark.parametrize("key", ["contextLength", "maxOutputTokens"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "many"])
def test_token_counts_must_be_positive_integers(key: str, value: Any) -> None:
    errors = invalid({key: value})
    assert errors[0]["loc"] == (key,)


@pytest.mark.parametrize("key", ["contextLength", "maxOutputTokens"])
def test_a_token_count_of_one_is_accepted(key: str) -> None:
    assert valid({key: 1}) == {key: 1}


def test_max_output_tokens_equal_to_context_length_is_accepted() -> None:
    assert valid({"contextLength": 8192, "maxOutputTokens": 8192})["maxOutputTokens"] == 8192


def test_max_output_tokens_above_context_length_is_rejected() -> None:
    errors = invalid({"contextLength": 8192, "maxOutputTokens": 8193})
    assert "maxOutputTokens" in errors[0]["msg"]


def test_a_boolean_is_not_a_context_length() -> None:
    invalid({"contextLength": True})


# --- costs and credits ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["inputCostPerMillionTokens", "outputCostPerMillionTokens"])
@pytest.mark.parametrize("value", [0, 0.15, "2.50", 1000])
def test_costs_accept_non_negative_decimals_and_store_numbers(key: str, value: Any) -> None:
    stored = valid({key: value})[key]
    assert isinstance(stored, int | float)
    assert Decimal(str(stored)) == Decimal(str(value))


@pytest.mark.parametrize("key", ["inputCostPerMillionTokens", "outputCostPerMillionTokens"])
@pytest.mark.parametrize("value", [-0.01, -1, float("nan"), float("inf"), "free"])
def test_costs_reject_negative_and_non_finite_values(key: str, value: Any) -> None:
    invalid({key: value})


@pytest.mark.parametrize("value", [0, 0.25, 3])
def test_credits_per_1k_tokens_accepts_non_negative_numbers(value: float) -> None:
    assert valid({"creditsPer1kTokens": value}) == {"creditsPer1kTokens": value}


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf")])
def test_credits_per_1k_tokens_rejects_negative_and_non_finite_numbers(value: float) -> None:
    invalid({"creditsPer1kTokens": value})


# --- tiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["free", "pro", "pro_max", "enterprise"])
def test_every_specified_tier_is_a_valid_required_tier(tier: str) -> None:
    assert valid({"requiredTier": tier}) == {"requiredTier": tier}


@pytest.mark.parametrize("tier", ["gold", "PRO", "pro-max", ""])
def test_an_unknown_tier_is_rejected(tier: str) -> None:
    invalid({"requiredTier": tier})


@pytest.mark.parametrize("mode", ["minimum", "exact"])
def test_minimum_and_exact_modes_need_no_allowed_tiers(mode: str) -> None:
    assert valid({"tierRestrictionMode": mode}) == {"tierRestrictionMode": mode}


def test_an_unknown_restriction_mode_is_rejected() -> None:
    invalid({"tierRestrictionMode": "maximum"})


@pytest.mark.parametrize("allowed", [None, []])
def test_whitelist_mode_needs_a_non_empty_allowed_tiers(allowed: list[str] | None) -> None:
    meta: dict[str, Any] = {"tierRestrictionMode": "whitelist"}
    if allowed is not None:
        meta["allowedTiers"] = allowed
    errors = invalid(meta)
    assert "allowedTiers" in errors[0]["msg"]


def test_whitelist_mode_with_allowed_tiers_is_accepted() -> None:
    meta = {"tierRestrictionMode": "whitelist", "allowedTiers": ["free", "enterprise"]}
    assert valid(meta) == meta


def test_allowed_tiers_must_be_known_tiers() -> None:
    invalid({"tierRestrictionMode": "whitelist", "allowedTiers": ["pro", "platinum"]})


def test_allowed_tiers_must_be_unique() -> None:
    invalid({"tierRestrictionMode": "whitelist", "allowedTiers": ["pro", "pro"]})


# --- legacy keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sunset", ["2025-01-01T00:00:00Z", "2025-01-01T02:00:00+02:00", "2025-06-30T23:59:59.5-07:00"]
)
def test_sunset_date_accepts_rfc3339_timestamps(sunset: str) -> None:
    assert "sunsetDate" in valid({"sunsetDate": sunset})


@pytest.mark.parametrize("sunset", ["2025-01-01T00:00:00", "2025-01-01", "soon", "31/12/2025"])
def test_sunset_date_rejects_values_that_are_not_rfc3339_with_offset(sunset: str) -> None:
    invalid({"sunsetDate": sunset})


def test_sunset_date_rejects_a_unix_timestamp_number() -> None:
    invalid({"sunsetDate": 1735689600})


def test_the_stored_sunset_date_reads_back_as_the_same_instant() -> None:
    from datetime import datetime

    stored = valid({"sunsetDate": "2025-01-01T02:00:00+02:00"})["sunsetDate"]
    assert datetime.fromisoformat(stored) == datetime.fromisoformat("2025-01-01T00:00:00+00:00")


@pytest.mark.parametrize("value", ["", "has space", "x" * 101, "-leading-dash"])
def test_legacy_replacement_model_id_must_be_a_model_id(value: str) -> None:
    invalid({"legacyReplacementModelId": value})


def test_deprecation_notice_is_bounded() -> None:
    invalid({"deprecationNotice": "x" * 2_001})


# --- providerMetadata and unknown keys -------------------------------------------------------


@pytest.mark.parametrize("value", [["a"], "text", 3, True])
def test_provider_metadata_must_be_an_object(value: Any) -> None:
    errors = invalid({"providerMetadata": value})
    assert errors[0]["loc"][0] == "providerMetadata"


def test_unknown_keys_are_kept_as_they_are() -> None:
    meta = {"futureKey": {"nested": [1, "two", {"three": 3.5, "none": None}]}, "flag": True}
    assert valid({"displayName": "x", **meta}) == {"displayName": "x", **meta}


def test_a_top_level_null_is_stored_as_absence() -> None:
    assert valid({"futureKey": None, "displayName": "x"}) == {"displayName": "x"}


def _no_nul(text: str) -> bool:
    return "\x00" not in text


@given(
    st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).map(
            lambda k: f"x_{k}"
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10).filter(_no_nul),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5).filter(_no_nul), children, max_size=3)
            ),
            max_leaves=10,
        ),
        max_size=5,
    )
)
def test_any_unknown_json_keys_survive_normalization_unchanged(extra: dict[str, Any]) -> None:
    assert valid(extra) == {k: v for k, v in extra.items() if v is not None}


def test_a_meta_just_under_the_size_cap_is_accepted() -> None:
    meta = {"blob": "x" * (MAX_META_BYTES - 100)}
    assert valid(meta) == meta


def test_a_meta_over_64_kib_serialized_is_rejected() -> None:
    assert MAX_META_BYTES == 64 * 1024
    errors = invalid({"blob": "x" * MAX_META_BYTES})
    assert "bytes" in errors[0]["msg"]


def test_the_size_cap_counts_nested_unknown_keys_too() -> None:
    invalid({"providerMetadata": {"a": ["y" * 40_000, "z" * 40_000]}})


def test_nesting_up_to_the_depth_bound_is_accepted() -> None:
    meta = nested(MAX_META_DEPTH)
    assert valid(meta) == meta


def test_nesting_deeper_than_the_bound_is_rejected() -> None:
    errors = invalid(nested(MAX_META_DEPTH + 1))
    assert "deeper" in errors[0]["msg"]


def test_deep_nesting_through_lists_is_rejected_too() -> None:
    value: Any = "leaf"
    for _ in range(MAX_META_DEPTH + 5):
        value = [value]
    invalid({"providerMetadata": {"deep": value}})


def test_a_very_deeply_nested_meta_is_rejected_without_crashing() -> None:
    invalid(nested(5_000))


def test_the_depth_bound_is_modest() -> None:
    assert 2 <= MAX_META_DEPTH <= 64


def test_non_finite_numbers_in_unknown_keys_are_rejected() -> None:
    invalid({"futureKey": float("nan")})


def test_nul_in_an_unknown_key_name_is_rejected() -> None:
    invalid({"bad\x00key": 1})


# --- ownership -----------------------------------------------------------------------------


def test_provider_owned_keys_are_exactly_the_specified_ones() -> None:
    assert {
        "displayName",
        "description",
        "version",
        "capabilities",
        "contextLength",
        "maxOutputTokens",
        "inputCostPerMillionTokens",
        "outputCostPerMillionTokens",
        "providerMetadata",
    } == PROVIDER_OWNED_KEYS


def test_tier_and_legacy_keys_are_admin_owned() -> None:
    assert not (set(TIER_KEYS) | set(LEGACY_KEYS) | {"creditsPer1kTokens"}) & PROVIDER_OWNED_KEYS


def test_the_canonical_form_is_json_serializable() -> None:
    json.dumps(valid(SAMPLES))


def test_normalization_is_idempotent() -> None:
    once = valid(SAMPLES)
    assert valid(once) == once


# --- a meta already in its stored form is kept, not rebuilt ---------------------------------


def _rebuilt(meta: dict[str, Any]) -> dict[str, Any]:
    return ModelMeta.model_validate(meta).to_json_dict()


def _as_text(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True)


JSON_LEAVES = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5)
JSON_VALUES = st.recursive(
    JSON_LEAVES | st.floats(0, 1e6, allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
PRICES = st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10**6) | st.just("1.50") | st.none()
METAS_AS_PUBLISHED = st.fixed_dictionaries(
    {},
    optional={
        "displayName": st.just("Model") | st.none(),
        "display_name": st.just("Model"),
        "capabilities": st.just(["chat", "vision"]),
        "contextLength": st.sampled_from([4096, 128_000]),
        "max_output_tokens": st.just(1024),
        "inputCostPerMillionTokens": PRICES,
        "outputCostPerMillionTokens": PRICES,
        "creditsPer1kTokens": PRICES,
        "requiredTier": st.sampled_from(["free", "pro"]),
        "allowedTiers": st.just(["pro", "enterprise"]),
        "tierRestrictionMode": st.sampled_from(["minimum", "exact"]),
        "sunsetDate": st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01T02:00:00+02:00"]),
        "deprecationNotice": st.just("use m2"),
        "providerMetadata": st.dictionaries(st.text(max_size=3), JSON_VALUES, max_size=3),
        "custom": JSON_VALUES,
    },
)


@given(METAS_AS_PUBLISHED)
def test_a_meta_parsed_from_json_is_stored_exactly_as_if_rebuilt_from_the_model(
    meta: dict[str, Any],
) -> None:
    try:
        expected = _rebuilt(meta)
    except ValidationError:
        with pytest.raises(ValidationError):
            normalize_meta(meta, parsed_from_json=True)
        return
    stored = normalize_meta(meta, parsed_from_json=True)
    assert stored == expected
    assert _as_text(stored) == _as_text(expected)  # 5 and 5.0 are equal, but not as JSON


def test_a_provider_sync_meta_in_stored_form_is_kept_as_parsed() -> None:
    meta = {key: SAMPLES[key] for key in PROVIDER_OWNED_KEYS}
    meta["outputCostPerMillionTokens"] = 10.0
    assert normalize_meta(meta, parsed_from_json=True) is meta


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("outputCostPerMillionTokens", 10),  # stored as 10.0
        ("inputCostPerMillionTokens", "2.5"),  # stored as 2.5
        ("display_name", "GPT-4o"),  # stored as displayName
        ("sunsetDate", "2025-01-01T02:00:00+02:00"),  # stored as 2025-01-01T00:00:00Z
        ("custom", None),  # a top-level null is stored as absence
    ],
)
def test_a_meta_not_in_stored_form_is_rebuilt(key: str, value: Any) -> None:
    meta = {"displayName": "GPT-4o", key: value}
    stored = normalize_meta(meta, parsed_from_json=True)
    assert stored is not meta
    assert stored == _rebuilt(meta)


def test_a_meta_built_in_python_is_always_rebuilt() -> None:
    meta = {"displayName": "GPT-4o", "custom": {"at": Decimal("1.5")}}
    stored = normalize_meta(meta)
    assert stored is not meta
    assert _as_text(stored) == '{"custom": {"at": "1.5"}, "displayName": "GPT-4o"}'
