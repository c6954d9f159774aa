"""Graceful stop: SIGTERM while a burst is arriving.

The worker stops fetching, finishes and commits the batch in hand, flushes the outbox and exits
0 within ``MODELREG_SHUTDOWN_TIMEOUT_S``. A restarted worker carries on from the committed
offsets: nothing is lost, and, unlike after a crash, nothing is published twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.faults.conftest import FaultEnv
from tests.support.events import Message
from tests.support.fold import fold, mixed_stream, setup_messages

SHUTDOWN_TIMEOUT_S = 10.0


async def publish_paced(env: FaultEnv, messages: list[Message], seconds: float) -> None:
    chunk = 100
    pause = seconds / max(1, len(messages) // chunk)
    for start in range(0, len(messages), chunk):
        await env.publish(messages[start : start + chunk])
        await asyncio.sleep(pause)


async def test_sigterm_during_a_burst_exits_0_in_time_and_loses_nothing(faults: FaultEnv) -> None:
    worker = await faults.start_worker(migrate_on_start=True, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S)
    await faults.publish(setup_messages())
    await faults.wait_quiescent(len(setup_messages()))
    stream = mixed_stream(5000, seed=31)
    expected = fold(setup_messages() + stream, faults.settings)

    publishing = asyncio.create_task(publish_paced(faults, stream, seconds=20))

    async def busy() -> bool:
        return await faults.processed_count() >= 800

    await faults.wait_for(busy, timeout=60, what="the worker to be busy with the burst")
    assert not publishing.done(), "the burst is still arriving when SIGTERM comes"
    code, seconds = await worker.terminate(timeout=SHUTDOWN_TIMEOUT_S + 20)
    assert code == 0, worker.log()[-3000:]
    assert seconds <= SHUTDOWN_TIMEOUT_S, f"took {seconds:.1f} s"
    print(f"exited 0 {seconds:.2f} s after SIGTERM")

    await faults.start_worker(shutdown_timeout_s=SHUTDOWN_TIMEOUT_S)
    await publishing
    await faults.wait_quiescent(len(expected.event_ids), timeout=120)

    assert await faults.processed_count() == len(expected.event_ids)
    assert await faults.registry_rows() == expected.rows()
    lifecycle = await faults.lifecycle(expect=len(expected.lifecycle_ids))
    assert sorted(r.json()["eventId"] for r in lifecycle) == sorted(expected.lifecycle_ids), (
        "every lifecycle event exactly once"
    )
    letters = await faults.dead_letters(expect=len(expected.dead_letters))
    assert Counter(r.value for r in letters) == Counter(m.value for m in expected.dead_letters), (
        "every dead letter exactly once"
    )
