"""The registry rules: ``decide(event, current, registry) -> Decision``, one section per type."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.meta import normalize_meta
from tests.unit import builders as b
from tests.unit.builders import T0, at, registry, state
from worker.domain.model import Decision, ModelState, Outcome, RejectionKind
from worker.domain.rules import decide, merge_patch

EMPTY = registry()


def applied(decision: Decision) -> ModelState:
    assert decision.outcome is Outcome.APPLIED, decision.rejection
    assert decision.rejection is None
    assert decision.state is not None
    return decision.state


def rejected_as(decision: Decision, kind: RejectionKind, current: ModelState | None) -> None:
    assert decision.outcome is Outcome.REJECTED
    assert decision.rejection is not None
    assert decision.rejection.kind is kind, decision.rejection
    assert decision.state == current, "a rejected event must leave the model untouched"
    assert decision.lifecycle == ()
    assert decision.audit == ()


def types_of(decision: Decision) -> list[str]:
    return [event.type for event in decision.lifecycle]


# --- model.synced ------------------------------------------------------------------------------


def test_a_sync_of_an_unknown_model_creates_it_available_not_legacy_not_archived() -> None:
    decision = decide(b.synced("m1", {"displayName": "M1"}, name="Model One"), None, EMPTY)
    model = applied(decision)
    assert (model.id, model.name, model.provider) == ("m1", "Model One", b.PROVIDER)
    assert model.meta == {"displayName": "M1"}
    assert (model.is_available, model.is_legacy, model.is_archived) == (True, False, False)
    assert model.withdrawn is False
    assert model.last_synced_at == T0
    assert decision.changed


def test_a_sync_merges_provider_keys_and_leaves_every_other_key_alone() -> None:
    current = state(
        meta={"displayName": "Old", "description": "keep me", "requiredTier": "pro", "custom": 1},
        last_synced_at=at(-10),
    )
    model = applied(decide(b.synced("m1", {"displayName": "New", "version": "2"}), current, EMPTY))
    assert model.meta == {
        "displayName": "New",
        "version": "2",
        "description": "keep me",
        "requiredTier": "pro",
        "custom": 1,
    }
    assert model.last_synced_at == T0


def test_a_sync_does_not_touch_the_lifecycle_flags_of_an_existing_model() -> None:
    current = state(is_legacy=True, meta={"legacyReplacementModelId": "m2"})
    decision = decide(b.synced("m1", {"displayName": "x"}), current, EMPTY)
    model = applied(decision)
    assert (model.is_available, model.is_legacy, model.is_archived) == (True, True, False)
    assert model.meta["legacyReplacementModelId"] == "m2"
    assert decision.lifecycle == ()


def test_a_sync_carries_over_every_field_of_the_model_it_does_not_own() -> None:
    # A sync owns four fields and carries the rest over; a field added to ModelState must be
    # placed on one side or the other, so the field set is part of the spec.
    owned = {"meta", "is_available", "withdrawn", "last_synced_at"}
    carried = {"id", "name", "provider", "is_legacy", "is_archived"}
    assert {f.name for f in dataclasses.fields(ModelState)} == owned | carried, (
        "ModelState changed: update model_synced in worker/domain/rules.py and this spec"
    )
    current = state(
        name="Kept Name", is_available=False, is_legacy=True, is_archived=True, withdrawn=False
    )
    model = applied(decide(b.synced("m1", {"displayName": "x"}), current, EMPTY))
    for name in carried:
        assert getattr(model, name) == getattr(current, name), name


def test_a_sync_older_than_the_last_applied_sync_is_stale() -> None:
    current = state(meta={"displayName": "Newer"}, last_synced_at=at(5))
    decision = decide(b.synced("m1", {"displayName": "Older"}, occurred_at=at(4)), current, EMPTY)
    assert decision.outcome is Outcome.STALE
    assert decision.state == current
    assert decision.lifecycle == ()
    assert not decision.changed


def test_a_sync_as_old_as_the_last_applied_sync_is_not_stale() -> None:
    current = state(meta={"displayName": "A"}, last_synced_at=at(5))
    decision = decide(b.synced("m1", {"displayName": "B"}, occurred_at=at(5)), current, EMPTY)
    assert applied(decision).meta["displayName"] == "B"


def test_a_sync_newer_than_the_last_applied_sync_is_applied() -> None:
    current = state(meta={"displayName": "A"}, last_synced_at=at(5))
    decision = decide(b.synced("m1", {"displayName": "B"}, occurred_at=at(6)), current, EMPTY)
    assert applied(decision).last_synced_at == at(6)


def test_staleness_compares_instants_not_wall_clock_text() -> None:
    from datetime import timedelta, timezone

    current = state(last_synced_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    earlier_elsewhere = datetime(2024, 5, 1, 13, 59, tzinfo=timezone(timedelta(hours=2)))
    decision = decide(b.synced("m1", occurred_at=earlier_elsewhere), current, EMPTY)
    assert decision.outcome is Outcome.STALE


def test_a_model_never_synced_accepts_any_sync() -> None:
    current = state(last_synced_at=None)
    assert applied(decide(b.synced("m1", occurred_at=at(-10_000)), current, EMPTY))


def test_a_sync_restores_a_model_unavailable_only_because_the_provider_withdrew_it() -> None:
    current = state(is_available=False, withdrawn=True, last_synced_at=at(-1))
    decision = decide(b.synced("m1"), current, EMPTY)
    model = applied(decision)
    assert model.is_available is True
    assert model.withdrawn is False
    assert types_of(decision) == ["model.availability_changed"]


def test_a_sync_does_not_make_available_a_model_an_admin_made_unavailable() -> None:
    current = state(is_available=False, withdrawn=False)
    decision = decide(b.synced("m1"), current, EMPTY)
    assert applied(decision).is_available is False
    assert decision.lifecycle == ()


def test_a_sync_never_makes_an_archived_model_available() -> None:
    current = state(is_available=False, is_archived=True, withdrawn=True)
    assert applied(decide(b.synced("m1"), current, EMPTY)).is_available is False


def test_a_sync_from_another_provider_is_a_rule_violation() -> None:
    current = state(meta={"displayName": "A"})
    decision = decide(b.synced("m1", {"displayName": "B"}, provider="anthropic"), current, EMPTY)
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


def test_a_sync_whose_merged_meta_is_invalid_is_a_contract_violation_with_the_path() -> None:
    current = state(meta={"contextLength": 1000})
    decision = decide(b.synced("m1", {"maxOutputTokens": 2000}), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)
    assert decision.rejection is not None
    assert decision.rejection.detail
    assert decision.rejection.detail[0]["loc"][:2] == ["data", "meta"]
    json.dumps(list(decision.rejection.detail))


def test_a_sync_whose_merged_meta_exceeds_the_size_cap_is_a_contract_violation() -> None:
    current = state(meta={"adminNotes": "x" * 40_000})
    big = {"providerMetadata": {"blob": "y" * 40_000}}
    decision = decide(b.synced("m1", big), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)


def test_a_sync_replacing_a_big_key_stays_within_the_cap() -> None:
    current = state(meta={"providerMetadata": {"blob": "x" * 40_000}})
    update = {"providerMetadata": {"blob": "y" * 40_000}}
    assert applied(decide(b.synced("m1", update), current, EMPTY)).meta == update


# --- model.withdrawn ------------------------------------------------------------------------


def test_a_withdrawal_makes_an_available_model_unavailable_and_marks_it_withdrawn() -> None:
    decision = decide(b.withdrawn("m1"), state(), EMPTY)
    model = applied(decision)
    assert model.is_available is False
    assert model.withdrawn is True
    assert types_of(decision) == ["model.availability_changed"]


def test_a_withdrawal_of_an_already_unavailable_model_does_not_mark_it_withdrawn() -> None:
    current = state(is_available=False, withdrawn=False)
    decision = decide(b.withdrawn("m1"), current, EMPTY)
    model = applied(decision)
    assert (model.is_available, model.withdrawn) == (False, False)
    assert decision.lifecycle == ()
    # ... so the provider offering it again does not override the admin.
    assert applied(decide(b.synced("m1", occurred_at=at(1)), model, EMPTY)).is_available is False


def test_a_withdrawal_of_an_archived_model_does_not_mark_it_withdrawn() -> None:
    current = state(is_available=False, is_archived=True)
    model = applied(decide(b.withdrawn("m1"), current, EMPTY))
    assert model.withdrawn is False


def test_a_withdrawal_of_an_unknown_model_is_unknown_model() -> None:
    rejected_as(decide(b.withdrawn("ghost"), None, EMPTY), RejectionKind.UNKNOWN_MODEL, None)


def test_a_withdrawal_older_than_the_last_applied_sync_is_stale() -> None:
    current = state(last_synced_at=at(5))
    decision = decide(b.withdrawn("m1", occurred_at=at(1)), current, EMPTY)
    assert decision.outcome is Outcome.STALE
    assert decision.state == current


def test_a_sync_older_than_an_applied_withdrawal_is_stale() -> None:
    model = applied(decide(b.withdrawn("m1", occurred_at=at(5)), state(), EMPTY))
    decision = decide(b.synced("m1", occurred_at=at(1)), model, EMPTY)
    assert decision.outcome is Outcome.STALE
    assert decision.state is not None and decision.state.is_available is False


def test_withdraw_then_resync_round_trips_availability() -> None:
    withdrawn = applied(decide(b.withdrawn("m1", occurred_at=at(1)), state(), EMPTY))
    back = applied(decide(b.synced("m1", occurred_at=at(2)), withdrawn, EMPTY))
    assert (back.is_available, back.withdrawn) == (True, False)


# --- model.register ---------------------------------------------------------------------------


def test_register_creates_an_unknown_model_available_not_legacy_not_archived() -> None:
    meta = {"displayName": "M", "version": "2024-05"}
    decision = decide(b.register("m1", meta, name="Model"), None, EMPTY)
    model = applied(decision)
    assert (model.id, model.name, model.provider, model.meta) == ("m1", "Model", b.PROVIDER, meta)
    assert (model.is_available, model.is_legacy, model.is_archived) == (True, False, False)
    assert decision.lifecycle == ()


def test_register_merges_meta_into_an_existing_model() -> None:
    current = state(meta={"displayName": "Old", "description": "keep"}, is_legacy=True)
    decision = decide(b.register("m1", {"displayName": "New", "version": "2"}), current, EMPTY)
    model = applied(decision)
    assert model.meta == {"displayName": "New", "description": "keep", "version": "2"}
    assert model.is_legacy is True
    assert decision.lifecycle == ()


def test_register_does_not_count_as_a_provider_sync() -> None:
    current = state(last_synced_at=at(5))
    assert applied(decide(b.register("m1"), current, EMPTY)).last_synced_at == at(5)


def test_register_with_another_provider_is_a_rule_violation() -> None:
    current = state()
    decision = decide(b.register("m1", provider="mistral"), current, EMPTY)
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


def test_register_whose_merged_meta_is_invalid_is_a_contract_violation() -> None:
    current = state(meta={"maxOutputTokens": 4096})
    decision = decide(b.register("m1", {"contextLength": 1024}), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)


def test_register_shrinking_the_context_below_max_output_is_a_contract_violation() -> None:
    current = state(meta={"contextLength": 8192, "maxOutputTokens": 4096})
    decision = decide(b.register("m1", {"contextLength": 1024}), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)


def test_register_whose_merged_meta_exceeds_the_size_cap_is_a_contract_violation() -> None:
    current = state(meta={"blobA": "x" * 40_000})
    decision = decide(b.register("m1", {"blobB": "y" * 40_000}), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)


# --- unknown models ----------------------------------------------------------------------------

ADMIN_EVENTS_ON_UNKNOWN = [
    lambda: b.patch_meta("ghost", {"displayName": "x"}),
    lambda: b.set_tier("ghost", "pro"),
    lambda: b.mark_legacy("ghost"),
    lambda: b.clear_legacy("ghost"),
    lambda: b.archive("ghost"),
    lambda: b.unarchive("ghost"),
    lambda: b.set_availability("ghost", True),
    lambda: b.withdrawn("ghost"),
]


@pytest.mark.parametrize(
    "make",
    ADMIN_EVENTS_ON_UNKNOWN,
    ids=[
        "patch_meta",
        "set_tier",
        "mark_legacy",
        "clear_legacy",
        "archive",
        "unarchive",
        "set_availability",
        "withdrawn",
    ],
)
def test_every_event_except_synced_and_register_on_an_unknown_model_is_unknown_model(
    make: Any,
) -> None:
    rejected_as(decide(make(), None, registry(state("other"))), RejectionKind.UNKNOWN_MODEL, None)


# --- model.patch_meta -------------------------------------------------------------------------


def test_patch_meta_sets_and_replaces_keys() -> None:
    current = state(meta={"displayName": "A", "version": "1"})
    model = applied(
        decide(b.patch_meta("m1", {"version": "2", "description": "d"}), current, EMPTY)
    )
    assert model.meta == {"displayName": "A", "version": "2", "description": "d"}


@pytest.mark.parametrize(
    ("key", "value", "dedicated"),
    [
        ("requiredTier", "pro", "model.set_tier"),
        ("tierRestrictionMode", "exact", "model.set_tier"),
        ("legacyReplacementModelId", "m2", "model.mark_legacy"),
        ("sunsetDate", "2030-01-01T00:00:00Z", "model.mark_legacy"),
    ],
)
def test_keys_with_their_own_event_cannot_be_written_by_patch_meta_or_register(
    key: str, value: str, dedicated: str
) -> None:
    current = state(meta={"displayName": "A"})
    for event in (b.patch_meta("m1", {key: value}), b.register("m1", {key: value})):
        decision = decide(event, current, registry(current, state("m2")))
        rejected_as(decision, RejectionKind.RULE_VIOLATION, current)
        assert decision.rejection is not None and dedicated in decision.rejection.message


def test_patch_meta_null_removes_a_key() -> None:
    current = state(meta={"displayName": "A", "description": "gone"})
    model = applied(decide(b.patch_meta("m1", {"description": None}), current, EMPTY))
    assert model.meta == {"displayName": "A"}


def test_patch_meta_merges_nested_objects_and_replaces_arrays() -> None:
    current = state(
        meta={"providerMetadata": {"a": 1, "b": {"c": 2, "d": 3}}, "capabilities": ["chat"]}
    )
    patch = {"providerMetadata": {"b": {"c": None, "e": 4}}, "capabilities": ["vision"]}
    model = applied(decide(b.patch_meta("m1", patch), current, EMPTY))
    assert model.meta == {
        "providerMetadata": {"a": 1, "b": {"d": 3, "e": 4}},
        "capabilities": ["vision"],
    }


def test_patch_meta_whose_result_is_invalid_is_a_contract_violation_naming_the_field() -> None:
    current = state(meta={"contextLength": 100})
    decision = decide(b.patch_meta("m1", {"contextLength": -5}), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)
    assert decision.rejection is not None
    assert decision.rejection.detail[0]["loc"] == ["data", "meta", "contextLength"]


def test_patch_meta_valid_alone_but_invalid_combined_is_rejected() -> None:
    current = state(meta={"contextLength": 100})
    decision = decide(b.patch_meta("m1", {"maxOutputTokens": 101}), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)


def test_patch_meta_shrinking_the_context_below_max_output_is_rejected() -> None:
    current = state(meta={"contextLength": 8192, "maxOutputTokens": 4096})
    decision = decide(b.patch_meta("m1", {"contextLength": 1024}), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)


def test_patch_meta_stores_the_canonical_form() -> None:
    model = applied(
        decide(b.patch_meta("m1", {"inputCostPerMillionTokens": "2.50"}), state(), EMPTY)
    )
    assert model.meta == {"inputCostPerMillionTokens": 2.5}


def test_patch_meta_does_not_change_lifecycle_flags() -> None:
    decision = decide(b.patch_meta("m1", {"displayName": "x"}), state(), EMPTY)
    assert decision.lifecycle == ()
    assert decision.audit == ()


# RFC 7396 appendix A, the cases whose target and patch are objects.
RFC7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({"a": "foo"}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("target,patch,expected", RFC7396_EXAMPLES)
def test_merge_patch_follows_the_rfc_7396_examples(
    target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_patch(target, patch) == expected


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=4)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from("abcd"), children, max_size=3)
    ),
    max_leaves=12,
)
JSON_OBJECTS = st.dictionaries(st.sampled_from("abcde"), JSON_VALUES, max_size=5)


@given(JSON_OBJECTS)
def test_merge_patch_with_an_empty_patch_is_the_identity(target: dict[str, Any]) -> None:
    assert merge_patch(target, {}) == target


@given(JSON_OBJECTS, JSON_OBJECTS)
def test_merge_patch_applied_twice_equals_applied_once(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


@given(JSON_OBJECTS, st.sampled_from("abcde"))
def test_merge_patch_with_null_removes_the_key(target: dict[str, Any], key: str) -> None:
    result = merge_patch(target, {key: None})
    assert key not in result
    assert result == {k: v for k, v in target.items() if k != key}


@given(JSON_OBJECTS, JSON_OBJECTS)
def test_merge_patch_sets_every_non_null_non_object_value_of_the_patch(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    result = merge_patch(target, patch)
    for key, value in patch.items():
        if value is not None and not isinstance(value, dict):
            assert result[key] == value
    for key in set(target) - set(patch):
        assert result[key] == target[key]


@given(JSON_OBJECTS, JSON_OBJECTS)
def test_merge_patch_never_mutates_its_inputs(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    merge_patch(target, patch)
    assert (target, patch) == (target_before, patch_before)


# --- model.set_tier ---------------------------------------------------------------------------


def test_set_tier_updates_the_tier_keys_and_writes_one_audit_row() -> None:
    current = state(
        meta={"displayName": "M", "requiredTier": "free", "tierRestrictionMode": "minimum"}
    )
    event = b.set_tier(
        "m1",
        "pro",
        tier_restriction_mode="whitelist",
        allowed_tiers=["pro", "enterprise"],
        reason="r",
    )
    decision = decide(event, current, EMPTY)
    model = applied(decision)
    assert model.meta == {
        "displayName": "M",
        "requiredTier": "pro",
        "tierRestrictionMode": "whitelist",
        "allowedTiers": ["pro", "enterprise"],
    }
    assert len(decision.audit) == 1
    row = decision.audit[0]
    assert row.model_id == "m1"
    assert row.actor == event.actor
    assert row.event_id == event.event_id
    assert row.reason == "r"
    assert row.old == {"requiredTier": "free", "tierRestrictionMode": "minimum"}
    assert row.new == {
        "requiredTier": "pro",
        "tierRestrictionMode": "whitelist",
        "allowedTiers": ["pro", "enterprise"],
    }
    assert decision.lifecycle == ()


def test_set_tier_without_allowed_tiers_drops_the_previous_whitelist() -> None:
    current = state(
        meta={"requiredTier": "pro", "tierRestrictionMode": "whitelist", "allowedTiers": ["pro"]}
    )
    model = applied(decide(b.set_tier("m1", "free"), current, EMPTY))
    assert model.meta == {"requiredTier": "free", "tierRestrictionMode": "minimum"}


def test_set_tier_to_whitelist_without_allowed_tiers_is_rejected_without_audit() -> None:
    current = state()
    decision = decide(b.set_tier("m1", "pro", tier_restriction_mode="whitelist"), current, EMPTY)
    rejected_as(decision, RejectionKind.CONTRACT_VIOLATION, current)


def test_set_tier_writes_an_audit_row_even_when_the_tier_is_unchanged() -> None:
    current = state(meta={"requiredTier": "pro", "tierRestrictionMode": "minimum"})
    decision = decide(b.set_tier("m1", "pro"), current, EMPTY)
    assert len(decision.audit) == 1
    assert decision.audit[0].old == decision.audit[0].new


@pytest.mark.parametrize(
    "make",
    [
        lambda: b.patch_meta("m1", {"requiredTier": "pro"}),
        lambda: b.register("m1", {"requiredTier": "pro"}),
        lambda: b.archive("m1"),
        lambda: b.synced("m1"),
    ],
    ids=["patch_meta", "register", "archive", "synced"],
)
def test_only_set_tier_writes_tier_audit_rows(make: Any) -> None:
    assert decide(make(), state(), EMPTY).audit == ()


# --- model.mark_legacy ---------------------------------------------------------------------------


def test_mark_legacy_marks_the_model_and_records_replacement_notice_and_sunset() -> None:
    sunset = datetime(2025, 1, 1, tzinfo=UTC)
    event = b.mark_legacy(
        "m1", replacement_model_id="m2", deprecation_notice="use m2", sunset_date=sunset
    )
    model = applied(decide(event, state(), registry(state("m2"))))
    assert model.is_legacy is True
    assert model.meta["legacyReplacementModelId"] == "m2"
    assert model.meta["deprecationNotice"] == "use m2"
    assert datetime.fromisoformat(model.meta["sunsetDate"]) == sunset
    normalize_meta(dict(model.meta))


def test_mark_legacy_without_a_replacement_is_allowed() -> None:
    model = applied(decide(b.mark_legacy("m1"), state(), EMPTY))
    assert model.is_legacy is True
    assert "legacyReplacementModelId" not in model.meta


def test_marking_legacy_again_replaces_the_previous_legacy_details() -> None:
    current = state(
        is_legacy=True,
        meta={"legacyReplacementModelId": "m2", "deprecationNotice": "old", "displayName": "M"},
    )
    model = applied(
        decide(b.mark_legacy("m1", replacement_model_id="m3"), current, registry(state("m3")))
    )
    assert model.meta == {"legacyReplacementModelId": "m3", "displayName": "M"}


def test_the_replacement_must_exist() -> None:
    current = state()
    decision = decide(b.mark_legacy("m1", replacement_model_id="ghost"), current, EMPTY)
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


def test_a_model_cannot_replace_itself() -> None:
    current = state()
    decision = decide(b.mark_legacy("m1", replacement_model_id="m1"), current, registry(current))
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


def test_the_replacement_must_not_be_archived() -> None:
    current = state()
    reg = registry(state("m2", is_archived=True, is_available=False))
    decision = decide(b.mark_legacy("m1", replacement_model_id="m2"), current, reg)
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


def test_a_replacement_that_leads_back_to_the_model_is_a_cycle() -> None:
    current = state()
    reg = registry(current, state("m2", is_legacy=True, meta={"legacyReplacementModelId": "m1"}))
    decision = decide(b.mark_legacy("m1", replacement_model_id="m2"), current, reg)
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


def test_a_longer_replacement_chain_back_to_the_model_is_a_cycle() -> None:
    current = state()
    reg = registry(
        current,
        state("m2", is_legacy=True, meta={"legacyReplacementModelId": "m3"}),
        state("m3", is_legacy=True, meta={"legacyReplacementModelId": "m4"}),
        state("m4", is_legacy=True, meta={"legacyReplacementModelId": "m1"}),
    )
    decision = decide(b.mark_legacy("m1", replacement_model_id="m2"), current, reg)
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


def test_a_replacement_chain_that_does_not_return_is_accepted() -> None:
    reg = registry(
        state("m2", is_legacy=True, meta={"legacyReplacementModelId": "m3"}),
        state("m3", is_legacy=True, meta={"legacyReplacementModelId": "m4"}),
        state("m4"),
    )
    model = applied(decide(b.mark_legacy("m1", replacement_model_id="m2"), state(), reg))
    assert model.meta["legacyReplacementModelId"] == "m2"


def test_mark_legacy_with_a_bad_replacement_is_rejected_even_when_already_legacy() -> None:
    current = state(is_legacy=True, meta={"legacyReplacementModelId": "m3"})
    decision = decide(
        b.mark_legacy("m1", replacement_model_id="ghost"), current, registry(state("m3"))
    )
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


# --- model.clear_legacy ------------------------------------------------------------------------


def test_clear_legacy_unmarks_the_model_and_removes_the_legacy_keys() -> None:
    current = state(
        is_legacy=True,
        meta={
            "legacyReplacementModelId": "m2",
            "deprecationNotice": "n",
            "sunsetDate": "2025-01-01T00:00:00Z",
            "displayName": "M",
            "requiredTier": "pro",
        },
    )
    decision = decide(b.clear_legacy("m1"), current, EMPTY)
    model = applied(decision)
    assert model.is_legacy is False
    assert model.meta == {"displayName": "M", "requiredTier": "pro"}
    assert types_of(decision) == ["model.legacy_cleared"]


def test_clear_legacy_of_a_model_that_is_not_legacy_changes_nothing() -> None:
    current = state(meta={"displayName": "M"})
    decision = decide(b.clear_legacy("m1"), current, EMPTY)
    assert applied(decision) == current
    assert decision.lifecycle == ()
    assert not decision.changed


# --- model.archive / model.unarchive ----------------------------------------------------------


def test_archive_makes_the_model_archived_and_unavailable() -> None:
    decision = decide(b.archive("m1", reason="eol"), state(), EMPTY)
    model = applied(decision)
    assert (model.is_archived, model.is_available) == (True, False)
    assert sorted(types_of(decision)) == ["model.archived", "model.availability_changed"]
    (archived,) = (e for e in decision.lifecycle if e.type == "model.archived")
    assert archived.reason == "eol", "the archive's reason travels with its lifecycle event"


def test_archive_clears_the_withdrawn_flag() -> None:
    current = state(is_available=False, withdrawn=True)
    model = applied(decide(b.archive("m1"), current, EMPTY))
    assert model.withdrawn is False


def test_unarchive_keeps_the_model_unavailable() -> None:
    current = state(is_archived=True, is_available=False)
    decision = decide(b.unarchive("m1"), current, EMPTY)
    model = applied(decision)
    assert (model.is_archived, model.is_available) == (False, False)
    assert types_of(decision) == ["model.unarchived"]


def test_a_withdrawn_model_archived_and_unarchived_is_not_restored_by_a_sync() -> None:
    model = applied(decide(b.withdrawn("m1", occurred_at=at(1)), state(), EMPTY))
    model = applied(decide(b.archive("m1"), model, EMPTY))
    model = applied(decide(b.unarchive("m1"), model, EMPTY))
    assert applied(decide(b.synced("m1", occurred_at=at(2)), model, EMPTY)).is_available is False


def test_archiving_an_archived_model_changes_nothing() -> None:
    current = state(is_archived=True, is_available=False)
    decision = decide(b.archive("m1"), current, EMPTY)
    assert applied(decision) == current
    assert decision.lifecycle == ()


def test_unarchiving_a_model_that_is_not_archived_changes_nothing() -> None:
    decision = decide(b.unarchive("m1"), state(), EMPTY)
    assert decision.lifecycle == ()
    assert not decision.changed


# --- model.set_availability ----------------------------------------------------------------------


def test_an_archived_model_cannot_be_made_available() -> None:
    current = state(is_archived=True, is_available=False)
    decision = decide(b.set_availability("m1", True), current, EMPTY)
    rejected_as(decision, RejectionKind.RULE_VIOLATION, current)


def test_an_archived_model_may_be_set_unavailable() -> None:
    current = state(is_archived=True, is_available=False)
    assert applied(decide(b.set_availability("m1", False), current, EMPTY)) == current


def test_set_availability_sets_the_flag_both_ways() -> None:
    off = decide(b.set_availability("m1", False), state(), EMPTY)
    assert applied(off).is_available is False
    assert types_of(off) == ["model.availability_changed"]
    on = decide(b.set_availability("m1", True), applied(off), EMPTY)
    assert applied(on).is_available is True
    assert types_of(on) == ["model.availability_changed"]


def test_set_availability_clears_the_withdrawn_flag() -> None:
    current = state(is_available=False, withdrawn=True)
    model = applied(decide(b.set_availability("m1", False), current, EMPTY))
    assert model.withdrawn is False
    # ... so the admin's decision is not overridden by the next sync.
    assert applied(decide(b.synced("m1", occurred_at=at(1)), model, EMPTY)).is_available is False


def test_an_admin_can_make_a_withdrawn_model_available_again() -> None:
    current = state(is_available=False, withdrawn=True)
    model = applied(decide(b.set_availability("m1", True), current, EMPTY))
    assert (model.is_available, model.withdrawn) == (True, False)


def test_making_available_a_model_already_available_changes_nothing() -> None:
    decision = decide(b.set_availability("m1", True), state(), EMPTY)
    assert decision.lifecycle == ()
    assert not decision.changed


# --- decide never raises --------------------------------------------------------------------------


def _valid(meta: dict[str, Any]) -> bool:
    try:
        normalize_meta(meta)
    except ValueError:
        return False
    return True


VALID_METAS = st.fixed_dictionaries(
    {},
    optional={
        "displayName": st.sampled_from(["A", "Model"]),
        "contextLength": st.sampled_from([100, 8192]),
        "maxOutputTokens": st.sampled_from([50, 100]),
        "requiredTier": st.sampled_from(["free", "pro"]),
        "tierRestrictionMode": st.sampled_from(["minimum", "exact"]),
        "legacyReplacementModelId": st.sampled_from(["m1", "m2", "m3"]),
        "deprecationNotice": st.just("n"),
        "sunsetDate": st.just("2025-01-01T00:00:00Z"),
        "custom": st.sampled_from([1, "x", {"a": [1, None]}]),
    },
)
CANONICAL_METAS = VALID_METAS.filter(_valid).map(normalize_meta)
MODEL_IDS = st.sampled_from(["m1", "m2", "m3"])
TIMES = st.integers(-5, 5).map(at)


@st.composite
def states(draw: st.DrawFn, model_id: str | None = None) -> ModelState:
    archived = draw(st.booleans())
    return ModelState(
        id=model_id or draw(MODEL_IDS),
        name="n",
        provider=draw(st.sampled_from(["openai", "anthropic"])),
        meta=draw(CANONICAL_METAS),
        is_available=False if archived else draw(st.booleans()),
        is_legacy=draw(st.booleans()),
        is_archived=archived,
        last_synced_at=draw(st.none() | TIMES),
        withdrawn=draw(st.booleans()),
    )


#: Patches the contract lets through (a NUL in a string is refused before the rules run).
PATCHES = st.dictionaries(
    st.sampled_from(["displayName", "contextLength", "maxOutputTokens", "allowedTiers", "x"]),
    st.none()
    | st.integers(-2, 200)
    | st.text(st.characters(exclude_characters="\x00"), max_size=3)
    | st.just(["pro"]),
    min_size=1,
    max_size=3,
)


@st.composite
def events(draw: st.DrawFn, model_id: str) -> Any:
    provider = draw(st.sampled_from(["openai", "anthropic"]))
    kind = draw(st.integers(0, 9))
    if kind == 0:
        meta = draw(st.sampled_from([{}, {"maxOutputTokens": 150}, {"contextLength": 60}]))
        return b.synced(model_id, meta, provider=provider, occurred_at=draw(TIMES))
    if kind == 1:
        return b.withdrawn(model_id, occurred_at=draw(TIMES))
    if kind == 2:
        return b.register(model_id, draw(VALID_METAS.filter(_valid)), provider=provider)
    if kind == 3:
        return b.patch_meta(model_id, draw(PATCHES))
    if kind == 4:
        mode = draw(st.sampled_from(["minimum", "exact", "whitelist"]))
        allowed = draw(st.none() | st.just(["pro"]))
        fields = {} if allowed is None else {"allowed_tiers": allowed}
        return b.set_tier(model_id, "pro", tier_restriction_mode=mode, **fields)
    if kind == 5:
        replacement = draw(st.none() | MODEL_IDS)
        fields = {} if replacement is None else {"replacement_model_id": replacement}
        return b.mark_legacy(model_id, **fields)
    if kind == 6:
        return b.clear_legacy(model_id)
    if kind == 7:
        return b.archive(model_id, reason=draw(st.none() | st.just("r")))
    if kind == 8:
        return b.unarchive(model_id)
    return b.set_availability(model_id, draw(st.booleans()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_decide_never_raises_and_keeps_the_registry_invariants(data: st.DataObject) -> None:
    current = data.draw(st.none() | states("m1"))
    others = data.draw(st.lists(states(), max_size=3))
    reg = registry(*[s for s in others if s.id != "m1"], *([current] if current else []))
    event = data.draw(events("m1"))

    decision = decide(event, current, reg)

    if decision.outcome is Outcome.REJECTED:
        assert decision.rejection is not None
        assert decision.state == current
        json.dumps(list(decision.rejection.detail))
        return
    assert decision.rejection is None
    if decision.outcome is Outcome.STALE:
        assert decision.state == current
        return
    model = applied(decision)
    assert model.id == "m1"
    assert normalize_meta(dict(model.meta)) == dict(model.meta), "stored meta must stay valid"
    assert not (model.is_archived and model.is_available), "an archived model is never available"
    if current is not None:
        assert model.provider == current.provider, "a model's provider never changes"
    assert decision.changed == (model != current)
