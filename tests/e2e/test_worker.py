"""The worker end to end: real broker, real PostgreSQL, the FastStream app running in-process.

Messages go in as raw bytes; the assertions read the registry tables and the lifecycle and
dead-letter topics, as a downstream consumer would.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from tests.e2e.conftest import Env
from tests.support import events as ev
from tests.support.events import Message, OutputRecord, RawPublisher, read_topic
from tests.support.fold import Expected, fold, mixed_stream, setup_messages


async def registry_rows(env: Env) -> dict[str, tuple[Any, ...]]:
    rows = await env.query(
        "SELECT id, name, provider, is_available, is_legacy, is_archived, meta FROM models"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


async def lifecycle(env: Env, expect: int = 0) -> list[OutputRecord]:
    return await read_topic(env.bootstrap, env.settings.lifecycle_topic, expect=expect)


async def dead_letters(env: Env, expect: int = 0) -> list[OutputRecord]:
    return await read_topic(env.bootstrap, env.settings.dead_letter_topic, expect=expect)


async def assert_matches(env: Env, expected: Expected, *, output_exactly_once: bool = True) -> None:
    """Registry equals the fold; one lifecycle message per real change; one dead letter each.

    ``output_exactly_once=False`` where the relay's own connection is killed: a row published
    but not yet marked sent is published again (the outbox is at-least-once; lifecycle event
    ids are deterministic so consumers deduplicate). Nothing may be missing even then.
    """
    assert await registry_rows(env) == expected.rows()
    out = await lifecycle(env, expect=len(expected.lifecycle_ids))
    ids = [r.json()["eventId"] for r in out]
    assert set(ids) == set(expected.lifecycle_ids), "no lifecycle event lost or invented"
    letters = await dead_letters(env, expect=len(expected.dead_letters))
    got = Counter((r.key, r.value) for r in letters)
    want = Counter((m.key, m.value) for m in expected.dead_letters)
    assert set(got) == set(want), "one dead letter per rejected message, none missing"
    if output_exactly_once:
        assert len(ids) == len(expected.lifecycle_ids), "no lifecycle event doubled"
        assert got == want, "no dead letter doubled"


async def publish_in_chunks(
    env: Env, messages: list[Message], chunk: int = 50, pause: float = 0.05
) -> None:
    async with RawPublisher(env.bootstrap, env.settings) as publisher:
        for start in range(0, len(messages), chunk):
            await publisher.publish(messages[start : start + chunk])
            await asyncio.sleep(pause)


# --- every event type -----------------------------------------------------------------------


async def test_every_event_type_changes_the_registry_and_announces_real_changes(e2e: Env) -> None:
    await e2e.start_worker()
    phases = [
        [
            ev.synced("gpt-x", meta={"version": "1", "contextLength": 8192}, occurred_at=ev.at(1)),
            ev.register("claude-y", provider="anthropic", meta={"displayName": "Claude Y"}),
        ],
        [
            ev.synced("gpt-x", meta={"version": "2"}, occurred_at=ev.at(2)),
            ev.patch_meta("claude-y", {"description": "fast", "displayName": None}),
            ev.set_tier("claude-y", "pro", reason="expensive"),
            ev.mark_legacy("gpt-x", replacement="claude-y", notice="use claude-y"),
        ],
        [ev.clear_legacy("gpt-x"), ev.set_availability("claude-y", False)],
        [ev.archive("claude-y", reason="retired"), ev.withdrawn("gpt-x", occurred_at=ev.at(3))],
        [ev.unarchive("claude-y")],
    ]
    published: list[Message] = []
    for phase in phases:  # phases: the two topics are not ordered relative to each other
        await ev.publish(e2e.bootstrap, e2e.settings, phase)
        published += phase
        await e2e.wait_processed(len(published))

    rows = await registry_rows(e2e)
    assert rows["gpt-x"] == (
        "gpt-x",
        "acme",
        False,  # withdrawn by its provider
        False,  # legacy cleared
        False,
        {"version": "2", "contextLength": 8192},
    )
    assert rows["claude-y"] == (
        "claude-y",
        "anthropic",
        False,  # made unavailable, and unarchiving does not make it available again
        False,
        False,
        {"description": "fast", "requiredTier": "pro", "tierRestrictionMode": "minimum"},
    )
    audit = await e2e.query("SELECT model_id, actor, new_tier, reason FROM tier_audit")
    assert audit == [
        (
            "claude-y",
            "tester@example.com",
            {"requiredTier": "pro", "tierRestrictionMode": "minimum"},
            "expensive",
        )
    ]
    types = [(r.key, r.json()["type"]) for r in await lifecycle(e2e, expect=6)]
    assert sorted(types) == sorted(
        [
            (b"gpt-x", "model.marked_legacy"),
            (b"gpt-x", "model.legacy_cleared"),
            (b"gpt-x", "model.availability_changed"),
            (b"claude-y", "model.availability_changed"),
            (b"claude-y", "model.archived"),
            (b"claude-y", "model.unarchived"),
        ]
    )
    assert await dead_letters(e2e, expect=0) == []
    await assert_matches(e2e, fold(published, e2e.settings))


async def test_a_duplicate_event_id_changes_nothing_and_emits_nothing(e2e: Env) -> None:
    await e2e.start_worker()
    legacy = ev.mark_legacy("m1", notice="old")
    await ev.publish(e2e.bootstrap, e2e.settings, [ev.register("m1"), legacy])
    await e2e.wait_processed(2)
    before = await e2e.query("SELECT is_legacy, meta, updated_at FROM models")

    resent_with_other_content = Message(
        "admin",
        b"m1",
        json.dumps(
            {**(legacy.body or {}), "data": {"id": "m1", "deprecationNotice": "new"}}
        ).encode(),
    )
    await ev.publish(e2e.bootstrap, e2e.settings, [legacy, legacy, ev.clear_legacy("m1")])
    await e2e.wait_processed(3)
    await ev.publish(e2e.bootstrap, e2e.settings, [resent_with_other_content])
    await asyncio.sleep(1)

    types = [r.json()["type"] for r in await lifecycle(e2e, expect=2)]
    assert types == ["model.marked_legacy", "model.legacy_cleared"]
    assert await e2e.processed_count() == 3
    assert before[0][0] is True
    after = await e2e.query("SELECT is_legacy FROM models")
    assert after == [(False,)], "only the clear_legacy changed the model"
    assert await dead_letters(e2e) == []


async def test_a_sync_older_than_the_last_one_seen_is_ignored(e2e: Env) -> None:
    await e2e.start_worker()
    await ev.publish(
        e2e.bootstrap,
        e2e.settings,
        [
            ev.synced("m1", meta={"version": "2"}, occurred_at=ev.at(20)),
            ev.synced("m1", meta={"version": "1"}, occurred_at=ev.at(10)),
            ev.withdrawn("m1", occurred_at=ev.at(15)),
        ],
    )
    await e2e.wait_processed(3)
    rows = await e2e.query("SELECT is_available, meta->>'version' FROM models")
    assert rows == [(True, "2")]
    assert await lifecycle(e2e) == []
    assert await dead_letters(e2e) == []


# --- bad input ------------------------------------------------------------------------------


async def test_each_kind_of_bad_input_is_dead_lettered_with_its_reason_and_bytes(e2e: Env) -> None:
    await e2e.start_worker()
    await ev.publish(e2e.bootstrap, e2e.settings, [ev.register("known", provider="acme")])
    await e2e.wait_processed(1)
    bad = {
        "invalid_json": ev.raw("admin", b"k1", b"{this is not json"),
        "unknown_type": ev.event("admin", "model.explode", "k2"),
        "contract_violation": ev.event(
            "admin", "model.register", "k3", {"provider": "acme", "meta": {}}
        ),
        "unknown_model": ev.patch_meta("nobody", {"description": "x"}),
        "rule_violation": ev.register("known", provider="someone-else"),
    }
    good_after = ev.register("after-the-bad-ones")
    await ev.publish(e2e.bootstrap, e2e.settings, [*bad.values(), good_after])

    letters = await dead_letters(e2e, expect=len(bad))
    assert len(letters) == len(bad), "exactly one dead letter per bad message"
    by_type = {r.headers["error.type"]: r for r in letters}
    assert set(by_type) == set(bad)
    for kind, message in bad.items():
        letter = by_type[kind]
        assert letter.value == message.value, kind
        assert letter.key == message.key, kind
        assert letter.headers["error.message"], kind
        assert letter.headers["original.topic"] == e2e.settings.admin_topic
        assert int(letter.headers["original.partition"]) in range(6)
        assert int(letter.headers["original.offset"]) >= 0
    detail = json.loads(by_type["contract_violation"].headers["error.detail"])
    assert any(item["loc"][-1] == "name" for item in detail)

    await e2e.wait_for(
        lambda: _has_model(e2e, "after-the-bad-ones"), what="the good event after the bad ones"
    )
    assert (await registry_rows(e2e))["known"][1] == "acme"


async def _has_model(env: Env, model_id: str) -> bool:
    return bool(await env.query("SELECT 1 FROM models WHERE id = %s", model_id))


# --- faults: the database, rebalances, restarts ---------------------------------------------


async def test_a_database_outage_mid_stream_never_skips_a_message(e2e: Env) -> None:
    await e2e.start_worker()
    stream = mixed_stream(300, seed=11)
    messages = setup_messages() + stream
    await ev.publish(e2e.bootstrap, e2e.settings, setup_messages())
    await e2e.wait_processed(len(setup_messages()))

    async def keep_killing() -> int:
        kills = 0
        for _ in range(8):
            rows = await e2e.query(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database()"
                " AND application_name IN ('modelreg-worker', 'modelreg-relay')"
            )
            kills += int(rows[0][0])
            await asyncio.sleep(0.3)
        return kills

    killer = asyncio.create_task(keep_killing())
    await publish_in_chunks(e2e, stream, chunk=20, pause=0.1)
    kills = await killer
    assert kills > 0, "the worker's connections were terminated mid-stream"

    expected = fold(messages, e2e.settings)
    await e2e.wait_processed(len(expected.event_ids), timeout=90)
    await assert_matches(e2e, expected, output_exactly_once=False)


async def test_two_workers_share_the_partitions_through_a_rebalance(e2e: Env) -> None:
    first = await e2e.start_worker()
    stream = mixed_stream(400, seed=23)
    messages = setup_messages() + stream
    await ev.publish(e2e.bootstrap, e2e.settings, setup_messages())
    await e2e.wait_processed(len(setup_messages()))

    await publish_in_chunks(e2e, stream[:200], chunk=25)
    second = await e2e.start_worker()  # joins the group mid-stream: a rebalance
    await publish_in_chunks(e2e, stream[200:], chunk=25)

    expected = fold(messages, e2e.settings)
    await e2e.wait_processed(len(expected.event_ids), timeout=90)
    await assert_matches(e2e, expected)
    assert first.worker.processor.applied_batches > 0
    assert second.worker.processor.applied_batches > 0, "the second worker got partitions"


async def test_stopping_and_restarting_mid_stream_loses_and_doubles_nothing(e2e: Env) -> None:
    running = await e2e.start_worker()
    stream = mixed_stream(300, seed=5)
    messages = setup_messages() + stream
    await ev.publish(e2e.bootstrap, e2e.settings, setup_messages())
    await e2e.wait_processed(len(setup_messages()))

    publishing = asyncio.create_task(publish_in_chunks(e2e, stream, chunk=20, pause=0.1))
    await e2e.wait_for(lambda: _processed_at_least(e2e, 60), what="some progress")
    await running.stop()  # graceful, like SIGTERM, while events keep arriving
    assert running.task.done() and running.task.exception() is None
    await e2e.start_worker()
    await publishing

    expected = fold(messages, e2e.settings)
    await e2e.wait_processed(len(expected.event_ids), timeout=90)
    await assert_matches(e2e, expected)


async def _processed_at_least(env: Env, count: int) -> bool:
    return await env.processed_count() >= count


# --- acceptance -----------------------------------------------------------------------------


async def test_a_thousand_mixed_events_with_duplicates_and_malformed_ones(e2e: Env) -> None:
    """1,000 events, 10% duplicates, 5% malformed: the registry equals the in-memory fold of the
    same events through the domain rules, one dead letter per malformed event, one lifecycle
    event per real change."""
    await e2e.start_worker(migrate_on_start=True)
    await ev.publish(e2e.bootstrap, e2e.settings, setup_messages())
    await e2e.wait_processed(len(setup_messages()))
    stream = mixed_stream(1000, seed=1000)
    assert sum(1 for m in stream if stream.count(m) > 1) >= 100
    expected = fold(setup_messages() + stream, e2e.settings)
    assert len(expected.dead_letters) == 50

    await publish_in_chunks(e2e, stream, chunk=100, pause=0)
    await e2e.wait_processed(len(expected.event_ids), timeout=90)

    await assert_matches(e2e, expected)
    assert len(expected.lifecycle_ids) > 100, "the stream makes plenty of real changes"
