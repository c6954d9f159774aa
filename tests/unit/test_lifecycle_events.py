"""Lifecycle events out: one per flag that really changed, with deterministic ids."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import LIFECYCLE_NAMESPACE, LifecycleEvent, lifecycle_event_id
from tests.unit import builders as b
from tests.unit.builders import T0, registry, state
from worker.domain.model import ModelState, Outcome
from worker.domain.rules import decide, lifecycle_changes

EMPTY = registry()

FLAG_EVENT = {
    "is_legacy": ("model.marked_legacy", "model.legacy_cleared"),
    "is_archived": ("model.archived", "model.unarchived"),
    "is_available": ("model.availability_changed", "model.availability_changed"),
}


def by_type(events: tuple[LifecycleEvent, ...]) -> dict[str, LifecycleEvent]:
    result = {e.type: e for e in events}
    assert len(result) == len(events), "at most one event per type"
    return result


def expected_types(before: ModelState, after: ModelState) -> list[str]:
    types = []
    for flag, (on, off) in FLAG_EVENT.items():
        if getattr(before, flag) != getattr(after, flag):
            types.append(on if getattr(after, flag) else off)
    return sorted(types)


# --- one event per real change -------------------------------------------------------------


def test_mark_legacy_emits_marked_legacy_with_replacement_notice_and_sunset() -> None:
    sunset = datetime(2025, 1, 1, tzinfo=UTC)
    event = b.mark_legacy(
        "m1", replacement_model_id="m2", deprecation_notice="use m2", sunset_date=sunset
    )
    decision = decide(event, state(), registry(state("m2")))
    (out,) = decision.lifecycle
    assert out.type == "model.marked_legacy"
    assert out.model_id == "m1"
    assert out.replacement_model_id == "m2"
    assert out.deprecation_notice == "use m2"
    assert out.sunset_date == sunset
    assert (out.state.is_available, out.state.is_legacy, out.state.is_archived) == (
        True,
        True,
        False,
    )


def test_marked_legacy_without_details_carries_no_replacement_notice_or_sunset() -> None:
    (out,) = decide(b.mark_legacy("m1"), state(), EMPTY).lifecycle
    assert (out.replacement_model_id, out.deprecation_notice, out.sunset_date) == (None, None, None)


def test_re_marking_a_legacy_model_emits_nothing() -> None:
    current = state(is_legacy=True)
    decision = decide(b.mark_legacy("m1", deprecation_notice="again"), current, EMPTY)
    assert decision.outcome is Outcome.APPLIED
    assert decision.lifecycle == ()


def test_clear_legacy_emits_legacy_cleared_with_the_state_after() -> None:
    (out,) = decide(b.clear_legacy("m1"), state(is_legacy=True), EMPTY).lifecycle
    assert out.type == "model.legacy_cleared"
    assert out.state.is_legacy is False


def test_archiving_an_available_model_emits_archived_and_availability_changed() -> None:
    decision = decide(b.archive("m1", reason="end of life"), state(), EMPTY)
    events = by_type(decision.lifecycle)
    assert set(events) == {"model.archived", "model.availability_changed"}
    for out in events.values():
        assert (out.state.is_available, out.state.is_archived) == (False, True)
    assert events["model.archived"].reason == "end of life"


def test_archiving_an_unavailable_model_emits_only_archived() -> None:
    decision = decide(b.archive("m1"), state(is_available=False), EMPTY)
    assert [e.type for e in decision.lifecycle] == ["model.archived"]


def test_archived_lists_the_legacy_models_this_model_replaces() -> None:
    reg = registry(
        state("m1"),
        state("old1", is_legacy=True, meta={"legacyReplacementModelId": "m1"}),
        state("old2", is_legacy=True, meta={"legacyReplacementModelId": "m1"}),
        state("other", is_legacy=True, meta={"legacyReplacementModelId": "m9"}),
    )
    events = by_type(decide(b.archive("m1"), state("m1"), reg).lifecycle)
    assert events["model.archived"].affected_model_ids == ["old1", "old2"]


def test_archived_without_referrers_has_no_affected_models() -> None:
    events = by_type(decide(b.archive("m1"), state(), EMPTY).lifecycle)
    assert not events["model.archived"].affected_model_ids


def test_unarchive_emits_unarchived_only_since_the_model_stays_unavailable() -> None:
    decision = decide(b.unarchive("m1"), state(is_archived=True, is_available=False), EMPTY)
    (out,) = decision.lifecycle
    assert out.type == "model.unarchived"
    assert (out.state.is_available, out.state.is_archived) == (False, False)


@pytest.mark.parametrize("available", [True, False])
def test_set_availability_emits_availability_changed_only_on_a_real_change(available: bool) -> None:
    changed = decide(b.set_availability("m1", available), state(is_available=not available), EMPTY)
    (out,) = changed.lifecycle
    assert out.type == "model.availability_changed"
    assert out.state.is_available is available
    same = decide(b.set_availability("m1", available), state(is_available=available), EMPTY)
    assert same.lifecycle == ()


def test_withdrawal_and_restoring_sync_emit_availability_changed() -> None:
    gone = decide(b.withdrawn("m1", occurred_at=b.at(1)), state(), EMPTY)
    assert [(e.type, e.state.is_available) for e in gone.lifecycle] == [
        ("model.availability_changed", False)
    ]
    assert gone.state is not None
    back = decide(b.synced("m1", occurred_at=b.at(2)), gone.state, EMPTY)
    assert [(e.type, e.state.is_available) for e in back.lifecycle] == [
        ("model.availability_changed", True)
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: b.synced("m1"),
        lambda: b.register("m1", {"displayName": "x"}),
    ],
    ids=["synced", "register"],
)
def test_creating_a_model_emits_no_lifecycle_event(make: Any) -> None:
    decision = decide(make(), None, EMPTY)
    assert decision.outcome is Outcome.APPLIED
    assert decision.lifecycle == ()


def test_rejected_and_stale_events_emit_nothing() -> None:
    archived = state(is_archived=True, is_available=False)
    assert decide(b.set_availability("m1", True), archived, EMPTY).lifecycle == ()
    fresh = state(last_synced_at=b.at(5), is_available=False, withdrawn=True)
    assert decide(b.synced("m1", occurred_at=b.at(1)), fresh, EMPTY).lifecycle == ()


# --- envelope of each lifecycle event -----------------------------------------------------------


def test_every_lifecycle_event_is_caused_by_and_timed_as_its_inbound_event() -> None:
    inbound = b.archive("m1")
    for out in decide(inbound, state(), EMPTY).lifecycle:
        assert out.causation_id == inbound.event_id
        assert out.occurred_at == inbound.occurred_at
        assert out.schema_version == 1
        assert out.model_id == "m1"


def test_lifecycle_event_ids_are_uuid5_of_cause_type_and_model() -> None:
    inbound = b.archive("m1")
    for out in decide(inbound, state(), EMPTY).lifecycle:
        assert out.event_id == uuid.uuid5(LIFECYCLE_NAMESPACE, f"{inbound.event_id}:{out.type}:m1")
        assert out.event_id == lifecycle_event_id(inbound.event_id, out.type, "m1")


def test_replaying_the_same_inbound_event_yields_the_same_lifecycle_ids() -> None:
    inbound = b.archive("m1")
    first = [e.event_id for e in decide(inbound, state(), EMPTY).lifecycle]
    again = [e.event_id for e in decide(inbound, state(), EMPTY).lifecycle]
    assert first == again
    assert len(set(first)) == len(first) == 2


def test_different_inbound_events_yield_different_lifecycle_ids() -> None:
    first = {e.event_id for e in decide(b.archive("m1"), state(), EMPTY).lifecycle}
    second = {e.event_id for e in decide(b.archive("m1"), state(), EMPTY).lifecycle}
    assert not first & second


def test_a_lifecycle_event_serializes_to_camel_case_json() -> None:
    sunset = datetime(2025, 1, 1, tzinfo=UTC)
    event = b.mark_legacy("m1", replacement_model_id="m2", sunset_date=sunset)
    (out,) = decide(event, state(), registry(state("m2"))).lifecycle
    body = json.loads(out.model_dump_json(by_alias=True))
    assert body["type"] == "model.marked_legacy"
    assert body["modelId"] == "m1"
    assert body["causationId"] == str(event.event_id)
    assert body["eventId"] == str(out.event_id)
    assert body["replacementModelId"] == "m2"
    assert datetime.fromisoformat(body["sunsetDate"]) == sunset
    assert body["state"] == {"isAvailable": True, "isLegacy": True, "isArchived": False}


# --- properties ----------------------------------------------------------------------------

FLAGS = st.fixed_dictionaries(
    {"is_available": st.booleans(), "is_legacy": st.booleans(), "is_archived": st.booleans()}
)


@settings(max_examples=200)
@given(FLAGS, FLAGS)
def test_lifecycle_changes_exactly_match_the_flag_differences(
    before_flags: dict[str, bool], after_flags: dict[str, bool]
) -> None:
    before = state(**before_flags)
    after = replace(before, **after_flags)
    cause = uuid.uuid4()
    events = lifecycle_changes(before, after, causation_id=cause, occurred_at=T0)
    assert sorted(e.type for e in events) == expected_types(before, after)
    for out in events:
        assert out.state == after.flags
        assert out.event_id == lifecycle_event_id(cause, out.type, after.id)
    assert len({e.event_id for e in events}) == len(events)


ADMIN_ACTIONS = [
    lambda: b.archive("m1"),
    lambda: b.unarchive("m1"),
    lambda: b.mark_legacy("m1"),
    lambda: b.clear_legacy("m1"),
    lambda: b.set_availability("m1", True),
    lambda: b.set_availability("m1", False),
    lambda: b.withdrawn("m1"),
    lambda: b.synced("m1"),
    lambda: b.patch_meta("m1", {"displayName": "x"}),
    lambda: b.set_tier("m1", "pro"),
]


@settings(max_examples=200, deadline=None)
@given(FLAGS, st.booleans(), st.sampled_from(range(len(ADMIN_ACTIONS))))
def test_decided_lifecycle_events_exactly_match_the_flag_differences(
    flags: dict[str, bool], withdrawn: bool, action: int
) -> None:
    if flags["is_archived"]:
        flags = {**flags, "is_available": False}
    before = state(withdrawn=withdrawn, **flags)
    decision = decide(ADMIN_ACTIONS[action](), before, EMPTY)
    if decision.outcome is not Outcome.APPLIED:
        assert decision.lifecycle == ()
        return
    assert decision.state is not None
    assert sorted(e.type for e in decision.lifecycle) == expected_types(before, decision.state)
    assert all(e.state == decision.state.flags for e in decision.lifecycle)
