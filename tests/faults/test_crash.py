"""Crash: 20,000 mixed events while the worker process is SIGKILLed and restarted, repeatedly.

A SIGKILL runs no shutdown code: batches die half-applied (the transaction rolls back), applied
batches lose their offset commit (they are re-read and must be deduplicated), and outbox rows die
published-but-not-marked (they are published again, with the same lifecycle ``eventId``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from tests.faults.conftest import FaultEnv, WorkerProcess, original_position
from tests.support import events as ev
from tests.support.events import Message
from tests.support.fold import fold

TOTAL = 20_000
KILLS = 5
#: Replacement targets: registered (and fully applied) before the stream, never archived or
#: marked legacy by it, so a ``mark_legacy`` naming one has the same outcome in any interleaving.
REPLACEMENTS = [f"successor-{i}" for i in range(6)]
SYNC_MODELS = [f"synced-{i}" for i in range(60)]
ADMIN_MODELS = [f"admin-{i}" for i in range(60)]
FAR_FUTURE = "2999-01-01T00:00:00+00:00"  # a sunset the sunset job never reaches


def setup_phase() -> list[Message]:
    return [ev.register(model_id, provider="acme") for model_id in REPLACEMENTS]


def invalid(rng: random.Random, index: int) -> Message:
    """A message the worker must dead-letter, whatever the interleaving: bad bytes, unknown
    type, contract violation, unknown model, or a rule violation against a settled model."""
    kind = index % 5
    if kind == 0:
        return ev.raw("admin", b"junk-%d" % index, b"{not json %d" % index)
    if kind == 1:
        return ev.event("admin", "model.explode", f"boom-{index}")
    if kind == 2:
        return ev.event("admin", "model.register", f"nameless-{index}", {"provider": "acme"})
    if kind == 3:
        return ev.patch_meta(f"ghost-{index}", {"description": "nobody home"})
    return ev.register(rng.choice(REPLACEMENTS), provider="intruder")


def crash_stream(total: int, seed: int) -> list[Message]:
    """``total`` messages: every event type, ~8% re-sent duplicates, ~3% invalid.

    Each model gets events on one topic only, so per-model publish order is the worker's order.
    Some valid-looking admin events are rejected by the rules (making an archived model
    available): those are decided by the model's own history, hence deterministic too.
    """
    rng = random.Random(seed)
    clock = dict.fromkeys(SYNC_MODELS, 100.0)
    started: set[str] = set()
    stream: list[Message] = []
    invalid_count = 0
    while len(stream) < total:
        roll = rng.random()
        if roll < 0.03:
            stream.append(invalid(rng, invalid_count))
            invalid_count += 1
        elif roll < 0.11 and stream:
            # A re-send: same bytes, same eventId, later in the same partition.
            original = rng.choice(stream[-2000:])
            if original.event_id is not None:
                stream.append(original)
        elif roll < 0.50:
            model = rng.choice(SYNC_MODELS)
            clock[model] += rng.uniform(1, 10)
            kind = rng.random()
            if model not in started or kind < 0.6:
                started.add(model)
                meta = {"version": str(rng.randint(1, 9)), "contextLength": rng.randint(1, 64)}
                stream.append(ev.synced(model, meta=meta, occurred_at=ev.at(clock[model])))
            elif kind < 0.85:
                stream.append(ev.withdrawn(model, occurred_at=ev.at(clock[model])))
            else:  # stale: older than anything the model has seen
                stream.append(ev.synced(model, meta={"version": "0"}, occurred_at=ev.at(1)))
        else:
            model = rng.choice(ADMIN_MODELS)
            if model not in started:
                started.add(model)
                stream.append(ev.register(model, meta={"displayName": model.upper()}))
                continue
            choice = rng.randrange(9)
            if choice == 0:
                stream.append(ev.patch_meta(model, {"description": f"d{rng.randint(0, 99)}"}))
            elif choice == 1:
                tier = rng.choice(["free", "pro", "enterprise"])
                stream.append(ev.set_tier(model, tier, reason="pricing"))
            elif choice == 2:
                replacement = rng.choice([None, *REPLACEMENTS])
                sunset = rng.choice([None, FAR_FUTURE])
                stream.append(
                    ev.mark_legacy(model, replacement=replacement, notice="old", sunset=sunset)
                )
            elif choice == 3:
                stream.append(ev.clear_legacy(model))
            elif choice == 4:
                stream.append(ev.archive(model, reason="retired"))
            elif choice == 5:
                stream.append(ev.unarchive(model))
            else:
                stream.append(ev.set_availability(model, rng.random() < 0.6))
    return stream


async def publish_paced(env: FaultEnv, messages: list[Message], seconds: float) -> None:
    """Spread the stream over about ``seconds``, so the kills land in the middle of it."""
    chunk = 250
    chunks = max(1, len(messages) // chunk)
    pause = seconds / chunks
    for start in range(0, len(messages), chunk):
        await env.publish(messages[start : start + chunk])
        await asyncio.sleep(pause)


async def test_sigkill_at_random_moments_loses_and_doubles_nothing(faults: FaultEnv) -> None:
    rng = random.Random(20_000)
    setup = setup_phase()
    stream = crash_stream(TOTAL, seed=4242)
    expected = fold(setup + stream, faults.settings)
    assert len(expected.dead_letters) > 300, "the stream carries plenty of invalid messages"
    assert len(expected.lifecycle_ids) > 2000, "and plenty of real lifecycle changes"
    assert len({id(m) for m in stream}) < len(stream) - 1000, "and plenty of re-sends"

    worker: WorkerProcess = await faults.start_worker(migrate_on_start=True)
    await faults.publish(setup)
    await faults.wait_quiescent(len(setup))

    publishing = asyncio.create_task(publish_paced(faults, stream, seconds=80))
    kills = 0
    try:
        for _ in range(KILLS):
            # Let the worker make some progress, then kill it at a random moment.
            progress_from = await faults.processed_count()
            target = progress_from + rng.randint(200, 2500)

            async def progressed(target: int = target) -> bool:
                return await faults.processed_count() >= target or publishing.done()

            await faults.wait_for(progressed, timeout=120, what="progress before the next kill")
            await asyncio.sleep(rng.uniform(0, 1.0))
            worker.kill()
            kills += 1
            worker = await faults.start_worker()
        await publishing
    finally:
        if not publishing.done():
            publishing.cancel()

    assert kills >= 5
    started = time.monotonic()
    await faults.wait_quiescent(len(expected.event_ids), timeout=180)
    print(f"quiescent {time.monotonic() - started:.1f} s after the last publish")

    # The registry is what the pure rules make of the same events.
    assert await faults.processed_count() == len(expected.event_ids), "no event lost"
    assert await faults.registry_rows() == expected.rows()
    audit = await faults.query("SELECT event_id::text FROM tier_audit")
    assert sorted(r[0] for r in audit) == sorted(expected.audit_event_ids), "one audit row each"

    # Lifecycle: repeats of one id are allowed (at-least-once), missing or extra ids are not.
    lifecycle = await faults.lifecycle(expect=len(expected.lifecycle_ids))
    ids = [r.json()["eventId"] for r in lifecycle]
    assert set(ids) == set(expected.lifecycle_ids)
    assert len(set(expected.lifecycle_ids)) == len(expected.lifecycle_ids)

    # Dead letters: one per invalid message, once deduplicated by where it was read from.
    letters = await faults.dead_letters(expect=len(expected.dead_letters))
    distinct = {original_position(r): r for r in letters}
    assert len(distinct) == len(expected.dead_letters)
    assert Counter(r.value for r in distinct.values()) == Counter(
        m.value for m in expected.dead_letters
    )
    print(
        f"{kills} kills; {len(ids)} lifecycle records for {len(set(ids))} ids;"
        f" {len(letters)} dead-letter records for {len(distinct)} invalid messages"
    )
