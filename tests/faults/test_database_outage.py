"""Database outage: PostgreSQL stops for 10+ seconds mid-stream and comes back.

The worker is not restarted: it waits the outage out (retrying the batch in hand, never
committing past it), reconnects by itself, dead-letters nothing because of the outage and ends in
the state the pure rules compute. It says so in its log once, not on every retry.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.faults.conftest import FaultEnv, PrivatePostgres, fault_settings
from tests.support.events import Message
from tests.support.fold import fold, mixed_stream, setup_messages
from worker.transport.topics import ensure_topics

OUTAGE_S = 12.0


async def publish_paced(env: FaultEnv, messages: list[Message], seconds: float) -> None:
    chunk = 50
    pause = seconds / max(1, len(messages) // chunk)
    for start in range(0, len(messages), chunk):
        await env.publish(messages[start : start + chunk])
        await asyncio.sleep(pause)


def lines(log: str, text: str) -> int:
    return sum(1 for line in log.splitlines() if text in line)


async def test_a_worker_waits_out_a_database_outage_and_recovers_by_itself(
    private_postgres: PrivatePostgres,
    kafka_bootstrap: str,
    kafka_supports_idempotence: bool,
    tmp_path: Path,
) -> None:
    settings = fault_settings(
        private_postgres.url,
        kafka_bootstrap,
        kafka_supports_idempotence,
        migrate_on_start=True,
        batch_max_records=100,
    )
    await ensure_topics(kafka_bootstrap, settings, partitions=6)
    env = FaultEnv(settings, kafka_bootstrap, tmp_path)
    try:
        worker = await env.start_worker()
        await env.publish(setup_messages())
        await env.wait_quiescent(len(setup_messages()))
        stream = mixed_stream(3000, seed=77, bad=0.0)
        expected = fold(setup_messages() + stream, settings)
        assert expected.dead_letters == [], "nothing in this stream deserves a dead letter"

        publishing = asyncio.create_task(publish_paced(env, stream, seconds=30))
        await env.wait_for(
            lambda: _processed_at_least(env, 500), timeout=60, what="progress before the outage"
        )
        private_postgres.stop()
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE_S)  # the outage itself; events keep arriving meanwhile
        private_postgres.start()
        print(f"PostgreSQL was down for {time.monotonic() - down_at:.1f} s")
        await publishing

        await env.wait_quiescent(len(expected.event_ids), timeout=120)
        assert worker.alive(), "the same worker process recovered, nobody restarted it"
        assert len(env.processes) == 1
        assert await env.registry_rows() == expected.rows()
        lifecycle = await env.lifecycle(expect=len(expected.lifecycle_ids))
        assert {r.json()["eventId"] for r in lifecycle} == set(expected.lifecycle_ids)
        assert await env.dead_letters() == [], "the outage dead-lettered nothing"

        log = worker.log()
        assert lines(log, "modelreg.worker: database unavailable, retrying") == 1, log[-5000:]
        assert lines(log, "modelreg.worker: database available again") == 1, log[-5000:]
        assert lines(log, "outbox relay: database unavailable, retrying") == 1, log[-5000:]
        assert lines(log, "outbox relay: database available again") == 1, log[-5000:]
    finally:
        env.kill_all()


async def _processed_at_least(env: FaultEnv, count: int) -> bool:
    return await env.processed_count() >= count
